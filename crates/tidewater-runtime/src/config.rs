//! `tidewater.toml`: parsed strictly (unknown keys are errors), `${ENV}` expanded in string
//! values, validated with messages that name the key and the fix.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidewater_core::apply::{DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_BATCH_ROWS};
use tidewater_core::Error;

mod verify;
pub use verify::{parse_duration, ContinuousVerify, VerifyConfig, DEFAULT_MAX_ROWS_PER_SECOND};

/// The name under which the replica's pipeline state is stored (`_tidewater.pipeline`).
pub const PIPELINE_NAME: &str = "default";

/// Rows a query returns when the request names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 10_000;
pub const MAX_LIMIT: usize = 100_000;
/// How long a query runs when the request names no timeout, and the longest it may ask for.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

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
    pub sql: Option<SqlConfig>,
    /// Continuous verification inside `run` (off when absent).
    pub verify: Option<VerifyConfig>,
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
    /// duckdb: the replica file.
    #[serde(default)]
    pub path: PathBuf,
    /// bigquery: where the replica lives, and as whom to write it.
    pub project: Option<String>,
    pub dataset: Option<String>,
    pub location: Option<String>,
    /// bigquery: a service-account key file; absent: application-default credentials.
    pub credentials: Option<PathBuf>,
    /// bigquery: `http://host:port` of an emulator instead of Google's endpoint.
    pub endpoint: Option<String>,
    /// bigquery: a batch is merged into the replicas at most this often.
    pub merge_interval_ms: Option<u64>,
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

/// `[sink] merge_interval_ms` when not set: BigQuery runs a MERGE about once a second.
pub const DEFAULT_MERGE_INTERVAL_MS: u64 = 1000;

impl SinkConfig {
    pub fn is_bigquery(&self) -> bool {
        self.kind == "bigquery"
    }

    /// The DuckDB replica file, for the commands that read it; `command` names the command
    /// in the message for other sinks.
    pub fn duckdb_path(&self, command: &str) -> Result<&Path, Error> {
        if self.kind == "duckdb" {
            return Ok(&self.path);
        }
        Err(Error::config(format!(
            "`tidewater {command}` reads the DuckDB replica file and is not available for \
             sink.type = {:?} yet: query the dataset in BigQuery instead",
            self.kind
        )))
    }

    pub fn merge_interval_ms(&self) -> u64 {
        self.merge_interval_ms.unwrap_or(DEFAULT_MERGE_INTERVAL_MS)
    }

