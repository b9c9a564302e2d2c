//! `tidewater.toml`: parsed strictly (unknown keys are errors), `${ENV}` expanded in string
//! values, validated with messages that name the key and the fix. `[source]` and `[sink]`
//! are tagged by their `type`; each type's struct and its checks live in its own crate
//! (`tidewater-postgres`, `tidewater-mysql`, `tidewater-duckdb`, `tidewater-bigquery`), and
//! the kind-specific calls on them in `registry.rs`.

use std::path::Path;

use serde::Deserialize;
use tidewater_core::apply::{
    BatchOptions, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_ROWS,
};
use tidewater_core::copy::ChunkSize;
use tidewater_core::Error;

use crate::config_sections::{self as sections, Foreign};
use crate::registry::{SINK_TYPES, SOURCE_TYPES};

pub use crate::registry::{SinkConfig, SourceConfig, PIPELINE_NAME};

mod verify;
pub use verify::{parse_duration, ContinuousVerify, VerifyConfig, DEFAULT_MAX_ROWS_PER_SECOND};

/// Rows a query returns when the request names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 10_000;
pub const MAX_LIMIT: usize = 100_000;
/// How long a query runs when the request names no timeout, and the longest it may ask for.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub sink: SinkConfig,
    #[serde(default)]
    pub apply: ApplyConfig,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    pub http: Option<HttpConfig>,
    pub sql: Option<SqlConfig>,
    /// Continuous verification inside `run` (off when absent).
    pub verify: Option<VerifyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// A batch commits at the next transaction boundary once it has touched this many
    /// tables; unset: no bound. Opt-in: it bounds what DuckDB holds per table an open
    /// transaction writes, at a cost in throughput when changes rotate over more tables than
    /// this (docs/performance.md, "Many tables").
    #[serde(default)]
    pub max_batch_tables: Option<usize>,
    #[serde(default = "default_true")]
    pub log_tables: bool,
    /// Whether a source transaction always commits whole (`tidewater_core::split`).
    #[serde(default)]
    pub large_transaction: LargeTransaction,
    /// With `large_transaction = "split"`: changes per piece.
    #[serde(default = "default_split_rows")]
    pub split_rows: usize,
}

/// `[apply] large_transaction`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LargeTransaction {
    /// Every source transaction commits in one destination transaction (readers see all of
    /// it or nothing); the destination holds a large one's bookkeeping until its end.
    #[default]
    Atomic,
    /// A transaction over `split_rows` changes commits in pieces: still exactly once, but
    /// readers can see its first pieces before its end.
    Split,
}

/// `[snapshot]`: the chunked initial snapshot (`tidewater_core::copy`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Rows read per chunk, each in its own short source transaction (DuckDB commits several
    /// together: `commit_rows`).
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// ... and about this many bytes of values (rows of that width: wide rows make shorter
    /// chunks).
    #[serde(default = "default_chunk_bytes")]
    pub chunk_bytes: usize,
    /// Copied rows a DuckDB commit gathers from consecutive chunks (see
    /// `tidewater_duckdb::COPY_BATCH`); 0: each chunk commits alone. Not used by BigQuery,
    /// whose copy commits are rationed by `[sink] copy_commit_interval_ms`.
    #[serde(default = "default_commit_rows")]
    pub commit_rows: usize,
    /// Chunks of a table read at once, each on its own source connection (key ranges found
    /// by the server: `tidewater_core::copy`, "Parallel reads").
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            chunk_rows: default_chunk_rows(),
            chunk_bytes: default_chunk_bytes(),
            commit_rows: default_commit_rows(),
            parallelism: default_parallelism(),
        }
    }
}

impl SnapshotConfig {
    pub fn chunk_size(&self) -> ChunkSize {
        ChunkSize {
            rows: self.chunk_rows,
            bytes: self.chunk_bytes,
            readers: self.parallelism,
        }
    }
}

fn default_chunk_rows() -> usize {
    tidewater_core::copy::DEFAULT_CHUNK_ROWS
}

fn default_chunk_bytes() -> usize {
    tidewater_core::copy::DEFAULT_CHUNK_BYTES
}

fn default_parallelism() -> usize {
    tidewater_core::copy::DEFAULT_READERS
}

