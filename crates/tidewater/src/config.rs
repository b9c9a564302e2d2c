//! `tidewater.toml`: parsed strictly (unknown keys are errors), `${ENV}` expanded in string
//! values, validated with messages that name the key and the fix.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidewater_core::apply::{DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_BATCH_ROWS};
use tidewater_core::Error;

pub const DEFAULT_SLOT: &str = "tidewater";
pub const DEFAULT_PUBLICATION: &str = "tidewater";
/// Replica id of the binlog connection when `source.server_id` is not set.
pub const DEFAULT_SERVER_ID: u32 = 4242;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub sink: SinkConfig,
    #[serde(default)]
    pub apply: ApplyConfig,
    pub http: Option<HttpConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub tables: Vec<String>,
    #[serde(default = "default_slot")]
    pub slot: String,
    #[serde(default = "default_publication")]
    pub publication: String,
    pub server_id: Option<u32>,
    /// MySQL zero dates (`0000-00-00`): "null" (default) or "error".
    pub zero_dates: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: PathBuf,
    /// DuckDB worker threads; 0 = one per core.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Declare replica keys as DuckDB PRIMARY KEYs (fast updates/deletes on large tables;
    /// memory grows with table and transaction size).
    #[serde(default = "default_true")]
    pub primary_key: bool,
}

fn default_threads() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    #[serde(default = "default_true")]
    pub log_tables: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where `/health`, `/metrics`, `/status`, the status page and `/query` are served.
    #[serde(default = "default_listen")]
    pub listen: String,
}

/// `[http]` without `listen`: loopback only.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9187";

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            log_tables: true,
        }
    }
}

fn default_slot() -> String {
    DEFAULT_SLOT.into()
}
fn default_publication() -> String {
    DEFAULT_PUBLICATION.into()
}
fn default_flush_interval_ms() -> u64 {
    DEFAULT_FLUSH_INTERVAL_MS
}
fn default_max_batch_rows() -> usize {
    DEFAULT_MAX_BATCH_ROWS
}
fn default_listen() -> String {
    DEFAULT_HTTP_LISTEN.into()
}
fn default_true() -> bool {
    true
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mut config = Config::parse(&text)
            .map_err(|e| e.context(format!("config file {}", path.display())))?;
        // A relative sink path is relative to the config file, not to the working directory.
        if config.sink.path.is_relative() {
            if let Some(dir) = path.parent() {
                config.sink.path = dir.join(&config.sink.path);
            }
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, Error> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        config.source.url = expand_env(&config.source.url, "source.url")?;
        for t in &mut config.source.tables {
            *t = expand_env(t, "source.tables")?;
        }
        let path = config.sink.path.to_string_lossy().into_owned();
        config.sink.path = PathBuf::from(expand_env(&path, "sink.path")?);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        let s = &self.source;
        match s.kind.as_str() {
            "postgres" => {
                for (key, set) in [
                    ("source.server_id", s.server_id.is_some()),
                    ("source.zero_dates", s.zero_dates.is_some()),
                ] {
                    if set {
                        tracing::warn!("{key} applies to mysql sources only; ignoring it");
                    }
                }
            }
            "mysql" => {
                if s.server_id == Some(0) {
                    return Err(Error::config(
                        "source.server_id = 0 is invalid: use a replica id (1-4294967295) no other replica of the source uses",
                    ));
                }
                if let Some(z) = &s.zero_dates {
                    if z != "null" && z != "error" {
                        return Err(Error::config(format!(
                            "source.zero_dates = {z:?} is invalid: use \"null\" (replicate 0000-00-00 as NULL) or \"error\""
                        )));
                    }
                }
            }
            other => {
                return Err(Error::config(format!(
                    "source.type = {other:?} is unknown; expected \"postgres\" or \"mysql\""
                )))
            }
        }
        if s.tables.is_empty() {
            return Err(Error::config(
                "source.tables is empty; list schema.table globs, e.g. tables = [\"public.*\"]",
            ));
        }
        for t in &s.tables {
            let name = t.trim_start_matches('!');
            if !name.contains('.') {
                return Err(Error::config(format!(
                    "source.tables entry {t:?} has no schema; write schema.table, e.g. \"public.{name}\""
                )));
            }
        }
        for (key, v) in [
            ("source.slot", &s.slot),
            ("source.publication", &s.publication),
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
        if self.sink.kind != "duckdb" {
            return Err(Error::config(format!(
                "sink.type = {:?} is not available in this build; use \"duckdb\"",
                self.sink.kind
            )));
        }
        if self.apply.max_batch_rows == 0 {
            return Err(Error::config("apply.max_batch_rows must be at least 1"));
        }
        if self.apply.flush_interval_ms > 60_000 {
            return Err(Error::config(
                "apply.flush_interval_ms must be at most 60000",
            ));
        }
        if let Some(addr) = self.http_listen()? {
            if !addr.ip().is_loopback() {
                tracing::info!(listen = %addr, "http.listen is not a loopback address: /health, /metrics and /status are reachable from other machines; POST /query stays loopback-only");
            }
        }
        Ok(())
    }

    /// `[http] listen` as a socket address, if `[http]` is configured.
    pub fn http_listen(&self) -> Result<Option<std::net::SocketAddr>, Error> {
        let Some(http) = &self.http else {
            return Ok(None);
        };
        use std::net::ToSocketAddrs;
        let addr = http
            .listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next());
        addr.map(Some).ok_or_else(|| {
            Error::config(format!(
                "http.listen = {:?} is not an address: write ip:port, e.g. \"{DEFAULT_HTTP_LISTEN}\"",
                http.listen
            ))
        })
    }
}

