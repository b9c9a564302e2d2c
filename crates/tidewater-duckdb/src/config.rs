//! The `[sink]` section of `type = "duckdb"`: owned here, parsed strictly (unknown keys are
//! errors) and validated with messages that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tidewater_core::apply::CopyBatch;
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
    /// With `primary_key`, a new replica gets its PRIMARY KEY once it holds this many rows
    /// (0: when it is created); smaller replicas are scanned (`crate::primary_keys`).
    #[serde(default = "default_primary_key_rows")]
    pub primary_key_rows: u64,
    /// DuckDB's `memory_limit` (its buffer pool: cached blocks, open transactions, indexes);
    /// beyond it DuckDB evicts or spills to `<path>.tmp`. `auto`: low, raised when a batch
    /// needs more (`crate::memory`); empty: DuckDB's default, 80 % of RAM.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
    /// DuckDB's `checkpoint_threshold`: the write-ahead log size at which a commit checkpoints
    /// (the sink checkpoints earlier, whenever apply is idle, and holds DuckDB's checkpoint
    /// off for a commit whose log and values stay below it; `crate::checkpoint`).
    #[serde(default = "default_checkpoint_threshold")]
    pub checkpoint_threshold: String,
    /// Checkpoint between batches when the write-ahead log holds
    /// `crate::checkpoint::IDLE_BYTES`, and let a commit checkpoint only when the log reaches
    /// `checkpoint_threshold`; false: only DuckDB's own test, at `checkpoint_threshold`.
    #[serde(default = "default_true")]
    pub checkpoint_when_idle: bool,
    /// The DuckDB storage format a new replica file is written in (`crate::storage`); an
    /// existing file keeps its own.
    #[serde(default = "default_storage_version")]
    pub storage_version: String,
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
    /// Rows a new replica holds before its `PRIMARY KEY` is declared; 0: at its creation
    /// (`crate::primary_keys`).
    pub primary_key_rows: u64,
    /// DuckDB's `memory_limit` (validated by `check_memory_limit`): `auto`, a size, or empty
    /// for DuckDB's default.
    pub memory_limit: String,
    /// DuckDB's `checkpoint_threshold` (validated by `check_checkpoint_threshold`).
    pub checkpoint_threshold: String,
    /// Checkpoint between batches (`crate::checkpoint`).
    pub checkpoint_when_idle: bool,
    /// DuckDB's `storage_compatibility_version` for a new file (validated by
    /// `crate::storage::check_version`).
    pub storage_version: String,
}

impl DuckDbOptions {
    /// The `[sink]` section's defaults for the file at `path`, keys declared at a replica's
    /// creation (`primary_key_rows = 0`), the change log on, one DuckDB thread: what tests of
    /// the sink start from.
    pub fn new(path: PathBuf, pipeline: &str, source_type: &str) -> DuckDbOptions {
        DuckDbOptions {
            path,
            log_tables: true,
            pipeline: pipeline.into(),
            source_type: source_type.into(),
            threads: default_threads(),
            primary_key: true,
            primary_key_rows: 0,
            memory_limit: default_memory_limit(),
            checkpoint_threshold: default_checkpoint_threshold(),
            checkpoint_when_idle: true,
            storage_version: default_storage_version(),
        }
    }

    /// Whether a replica is created with its `PRIMARY KEY` (else it is declared once the
    /// replica is large, or never: `crate::primary_keys`).
    pub fn key_at_creation(&self) -> bool {
        self.primary_key && self.primary_key_rows == 0
    }
}

/// The default `memory_limit`: `auto`, [`crate::memory::AUTO_START`] raised whenever a batch
/// fails on it (a fixed low limit fails a batch that needs more than it: DuckDB cannot evict
/// what an open transaction holds; `docs/performance.md`, "Memory").
pub const DEFAULT_MEMORY_LIMIT: &str = AUTO_MEMORY_LIMIT;

/// The `memory_limit` value that starts low and grows on demand (`crate::memory`).
pub const AUTO_MEMORY_LIMIT: &str = "auto";

/// The default `checkpoint_threshold` (DuckDB's own is 16MB). The sink checkpoints at idle
/// moments once the log holds `crate::checkpoint::IDLE_BYTES`, so this is only the bound
/// under constant load.
pub const DEFAULT_CHECKPOINT_THRESHOLD: &str = "128MB";

/// Rows in one of DuckDB's row groups (its `ROW_GROUP_SIZE`, the default).
pub const ROW_GROUP_ROWS: usize = 122_880;