    fn validate(&self, log_tables: bool) -> Result<(), Error> {
        let bigquery_keys = [
            ("project", self.project.is_some()),
            ("dataset", self.dataset.is_some()),
            ("location", self.location.is_some()),
            ("credentials", self.credentials.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("merge_interval_ms", self.merge_interval_ms.is_some()),
        ];
        match self.kind.as_str() {
            "duckdb" => {
                if self.path.as_os_str().is_empty() {
                    return Err(Error::config(
                        "sink.path is missing: name the DuckDB replica file, e.g. path = \"replica.duckdb\"",
                    ));
                }
                if let Some((key, _)) = bigquery_keys.iter().find(|(_, set)| *set) {
                    return Err(Error::config(format!(
                        "sink.{key} applies to sink.type = \"bigquery\" only; remove it"
                    )));
                }
            }
            "bigquery" => {
                if !self.path.as_os_str().is_empty() {
                    return Err(Error::config(
                        "sink.path applies to sink.type = \"duckdb\" only; remove it (BigQuery \
                         takes project and dataset)",
                    ));
                }
                // Defaults cannot be told from settings here: anything else was set.
                let duckdb_keys = [
                    ("threads", self.threads != default_threads()),
                    ("primary_key", !self.primary_key),
                ];
                if let Some((key, _)) = duckdb_keys.iter().find(|(_, set)| *set) {
                    return Err(Error::config(format!(
                        "sink.{key} applies to sink.type = \"duckdb\" only; remove it"
                    )));
                }
                for (key, value) in [("project", &self.project), ("dataset", &self.dataset)] {
                    match value.as_deref() {
                        None | Some("") => {
                            return Err(Error::config(format!(
                                "sink.{key} is missing: the BigQuery sink needs project and \
                                 dataset, e.g. project = \"my-project\", dataset = \"replica\""
                            )))
                        }
                        Some(_) => {}
                    }
                }
                let dataset = self.dataset.as_deref().unwrap_or_default();
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
                if !(100..=3_600_000).contains(&self.merge_interval_ms()) {
                    return Err(Error::config(
                        "sink.merge_interval_ms must be between 100 and 3600000",
                    ));
                }
                if !log_tables {
                    return Err(Error::config(
                        "apply.log_tables = false does not work with the BigQuery sink: its \
                         replicas are merged from the _log tables. Remove the setting",
                    ));
                }
            }
            other => {
                return Err(Error::config(format!(
                    "sink.type = {other:?} is unknown; use \"duckdb\" or \"bigquery\""
                )))
            }
        }
        Ok(())
    }
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

/// `[sql]`: the PostgreSQL wire-protocol endpoint of `run` (psql, BI tools).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// A loopback address: clients are served without a password.
    pub listen: String,
    /// Rows a statement returns at most (more are cut, with a warning to the client).
    #[serde(default = "default_sql_limit")]
    pub limit: usize,
    /// A statement running longer is interrupted.
    #[serde(default = "default_sql_timeout_ms")]
    pub timeout_ms: u64,
}

/// `[sql]` validated: what the endpoint needs to start.
#[derive(Debug, Clone, Copy)]
pub struct SqlEndpoint {
    pub listen: std::net::SocketAddr,
    pub limit: usize,
    pub timeout: std::time::Duration,
}

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
fn default_sql_limit() -> usize {
    DEFAULT_LIMIT
}
fn default_sql_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT.as_millis() as u64
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
        if let Some(dir) = path.parent() {
            let sink = &mut config.sink;
            if sink.path.is_relative() && !sink.path.as_os_str().is_empty() {
                sink.path = dir.join(&sink.path);
            }
            if let Some(key) = sink.credentials.as_mut().filter(|k| k.is_relative()) {
                *key = dir.join(&*key);
            }
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, Error> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        // Other names of the same source kinds.
        config.source.kind = match config.source.kind.as_str() {
            "postgresql" => "postgres".into(),
            "mariadb" => "mysql".into(),
            _ => config.source.kind,
        };
        // source.url is expanded only when the source is used (`source_url`): `query` and
        // `status` read the replica and must work without the source's secrets.
        for t in &mut config.source.tables {
            *t = expand_env(t, "source.tables")?;
        }
        let sink = &mut config.sink;
        let path = sink.path.to_string_lossy().into_owned();
        sink.path = PathBuf::from(expand_env(&path, "sink.path")?);
        for (key, value) in [
            ("sink.project", &mut sink.project),
            ("sink.dataset", &mut sink.dataset),
            ("sink.location", &mut sink.location),
            ("sink.endpoint", &mut sink.endpoint),
        ] {
            if let Some(v) = value.as_mut() {
                *v = expand_env(v, key)?;
            }
        }
        if let Some(key) = sink.credentials.as_mut() {
            *key = PathBuf::from(expand_env(&key.to_string_lossy(), "sink.credentials")?);
        }
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
                    "source.type = {other:?} is unknown; expected \"postgres\" (or \"postgresql\") \
                     or \"mysql\" (or \"mariadb\")"
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
        self.sink.validate(self.apply.log_tables)?;
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
        if self.sql.is_some() && self.sink.is_bigquery() {
            return Err(Error::config(
                "[sql] serves the DuckDB replica and is not available for sink.type = \"bigquery\": \
                 query the dataset in BigQuery instead; remove [sql]",
            ));
        }
        self.sql_endpoint()?;
        if self.verify.is_some() && self.sink.is_bigquery() {
            return Err(Error::config(
                "[verify] compares a DuckDB replica and is not available for sink.type = \
                 \"bigquery\" yet; remove [verify]",
            ));
        }
        self.continuous_verify()?;
        Ok(())
    }