/// "line L, column C: message", without the quoted source line the toml crate adds: that line
/// may hold a password (e.g. a malformed `url = ...`).
fn toml_error(text: &str, e: &toml::de::Error) -> Error {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            Error::config(format!(
                "TOML parse error at line {line}, column {column}: {message}"
            ))
        }
        None => Error::config(format!("TOML parse error: {message}")),
    }
}

/// Replaces `${NAME}` with the environment variable's value; an unset variable is an error.
pub fn expand_env(value: &str, key: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(format!("{key}: unterminated ${{ in {value:?}")))?;
        let name = &after[..end];
        let v = std::env::var(name).map_err(|_| {
            Error::config(format!("{key} refers to environment variable {name}, which is not set; export it before starting tidewater, or write the value in the config file"))
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[source]
type = "postgres"
url = "postgres://u:p@127.0.0.1:5432/db"
tables = ["public.*"]
[sink]
type = "duckdb"
path = "replica.duckdb"
"#;

    #[test]
    fn defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.source.slot, "tidewater");
        assert_eq!(c.apply.flush_interval_ms, 100);
        assert_eq!(c.apply.max_batch_rows, 50_000);
        assert!(c.apply.log_tables);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let text = MINIMAL.replace("[sink]", "[sink]\npth = 1");
        let e = Config::parse(&text).unwrap_err();
        assert!(e.to_string().contains("unknown field `pth`"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("TW_TEST_URL", "postgres://x@h/db");
        assert_eq!(
            expand_env("${TW_TEST_URL}", "k").unwrap(),
            "postgres://x@h/db"
        );
        assert_eq!(
            expand_env("a${TW_TEST_URL}b", "k").unwrap(),
            "apostgres://x@h/dbb"
        );
        let e = expand_env("${TW_SURELY_UNSET_VAR}", "source.url").unwrap_err();
        assert!(e.to_string().contains("TW_SURELY_UNSET_VAR"));
    }

    #[test]
    fn validation_messages() {
        let bad = MINIMAL.replace("\"public.*\"", "\"orders\"");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("public.orders"));
        let bad = MINIMAL.replace("type = \"postgres\"", "type = \"oracle\"");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("oracle"));
        let bad = format!("{MINIMAL}[http]\nlisten = \"localhost\"\n");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("http.listen"));
        let http = Config::parse(&format!("{MINIMAL}[http]\n")).unwrap();
        assert_eq!(
            http.http_listen().unwrap().unwrap().to_string(),
            "127.0.0.1:9187"
        );
        let bad = MINIMAL.replace("[sink]", "[apply]\nmax_batch_rows = 0\n[sink]");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("max_batch_rows"));
    }
}