/// How the apply loop batches a copy's chunks into DuckDB (`tidewater_core::apply::CopyBatch`):
/// two row groups ([`ROW_GROUP_ROWS`]) per commit, so that a chunked
/// copy's rows are written straight into the database file (DuckDB's optimistic writes of full
/// row groups) instead of into the write-ahead log and again by a checkpoint, and are not held
/// in memory until that checkpoint. The chunks themselves stay short at the source
/// (`[snapshot] chunk_rows`). Bounded by 64 MiB of values (wide rows), and by half a second
/// from the batch's first transaction: a streamed transaction in the same batch (another
/// table's change during a copy) waits at most that, plus the commit, and stays visible
/// within a second. Measured in docs/performance.md.
pub const COPY_BATCH: CopyBatch = CopyBatch {
    rows: 2 * ROW_GROUP_ROWS,
    bytes: 64 << 20,
    wait: Duration::from_millis(500),
};

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
            "primary_key_rows",
            "100000",
            "a replica's PRIMARY KEY is declared once it holds this many rows (0: at creation); \
             smaller replicas are scanned, with no key index in memory",
        ),
        ConfigKey::default(
            "memory_limit",
            "\"auto\"",
            "DuckDB's memory limit: \"auto\" (256 MiB, doubled whenever a batch needs more), a size \
             such as \"1GB\" (too low fails big batches), or \"\" for DuckDB's default, 80 % of RAM",
        ),
        ConfigKey::default(
            "checkpoint_threshold",
            "\"128MB\"",
            "write-ahead log size at which a commit checkpoints (apply checkpoints earlier when idle)",
        ),
        ConfigKey::default(
            "storage_version",
            "\"latest\"",
            "DuckDB storage format of a new replica file: \"latest\" (this DuckDB's, readable by \
             DuckDB 1.5.0 or later) or a version such as \"v1.0.0\" for older readers",
        ),
        ConfigKey::default(
            "checkpoint_when_idle",
            "true",
            "checkpoint between batches once the .wal holds 8 MiB; a commit checkpoints only when \
             the .wal reaches checkpoint_threshold (false: DuckDB's own test alone)",
        ),
    ],
};

fn default_threads() -> usize {
    1
}

fn default_true() -> bool {
    true
}

/// Below this many rows a keyed delete or update scans the replica's key column in about half
/// a millisecond, no slower than the key index answers it, and the index would cost memory
/// (a few MiB per table however small: docs/performance.md, "Primary keys once a replica is
/// large").
pub const DEFAULT_PRIMARY_KEY_ROWS: u64 = 100_000;

fn default_primary_key_rows() -> u64 {
    DEFAULT_PRIMARY_KEY_ROWS
}

fn default_memory_limit() -> String {
    DEFAULT_MEMORY_LIMIT.into()
}

fn default_checkpoint_threshold() -> String {
    DEFAULT_CHECKPOINT_THRESHOLD.into()
}

fn default_storage_version() -> String {
    crate::storage::DEFAULT_VERSION.into()
}

/// Bytes of a size as DuckDB's settings take it: a number and a unit (`B`, `KB`, `MB`, `GB`,
/// `TB` in powers of 1000, `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024, any case). `None`
/// for anything else, and for zero.
pub fn parse_size(size: &str) -> Option<u64> {
    let size = size.trim();
    let digits = size
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(size.len());
    let (number, unit) = size.split_at(digits);
    let number = number.parse::<f64>().ok().filter(|n| *n > 0.0)?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * scale) as u64)
}

/// Accepts what this config documents: `auto`, a size (`parse_size`, as DuckDB's `SET
/// memory_limit` takes it), or empty. Checked here so a typo is a config error naming the key, not a
/// failed sink start.
pub fn check_memory_limit(limit: &str) -> Result<()> {
    let limit = limit.trim();
    if limit.is_empty() || limit == AUTO_MEMORY_LIMIT || parse_size(limit).is_some() {
        return Ok(());
    }
    Err(
        Error::config(format!("sink.memory_limit = {limit:?} is not a size"))
            .with_fix("use \"auto\" (the default), a number and a unit, e.g. memory_limit = \"512MB\", or \"\" for DuckDB's default, 80 % of RAM"),
    )
}

/// `checkpoint_threshold` must be a size (`parse_size`).
pub fn check_checkpoint_threshold(threshold: &str) -> Result<()> {
    if parse_size(threshold).is_some() {
        return Ok(());
    }
    Err(
        Error::config(format!("sink.checkpoint_threshold = {threshold:?} is not a size"))
            .with_fix(format!("give a number and a unit, e.g. checkpoint_threshold = \"{DEFAULT_CHECKPOINT_THRESHOLD}\" (the default)")),
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
        check_memory_limit(&self.memory_limit)?;
        check_checkpoint_threshold(&self.checkpoint_threshold)?;
        crate::storage::check_version(&self.storage_version)
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
    use super::{check_checkpoint_threshold, check_memory_limit, parse_size};

    #[test]
    fn memory_limit_takes_sizes_only() {
        for ok in ["", "auto", "256MB", "1GB", "1.5 GiB", "300mib", "1000000B"] {
            assert!(check_memory_limit(ok).is_ok(), "{ok}");
        }
        for bad in ["256", "MB", "lots", "0MB", "-1GB", "1 PB", "80%"] {
            let e = check_memory_limit(bad).expect_err(bad);
            assert!(e.message().contains("memory_limit"), "{}", e.message());
            assert!(e.fix().is_some());
        }
    }

    #[test]
    fn sizes_parse_in_both_unit_systems() {
        assert_eq!(parse_size("128MB"), Some(128_000_000));
        assert_eq!(parse_size(" 1.5 KiB "), Some(1536));
        assert_eq!(parse_size("16mib"), Some(16 << 20));
        for bad in ["", "0MB", "16", "lots", "1 PB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let e = check_checkpoint_threshold("16").expect_err("no unit");
        assert!(
            e.message().contains("checkpoint_threshold"),
            "{}",
            e.message()
        );
        assert!(e.fix().is_some());
    }
}