    /// `[verify]` validated, if configured.
    pub fn continuous_verify(&self) -> Result<Option<ContinuousVerify>, Error> {
        self.verify.as_ref().map(VerifyConfig::validate).transpose()
    }

    /// `source.url` with `${ENV}` expanded: fails naming the variable when one is not set.
    pub fn source_url(&self) -> Result<String, Error> {
        expand_env(&self.source.url, "source.url")
    }

    /// `[http] listen` as a socket address, if `[http]` is configured.
    pub fn http_listen(&self) -> Result<Option<std::net::SocketAddr>, Error> {
        let Some(http) = &self.http else {
            return Ok(None);
        };
        socket_addr("http.listen", &http.listen, DEFAULT_HTTP_LISTEN).map(Some)
    }

    /// `[sql]`, if configured: a loopback address, the row limit and the timeout.
    pub fn sql_endpoint(&self) -> Result<Option<SqlEndpoint>, Error> {
        let Some(sql) = &self.sql else {
            return Ok(None);
        };
        let listen = socket_addr("sql.listen", &sql.listen, "127.0.0.1:5433")?;
        if !listen.ip().is_loopback() {
            return Err(Error::config(format!(
                "sql.listen = {:?} is not a loopback address: the SQL endpoint serves its \
                 clients without a password, so it listens on this machine only (127.0.0.1 or \
                 [::1]); reach it from elsewhere through an SSH tunnel",
                sql.listen
            )));
        }
        if !(1..=MAX_LIMIT).contains(&sql.limit) {
            return Err(Error::config(format!(
                "sql.limit = {} is out of range: 1 to {}",
                sql.limit, MAX_LIMIT
            )));
        }
        let max_ms = MAX_TIMEOUT.as_millis() as u64;
        if !(1..=max_ms).contains(&sql.timeout_ms) {
            return Err(Error::config(format!(
                "sql.timeout_ms = {} is out of range: 1 to {max_ms}",
                sql.timeout_ms
            )));
        }
        Ok(Some(SqlEndpoint {
            listen,
            limit: sql.limit,
            timeout: std::time::Duration::from_millis(sql.timeout_ms),
        }))
    }
}

