//! The `[sink]` section of `type = "bigquery"`: owned here, parsed strictly (unknown keys are
//! errors) and validated with messages that name the key.
//!
//! `credentials` is the path of a service-account key file, not the key: the key itself is
//! read by the client when it connects and never enters the config.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidewater_core::config::{expand_env, ConfigKey, SectionType};
use tidewater_core::{Error, Result};

use crate::client::Connection;

/// `merge_interval_ms` when not set: a MERGE about once a second.
pub const DEFAULT_MERGE_INTERVAL_MS: u64 = 1000;
/// `copy_commit_interval_ms` when not set: past its first [`COPY_COMMIT_BURST`] commits, a copy
/// commits about once a minute, so each table takes at most 50 + 1,440 load jobs a day
/// (BigQuery allows 1,500 per table).
pub const DEFAULT_COPY_COMMIT_INTERVAL_MS: u64 = 60_000;
/// Commits of a copy that may follow one another at `merge_interval_ms` before the interval
/// rations them: a small database's copy is done in seconds.
pub const COPY_COMMIT_BURST: u32 = 50;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigQueryConfig {
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub dataset: String,
    /// The dataset's location (`US`, `EU`, `europe-west1`).
    pub location: Option<String>,
    /// A service-account key file; absent: application-default credentials.
    pub credentials: Option<PathBuf>,
    /// `http://host:port` of an emulator instead of Google's endpoint.
    pub endpoint: Option<String>,
    /// A batch is merged into the replicas at most this often.
    #[serde(default = "default_merge_interval_ms")]
    pub merge_interval_ms: u64,
    /// While a table is copied in chunks, a batch holding chunks commits at most this often
    /// (each such commit is one load job per copied table).
    #[serde(default = "default_copy_commit_interval_ms")]
    pub copy_commit_interval_ms: u64,
}

/// The keys of this section, for `tidewater config --print-defaults`.
pub const SINK_TYPE: SectionType = SectionType {
    name: "bigquery",
    aliases: &[],
    keys: &[
        ConfigKey::required(
            "project",
            "\"my-project\"",
            "the Google Cloud project",
        ),
        ConfigKey::required(
            "dataset",
            "\"replica\"",
            "the dataset (letters, digits, '_'); created if missing",
        ),
        ConfigKey::optional(
            "location",
            "\"EU\"",
            "the dataset's location; jobs run there",
        ),
        ConfigKey::optional(
            "credentials",
            "\"service-account.json\"",
            "a service-account key file (relative to the config file); absent: application-default credentials",
        ),
        ConfigKey::optional(
            "endpoint",
            "\"http://127.0.0.1:9050\"",
            "an emulator's address instead of Google's endpoint",
        ),
        ConfigKey::default(
            "merge_interval_ms",
            "1000",
            "a batch is merged into the replicas at most this often (100-3600000)",
        ),
        ConfigKey::default(
            "copy_commit_interval_ms",
            "60000",
            "while tables are copied in chunks, past a copy's first 50 commits their rows commit at most this often: one load job per table each time, within BigQuery's 1,500 a day (100-3600000)",
        ),
    ],
};

fn default_merge_interval_ms() -> u64 {
    DEFAULT_MERGE_INTERVAL_MS
}

fn default_copy_commit_interval_ms() -> u64 {
    DEFAULT_COPY_COMMIT_INTERVAL_MS
}

impl BigQueryConfig {
    /// Expands `${ENV}` and checks every key; `log_tables` is `[apply] log_tables`, which
    /// this sink needs (its replicas are merged from the `_log` tables).
    pub fn validate(&mut self, log_tables: bool) -> Result<()> {
        for (key, value) in [
            ("sink.project", &mut self.project),
            ("sink.dataset", &mut self.dataset),
        ] {
            *value = expand_env(value, key)?;
        }
        for (key, value) in [
            ("sink.location", &mut self.location),
            ("sink.endpoint", &mut self.endpoint),
        ] {
            if let Some(v) = value.as_mut() {
                *v = expand_env(v, key)?;
            }
        }
        if let Some(key) = self.credentials.as_mut() {
            *key = PathBuf::from(expand_env(&key.to_string_lossy(), "sink.credentials")?);
        }
        for (key, value) in [("project", &self.project), ("dataset", &self.dataset)] {
            if value.is_empty() {
                return Err(Error::config(format!(
                    "sink.{key} is missing: the BigQuery sink needs project and dataset"
                ))
                .with_fix("e.g. project = \"my-project\", dataset = \"replica\""));
            }
        }
        let dataset = &self.dataset;
        if !dataset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::config(format!(
                "sink.dataset = {dataset:?} is invalid: BigQuery dataset names hold \
                 letters, digits and '_'"
            )));
        }
        if let Some(e) = &self.endpoint {
            if !e.starts_with("http://") && !e.starts_with("https://") {
                return Err(Error::config(format!(
                    "sink.endpoint = {e:?} is not a URL: write http://host:port"
                )));
            }
        }
        for (key, value) in [
            ("merge_interval_ms", self.merge_interval_ms),
            ("copy_commit_interval_ms", self.copy_commit_interval_ms),
        ] {
            if !(100..=3_600_000).contains(&value) {
                return Err(Error::config(format!(
                    "sink.{key} must be between 100 and 3600000"
                )));
            }
        }
        if !log_tables {
            return Err(Error::config(
                "apply.log_tables = false does not work with the BigQuery sink: its \
                 replicas are merged from the _log tables",
            )
            .with_fix("remove the setting"));
        }
        Ok(())
    }

    /// A relative `credentials` path is relative to the config file's directory `dir`.
    pub fn relative_to(&mut self, dir: &Path) {
        if let Some(key) = self.credentials.as_mut().filter(|k| k.is_relative()) {
            *key = dir.join(&*key);
        }
    }

    /// Where and as whom to connect.
    pub fn connection(&self) -> Connection {
        Connection {
            project: self.project.clone(),
            dataset: self.dataset.clone(),
            location: self.location.clone(),
            credentials: self.credentials.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}
