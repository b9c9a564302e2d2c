//! The `[source]` section of `type = "postgres"` (or `"postgresql"`): owned here, parsed
//! strictly (unknown keys are errors) and validated with messages that name the key.

use serde::Deserialize;
use tidewater_core::config::{expand_env, table_globs, ConfigKey, SectionType};
use tidewater_core::{Error, Result, Secret};

/// The slot and the publication when not configured.
pub const DEFAULT_SLOT: &str = "tidewater";
pub const DEFAULT_PUBLICATION: &str = "tidewater";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgSourceConfig {
    /// `postgres://user:password@host:port/database`; `${ENV}` is expanded by `resolved`.
    pub url: Secret,
    pub tables: Vec<String>,
    #[serde(default = "default_slot")]
    pub slot: String,
    #[serde(default = "default_publication")]
    pub publication: String,
}

/// The keys of this section, for `tidewater config --print-defaults`.
pub const SOURCE_TYPE: SectionType = SectionType {
    name: "postgres",
    aliases: &["postgresql"],
    keys: &[
        ConfigKey::required(
            "url",
            "\"postgres://repl:${PGPASSWORD}@127.0.0.1:5432/shop\"",
            "the source database; ${ENV} is expanded",
        ),
        ConfigKey::required(
            "tables",
            "[\"public.*\"]",
            "schema.table globs; a leading ! excludes",
        ),
        ConfigKey::default(
            "slot",
            "\"tidewater\"",
            "the replication slot (created if missing)",
        ),
        ConfigKey::default(
            "publication",
            "\"tidewater\"",
            "the publication (created if missing)",
        ),
    ],
};

fn default_slot() -> String {
    DEFAULT_SLOT.into()
}

fn default_publication() -> String {
    DEFAULT_PUBLICATION.into()
}

impl PgSourceConfig {
    /// Expands `${ENV}` in `tables` and checks every key. `url` stays as written: `query`
    /// and `status` read the replica and must work without the source's secrets.
    pub fn validate(&mut self) -> Result<()> {
        self.tables = table_globs(&self.tables)?;
        for (key, v) in [
            ("source.slot", &self.slot),
            ("source.publication", &self.publication),
        ] {
            let ok = !v.is_empty()
                && v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(Error::config(format!(
                    "{key} = {v:?} is invalid: use 1-63 lower-case letters, digits or '_'"
                )));
            }
        }
        Ok(())
    }

    /// This config with `${ENV}` in `url` expanded, to connect with; fails naming the
    /// variable when one is not set.
    pub fn resolved(&self) -> Result<PgSourceConfig> {
        Ok(PgSourceConfig {
            url: Secret::new(expand_env(self.url.expose(), "source.url")?),
            ..self.clone()
        })
    }
}