/// `value` of `key` as a socket address (a host name resolves to its first address).
fn socket_addr(key: &str, value: &str, example: &str) -> Result<std::net::SocketAddr, Error> {
    use std::net::ToSocketAddrs;
    let addr = value.to_socket_addrs().ok().and_then(|mut a| a.next());
    addr.ok_or_else(|| {
        Error::config(format!(
            "{key} = {value:?} is not an address: write ip:port, e.g. \"{example}\""
        ))
    })
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
    fn source_type_aliases() {
        for (alias, kind) in [("postgresql", "postgres"), ("mariadb", "mysql")] {
            let text = MINIMAL.replace("type = \"postgres\"", &format!("type = \"{alias}\""));
            let c = Config::parse(&text).unwrap_or_else(|e| panic!("{alias}: {e}"));
            assert_eq!(c.source.kind, kind);
        }
    }

    #[test]
    fn source_secrets_are_expanded_only_when_the_source_is_used() {
        let text = MINIMAL.replace(
            "postgres://u:p@127.0.0.1:5432/db",
            "postgres://u:${TW_SURELY_UNSET_PASSWORD}@127.0.0.1:5432/db",
        );
        // `query` and `status` load the config to find the replica: no secret needed.
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.sink.path, std::path::PathBuf::from("replica.duckdb"));
        let e = c.source_url().unwrap_err();
        assert!(e.to_string().contains("TW_SURELY_UNSET_PASSWORD"), "{e}");
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

    #[test]
    fn sql_endpoint() {
        assert!(Config::parse(MINIMAL)
            .unwrap()
            .sql_endpoint()
            .unwrap()
            .is_none());
        let c = Config::parse(&format!("{MINIMAL}[sql]\nlisten = \"127.0.0.1:5433\"\n")).unwrap();
        let sql = c.sql_endpoint().unwrap().unwrap();
        assert_eq!(sql.listen.to_string(), "127.0.0.1:5433");
        assert_eq!(sql.limit, DEFAULT_LIMIT);
        assert_eq!(sql.timeout, DEFAULT_TIMEOUT);
        let c = Config::parse(&format!(
            "{MINIMAL}[sql]\nlisten = \"[::1]:0\"\nlimit = 5\ntimeout_ms = 2000\n"
        ))
        .unwrap();
        let sql = c.sql_endpoint().unwrap().unwrap();
        assert_eq!((sql.limit, sql.timeout.as_millis()), (5, 2000));
        for (sql, needle) in [
            ("listen = \"0.0.0.0:5433\"", "not a loopback address"),
            ("listen = \"192.0.2.1:5433\"", "SSH tunnel"),
            (
                "listen = \"5433\"",
                "sql.listen = \"5433\" is not an address",
            ),
            ("", "missing field `listen`"),
            (
                "listen = \"127.0.0.1:5433\"\npassword = \"x\"",
                "unknown field `password`",
            ),
            ("listen = \"127.0.0.1:5433\"\nlimit = 0", "sql.limit"),
            ("listen = \"127.0.0.1:5433\"\nlimit = 100001", "sql.limit"),
            (
                "listen = \"127.0.0.1:5433\"\ntimeout_ms = 0",
                "sql.timeout_ms",
            ),
        ] {
            let e = Config::parse(&format!("{MINIMAL}[sql]\n{sql}\n")).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    const BIGQUERY: &str = r#"
[source]
type = "postgres"
url = "postgres://u:p@127.0.0.1:5432/db"
tables = ["public.*"]
[sink]
type = "bigquery"
project = "my-project"
dataset = "replica"
location = "EU"
"#;

    #[test]
    fn bigquery_sink() {
        let c = Config::parse(BIGQUERY).unwrap();
        assert!(c.sink.is_bigquery());
        assert_eq!(c.sink.merge_interval_ms(), 1000);
        assert_eq!(c.sink.credentials, None);
        let e = c.sink.duckdb_path("query").unwrap_err();
        assert!(
            e.to_string()
                .contains("not available for sink.type = \"bigquery\""),
            "{e}"
        );
        let typo = BIGQUERY.replace("location", "locaton");
        let e = Config::parse(&typo).unwrap_err();
        assert!(e.to_string().contains("unknown field `locaton`"), "{e}");
        for (text, needle) in [
            (
                BIGQUERY.replace("dataset = \"replica\"", ""),
                "sink.dataset is missing",
            ),
            (
                BIGQUERY.replace("dataset = \"replica\"", "dataset = \"a-b\""),
                "dataset names",
            ),
            (
                format!("{BIGQUERY}path = \"x.duckdb\"\n"),
                "sink.path applies to",
            ),
            (
                format!("{BIGQUERY}threads = 4\n"),
                "sink.threads applies to",
            ),
            (
                format!("{BIGQUERY}endpoint = \"localhost:9050\"\n"),
                "http://host:port",
            ),
            (
                format!("{BIGQUERY}merge_interval_ms = 5\n"),
                "merge_interval_ms",
            ),
            (
                format!("{BIGQUERY}[apply]\nlog_tables = false\n"),
                "log_tables",
            ),
            (
                MINIMAL.replace("path = ", "dataset = \"d\"\npath = "),
                "sink.dataset applies",
            ),
            (
                MINIMAL.replace("\"duckdb\"", "\"oracle\""),
                "use \"duckdb\" or \"bigquery\"",
            ),
            (
                format!("{BIGQUERY}[sql]\nlisten = \"127.0.0.1:5433\"\n"),
                "[sql] serves the DuckDB replica",
            ),
        ] {
            let e = Config::parse(&text).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }
}
