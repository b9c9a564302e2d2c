//! The `[source]` section of `type = "mysql"` (or `"mariadb"`): owned here, parsed strictly
//! (unknown keys are errors) and validated with messages that name the key.

use serde::{Deserialize, Deserializer};
use tidewater_core::config::{expand_env, table_globs, ConfigKey, SectionType};
use tidewater_core::{Error, Result, Secret};

use crate::value::ZeroDates;

/// Replica id of the binlog connection when `source.server_id` is not set.
pub const DEFAULT_SERVER_ID: u32 = 4242;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlSourceConfig {
    /// `mysql://user:password@host:port/database`; `${ENV}` is expanded by `resolved`.
    pub url: Secret,
    pub tables: Vec<String>,
    /// Replica id this reader registers with; unique among the source's replicas.
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    #[serde(default)]
    pub zero_dates: ZeroDates,
}

/// The keys of this section, for `tidewater config --print-defaults`.
pub const SOURCE_TYPE: SectionType = SectionType {
    name: "mysql",
    aliases: &["mariadb"],
    keys: &[
        ConfigKey::required(
            "url",
            "\"mysql://repl:${MYSQL_PASSWORD}@127.0.0.1:3306/shop\"",
            "the source server; ${ENV} is expanded",
        ),
        ConfigKey::required(
            "tables",
            "[\"shop.*\"]",
            "database.table globs; a leading ! excludes",
        ),
        ConfigKey::default(
            "server_id",
            "4242",
            "replica id of the binlog connection; unique among the source's replicas",
        ),
        ConfigKey::default(
            "zero_dates",
            "\"null\"",
            "0000-00-00 dates: \"null\" (replicate as NULL) or \"error\"",
        ),
    ],
};

fn default_server_id() -> u32 {
    DEFAULT_SERVER_ID
}

/// `"null"` or `"error"`, with a message naming the key otherwise.
impl<'de> Deserialize<'de> for ZeroDates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "null" => Ok(ZeroDates::Null),
            "error" => Ok(ZeroDates::Error),
            other => Err(serde::de::Error::custom(format!(
                "source.zero_dates = {other:?} is invalid: use \"null\" (replicate 0000-00-00 as NULL) or \"error\""
            ))),
        }
    }
}

impl MySqlSourceConfig {
    /// Expands `${ENV}` in `tables` and checks every key. `url` stays as written: `query`
    /// and `status` read the replica and must work without the source's secrets.
    pub fn validate(&mut self) -> Result<()> {
        if self.server_id == 0 {
            return Err(Error::config(
                "source.server_id = 0 is invalid: use a replica id (1-4294967295) no other replica of the source uses",
            ));
        }
        self.tables = table_globs(&self.tables)?;
        Ok(())
    }

    /// This config with `${ENV}` in `url` expanded, to connect with; fails naming the
    /// variable when one is not set.
    pub fn resolved(&self) -> Result<MySqlSourceConfig> {
        Ok(MySqlSourceConfig {
            url: Secret::new(expand_env(self.url.expose(), "source.url")?),
            ..self.clone()
        })
    }
}
