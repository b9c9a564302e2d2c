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
}

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
    ],
};

fn default_threads() -> usize {
    1
}

fn default_true() -> bool {
    true
}

impl DuckDbConfig {
    /// Expands `${ENV}` in `path` and checks that it is set.
    pub fn validate(&mut self) -> Result<()> {
        self.path = PathBuf::from(expand_env(&self.path.to_string_lossy(), "sink.path")?);
        if self.path.as_os_str().is_empty() {
            return Err(Error::config("sink.path is missing")
                .with_fix("name the DuckDB replica file, e.g. path = \"replica.duckdb\""));
        }
        Ok(())
    }

    /// A relative `path` is relative to the config file's directory `dir`, not to the
    /// working directory.
    pub fn relative_to(&mut self, dir: &Path) {
        if self.path.is_relative() {
            self.path = dir.join(&self.path);
        }
    }
}