fn default_commit_rows() -> usize {
    tidewater_duckdb::COPY_BATCH.rows
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
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_tables: None,
            log_tables: true,
            large_transaction: LargeTransaction::Atomic,
            split_rows: tidewater_core::split::DEFAULT_SPLIT_ROWS,
        }
    }
}

fn default_split_rows() -> usize {
    tidewater_core::split::DEFAULT_SPLIT_ROWS
}

fn default_flush_interval_ms() -> u64 {
    DEFAULT_FLUSH_INTERVAL_MS
}
fn default_max_batch_rows() -> usize {
    DEFAULT_MAX_BATCH_ROWS
}
fn default_max_batch_bytes() -> usize {
    DEFAULT_MAX_BATCH_BYTES
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
        // Relative paths in the sink are relative to the config file, not to the working
        // directory.
        if let Some(dir) = path.parent() {
            config.sink.relative_to(dir);
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, Error> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let ignored = sections::check(&mut table, "source", SOURCE_TYPES, Foreign::Ignore)?;
        sections::check(&mut table, "sink", SINK_TYPES, Foreign::Reject)?;
        // From the text when nothing was taken out, so that errors point at their line.
        let mut config: Config = if ignored {
            Config::deserialize(toml::Value::Table(table)).map_err(|e| toml_error(text, &e))?
        } else {
            toml::from_str(text).map_err(|e| toml_error(text, &e))?
        };
        config.validate()?;
        Ok(config)
    }

    /// Expands `${ENV}` (except in `source.url`: `query` and `status` read the replica and
    /// must work without the source's secrets; see `registry::driver`) and checks every key.
    fn validate(&mut self) -> Result<(), Error> {
        self.source.validate()?;
        self.sink.validate(self.apply.log_tables)?;
        if !(100..=1_000_000).contains(&self.snapshot.chunk_rows) {
            return Err(Error::config(
                "snapshot.chunk_rows must be between 100 and 1000000",
            ));
        }
        if !(1..=16).contains(&self.snapshot.parallelism) {
            return Err(Error::config(
                "snapshot.parallelism must be between 1 and 16 (source connections reading a table's chunks at once)",
            ));
        }
        if !(1 << 20..=1 << 30).contains(&self.snapshot.chunk_bytes) {
            return Err(Error::config(
                "snapshot.chunk_bytes must be between 1048576 (1 MiB) and 1073741824 (1 GiB)",
            ));
        }
        if self.apply.max_batch_rows == 0 {
            return Err(Error::config("apply.max_batch_rows must be at least 1"));
        }
        if self.apply.max_batch_bytes < 1 << 16 {
            return Err(Error::config(
                "apply.max_batch_bytes must be at least 65536",
            ));
        }
        if self.apply.max_batch_tables == Some(0) {
            return Err(Error::config("apply.max_batch_tables must be at least 1")
                .with_fix("leave it out for no bound"));
        }
        if self.apply.split_rows < 1000 {
            return Err(Error::config("apply.split_rows must be at least 1000"));
        }
        if self.apply.large_transaction == LargeTransaction::Split
            && !self.sink.splits_transactions()
        {
            return Err(Error::config(format!(
                "apply.large_transaction = \"split\" is not available for sink.type = {:?}: \
                 it commits every transaction whole",
                self.sink.kind()
            ))
            .with_fix("remove apply.large_transaction, or set it to \"atomic\""));
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
        if self.sql.is_some() && !self.sink.capabilities().sql_endpoint {
            return Err(Error::config(format!(
                "[sql] serves the DuckDB replica and is not available for sink.type = {:?}: \
                 query the destination directly instead",
                self.sink.kind()
            ))
            .with_fix("remove [sql]"));
        }
        self.sql_endpoint()?;
        // Continuous verification runs inside `run`, beside a replica the process opens
        // itself (a local file): a remote one is verified by `tidewater verify`.
        if self.verify.is_some()
            && !(self.sink.capabilities().verify && self.sink.local_file().is_some())
        {
            return Err(Error::config(format!(
                "[verify] compares a DuckDB replica inside `tidewater run` and is not \
                 available for sink.type = {:?} yet",
                self.sink.kind()
            ))
            .with_fix("remove [verify], and run `tidewater verify` instead"));
        }
        self.continuous_verify()?;
        Ok(())
    }

    /// How the apply loop batches: `[apply]`, adjusted for the sink.
    pub fn batch_options(&self) -> BatchOptions {
        let options = BatchOptions {
            flush_interval: std::time::Duration::from_millis(self.apply.flush_interval_ms),
            max_batch_rows: self.apply.max_batch_rows,
            max_batch_bytes: self.apply.max_batch_bytes,
            max_batch_tables: self.apply.max_batch_tables.unwrap_or(usize::MAX),
            min_commit_interval: std::time::Duration::ZERO,
            copy_commit_interval: std::time::Duration::ZERO,
            copy_commit_burst: 0,
            copy_batch: None,
            split_rows: (self.apply.large_transaction == LargeTransaction::Split)
                .then_some(self.apply.split_rows),
        };
        crate::registry::batch_options(&self.sink, options, self.snapshot.commit_rows)
    }

    /// `[verify]` validated, if configured.
    pub fn continuous_verify(&self) -> Result<Option<ContinuousVerify>, Error> {
        self.verify.as_ref().map(VerifyConfig::validate).transpose()
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
        let SourceConfig::Postgres(source) = &c.source else {
            panic!("{:?}", c.source)
        };
        assert_eq!(source.slot, "tidewater");
        assert_eq!(c.apply.flush_interval_ms, 100);
        assert_eq!(c.apply.max_batch_rows, 50_000);
        assert_eq!(c.apply.max_batch_bytes, 16 << 20);
        assert!(c.apply.log_tables);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let text = MINIMAL.replace("[sink]", "[sink]\npth = 1");
        let e = Config::parse(&text).unwrap_err();
        assert!(e.to_string().contains("unknown field `pth`"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    /// A MySQL key in a PostgreSQL `[source]` was accepted with a warning before the
    /// sections had types of their own; it still is, and the rest is still checked strictly.
    #[test]
    fn a_key_of_another_source_type_is_ignored() {
        let text = MINIMAL.replace(
            "tables = [\"public.*\"]",
            "tables = [\"public.*\"]\nserver_id = 5\nzero_dates = \"error\"",
        );
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.source.kind(), "postgres");
        let e = Config::parse(&text.replace("[sink]", "[sink]\npth = 1")).unwrap_err();
        assert!(e.to_string().contains("unknown field `pth`"), "{e}");
        let e = Config::parse(&text.replace("server_id = 5", "server_id = 5\nslott = \"x\""))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `slott`"), "{e}");
    }

    #[test]
    fn source_type_aliases() {
        for (alias, kind) in [("postgresql", "postgres"), ("mariadb", "mysql")] {
            let text = MINIMAL.replace("type = \"postgres\"", &format!("type = \"{alias}\""));
            let c = Config::parse(&text).unwrap_or_else(|e| panic!("{alias}: {e}"));
            assert_eq!(c.source.kind(), kind);
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
        assert_eq!(c.sink.local_file(), Some(Path::new("replica.duckdb")));
        let e = crate::registry::driver(&c.source).err().unwrap();
        assert!(e.to_string().contains("TW_SURELY_UNSET_PASSWORD"), "{e}");
        assert_eq!(e.exit_code(), 2);
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
        assert_eq!(
            Config::parse(MINIMAL)
                .unwrap()
                .batch_options()
                .max_batch_tables,
            usize::MAX
        );
        let set = MINIMAL.replace("[sink]", "[apply]\nmax_batch_tables = 3\n[sink]");
        assert_eq!(
            Config::parse(&set)
                .unwrap()
                .batch_options()
                .max_batch_tables,
            3
        );
        let bad = MINIMAL.replace("[sink]", "[apply]\nmax_batch_tables = 0\n[sink]");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("apply.max_batch_tables"));
        let bad = MINIMAL.replace("[sink]", "[apply]\nmax_batch_bytes = 1000\n[sink]");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("max_batch_bytes"));
        let bad = MINIMAL.replace("path = ", "memory_limit = \"lots\"\npath = ");
        assert!(Config::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("memory_limit"));
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
        let SinkConfig::BigQuery(sink) = &c.sink else {
            panic!("{:?}", c.sink)
        };
        assert_eq!(sink.merge_interval_ms, 1000);
        assert_eq!(sink.credentials, None);
        assert_eq!(c.batch_options().min_commit_interval.as_millis(), 1000);
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
