//! The `[sink]` section of `type = "duckdb"`: owned here, parsed strictly (unknown keys are
//! errors) and validated with messages that name the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidewater_core::config::{expand_env, ConfigKey, SectionType};
use tidewater_core::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckDbConfig {
    /// The replica file (relative: to the config file).
    #[serde(default)]
    pub path: PathBuf,
    /// DuckDB worker threads; 0 = one per core.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Declare replica keys as DuckDB PRIMARY KEYs (fast updates/deletes on large tables;
    /// memory grows with table and transaction size).
    #[serde(default = "default_true")]
    pub primary_key: bool,
    /// DuckDB's `memory_limit` (its buffer pool: cached blocks, open transactions, indexes);
    /// beyond it DuckDB evicts or spills to `<path>.tmp`. Empty: DuckDB's default, 80 % of RAM.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
}

/// What the sink is opened with: its config section and what the runtime adds.
#[derive(Debug, Clone)]
pub struct DuckDbOptions {
    pub path: PathBuf,
    pub log_tables: bool,
    /// Key of this pipeline's row in `_tidewater.pipeline`.
    pub pipeline: String,
    pub source_type: String,
    /// DuckDB worker threads (0: one per core). Apply runs many small statements, for which
    /// one thread is fastest: waking workers costs more than they save.
    pub threads: usize,
    /// Declare each replica's key as a DuckDB `PRIMARY KEY` (see `TableSql::create_replica`).
    pub primary_key: bool,
    /// DuckDB's `memory_limit` (validated by `check_memory_limit`); empty: DuckDB's default.
    pub memory_limit: String,
}

/// The default `memory_limit`: DuckDB's own (80 % of RAM). A lower one is opt-in: DuckDB
/// cannot evict the blocks an open transaction writes, so a batch touching many tables fails
/// with "Out of Memory Error" below what it needs (256MB failed the 100-table drain; see
/// `docs/performance.md`, "Memory").
pub const DEFAULT_MEMORY_LIMIT: &str = "";

/// The keys of this section, for `tidewater config --print-defaults`.
pub const SINK_TYPE: SectionType = SectionType {
    name: "duckdb",
    aliases: &[],
    keys: &[
        ConfigKey::required(
            "path",
            "\"replica.duckdb\"",
            "the replica file, relative to the config file; ${ENV} is expanded",
        ),
        ConfigKey::default(
            "threads",
            "1",
            "DuckDB worker threads (0 = one per core); apply is fastest on one",
        ),
        ConfigKey::default(
            "primary_key",
            "true",
            "declare replica keys as PRIMARY KEYs (fast updates; memory grows with the tables)",
        ),
        ConfigKey::default(
            "memory_limit",
            "\"\"",
            "DuckDB's memory limit, e.g. \"1GB\" (\"\": DuckDB's default, 80 % of RAM); too low fails big batches",
        ),
    ],
};

fn default_threads() -> usize {
    1
}

fn default_true() -> bool {
    true
}

fn default_memory_limit() -> String {
    DEFAULT_MEMORY_LIMIT.into()
}

/// Accepts what DuckDB's `SET memory_limit` accepts and this config documents: a number and
/// a unit (`B`, `KB`, `MB`, `GB`, `TB`, `KiB`, `MiB`, `GiB`, `TiB`, any case), or empty.
/// Checked here so a typo is a config error naming the key, not a failed sink start.
pub fn check_memory_limit(limit: &str) -> Result<()> {
    let limit = limit.trim();
    if limit.is_empty() {
        return Ok(());
    }
    let digits = limit
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(limit.len());
    let (number, unit) = limit.split_at(digits);
    const UNITS: [&str; 9] = ["b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib"];
    let number_ok = number.parse::<f64>().is_ok_and(|n| n > 0.0);
    if number_ok && UNITS.contains(&unit.trim().to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    Err(
        Error::config(format!("sink.memory_limit = {limit:?} is not a size"))
            .with_fix("give a number and a unit, e.g. memory_limit = \"512MB\" (or \"\" for DuckDB's default, 80 % of RAM)"),
    )
}

impl DuckDbConfig {
    /// Expands `${ENV}` in `path` and checks that it is set.
    pub fn validate(&mut self) -> Result<()> {
        self.path = PathBuf::from(expand_env(&self.path.to_string_lossy(), "sink.path")?);
        if self.path.as_os_str().is_empty() {
            return Err(Error::config("sink.path is missing")
                .with_fix("name the DuckDB replica file, e.g. path = \"replica.duckdb\""));
        }
        check_memory_limit(&self.memory_limit)
    }

    /// A relative `path` is relative to the config file's directory `dir`, not to the
    /// working directory.
    pub fn relative_to(&mut self, dir: &Path) {
        if self.path.is_relative() {
            self.path = dir.join(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_memory_limit;

    #[test]
    fn memory_limit_takes_sizes_only() {
        for ok in ["", "256MB", "1GB", "1.5 GiB", "300mib", "1000000B"] {
            assert!(check_memory_limit(ok).is_ok(), "{ok}");
        }
        for bad in ["256", "MB", "lots", "0MB", "-1GB", "1 PB", "80%"] {
            let e = check_memory_limit(bad).expect_err(bad);
            assert!(e.message().contains("memory_limit"), "{}", e.message());
            assert!(e.fix().is_some());
        }
    }
}
