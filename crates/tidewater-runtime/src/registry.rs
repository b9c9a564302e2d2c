//! The registry: the one place that maps the configured source and sink kinds to their
//! crates. The configured source, whichever kind it is, is one type for the pipeline to run
//! and one entry point for `check`; the configured sink is opened here with its options.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use tidewater_bigquery::{BigQueryConfig, BigQueryOptions, BigQueryReplica, BigQuerySink};
use tidewater_core::apply::BatchOptions;
use tidewater_core::check::CheckItem;
use tidewater_core::config::SectionType;
use tidewater_core::replica::{Comparison, Replica, ReplicaCapabilities, SinkMetrics};
use tidewater_core::{
    ConsistentReader, Error, Position, Result, RowConsumer, Sink, Source, SourceContext,
    SourceDriver, TableSchema, Value,
};
use tidewater_duckdb::{DuckDbConfig, DuckDbOptions, DuckDbReplica, DuckDbSink};
use tidewater_mysql::{MySqlDriver, MySqlReader, MySqlSource, MySqlSourceConfig};
use tidewater_postgres::{PgDriver, PgReader, PgSource, PgSourceConfig};

/// The name under which the replica's pipeline state is stored (`_tidewater.pipeline`).
pub const PIPELINE_NAME: &str = "default";

/// The source types, their other names and their keys (`--print-defaults`, and naming a
/// key of another type). The same names as `SourceConfig`'s variants (a test checks).
pub const SOURCE_TYPES: &[SectionType] = &[
    tidewater_postgres::config::SOURCE_TYPE,
    tidewater_mysql::config::SOURCE_TYPE,
];

/// The sink types and their keys, as `SOURCE_TYPES`.
pub const SINK_TYPES: &[SectionType] = &[
    tidewater_duckdb::config::SINK_TYPE,
    tidewater_bigquery::config::SINK_TYPE,
];

/// `[source]`: one struct per source type, each owned and validated by its crate; tagged by
/// `type` (one of `SOURCE_TYPES`, aliases included).
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Postgres(PgSourceConfig),
    MySql(MySqlSourceConfig),
}

/// `[sink]`: one struct per sink type, each owned and validated by its crate; tagged by
/// `type` (one of `SINK_TYPES`).
#[derive(Debug, Clone)]
pub enum SinkConfig {
    DuckDb(DuckDbConfig),
    BigQuery(BigQueryConfig),
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (name, table) = tagged(d, SOURCE_TYPES)?;
        match name {
            "postgres" => typed(table).map(SourceConfig::Postgres),
            _ => typed(table).map(SourceConfig::MySql),
        }
    }
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (name, table) = tagged(d, SINK_TYPES)?;
        match name {
            "duckdb" => typed(table).map(SinkConfig::DuckDb),
            _ => typed(table).map(SinkConfig::BigQuery),
        }
    }
}

/// A section's `type` (its name among `types`, for an alias too) and its other keys.
fn tagged<'de, D: Deserializer<'de>>(
    d: D,
    types: &[SectionType],
) -> std::result::Result<(&'static str, toml::Table), D::Error> {
    let mut table = toml::Table::deserialize(d)?;
    let Some(toml::Value::String(kind)) = table.remove("type") else {
        return Err(D::Error::missing_field("type"));
    };
    match types.iter().find(|t| t.is_named(&kind)) {
        Some(t) => Ok((t.name, table)),
        // (`config_sections` names an unknown type first, with the section.)
        None => Err(D::Error::custom(format!("type = {kind:?} is unknown"))),
    }
}

/// The section's struct, deserialized on its own (not through serde's internally tagged
/// enums, which lose the key): an error names the key ("... in `threads`").
fn typed<T: DeserializeOwned, E: serde::de::Error>(
    table: toml::Table,
) -> std::result::Result<T, E> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| E::custom(e.to_string().trim_end().replace('\n', " ")))
}

impl SourceConfig {
    /// The source type's name (an alias in the file gives the type's own name).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::MySql(_) => "mysql",
        }
    }

    /// The configured table globs.
    pub fn tables(&self) -> &[String] {
        match self {
            SourceConfig::Postgres(c) => &c.tables,
            SourceConfig::MySql(c) => &c.tables,
        }
    }

    /// Expands `${ENV}` (not in the URL) and checks every key, in the source's crate.
    pub fn validate(&mut self) -> Result<()> {
        match self {
            SourceConfig::Postgres(c) => c.validate(),
            SourceConfig::MySql(c) => c.validate(),
        }
    }
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::DuckDb(_) => "duckdb",
            SinkConfig::BigQuery(_) => "bigquery",
        }
    }

    /// Expands `${ENV}` and checks every key, in the sink's crate; `log_tables` is
    /// `[apply] log_tables`.
    pub fn validate(&mut self, log_tables: bool) -> Result<()> {
        match self {
            SinkConfig::DuckDb(c) => c.validate(),
            SinkConfig::BigQuery(c) => c.validate(log_tables),
        }
    }

    /// Makes relative paths relative to the config file's directory `dir`.
    pub fn relative_to(&mut self, dir: &Path) {
        match self {
            SinkConfig::DuckDb(c) => c.relative_to(dir),
            SinkConfig::BigQuery(c) => c.relative_to(dir),
        }
    }

    /// The replica file on this machine, for sinks that keep one (DuckDB): the status file
    /// beside it, one writer at a time, `query`, `status`, `verify` and `[sql]` read it.
    pub fn local_file(&self) -> Option<&Path> {
        match self {
            SinkConfig::DuckDb(c) => Some(&c.path),
            SinkConfig::BigQuery(_) => None,
        }
    }

    /// What the sink's read side offers (`Replica::capabilities`), known from the config
    /// alone: `[sql]` and `[verify]` are checked against it before anything is opened.
    pub fn capabilities(&self) -> ReplicaCapabilities {
        match self {
            SinkConfig::DuckDb(_) => DuckDbReplica::CAPABILITIES,
            SinkConfig::BigQuery(_) => BigQueryReplica::CAPABILITIES,
        }
    }

    /// Whether the sink commits a source transaction in pieces (`Sink::splits_transactions`,
    /// `[apply] large_transaction = "split"`), known from the config alone.
    pub fn splits_transactions(&self) -> bool {
        matches!(self, SinkConfig::DuckDb(_))
    }

    /// The replica file, for the commands that read it; `command` names the command in the
    /// message for sinks without one.
    pub fn duckdb_path(&self, command: &str) -> Result<&Path> {
        self.local_file().ok_or_else(|| {
            Error::config(format!(
                "`tidewater {command}` reads the DuckDB replica file and is not available for \
                 sink.type = {:?} yet",
                self.kind()
            ))
            .with_fix("query the destination directly instead")
        })
    }

    /// The shortest time between two commits, when the sink needs one: BigQuery merges at
    /// most every `merge_interval_ms` (each MERGE is a DML job, and BigQuery limits those
    /// per table).
    fn min_commit_interval(&self) -> Option<Duration> {
        match self {
            SinkConfig::DuckDb(_) => None,
            SinkConfig::BigQuery(c) => Some(Duration::from_millis(c.merge_interval_ms)),
        }
    }

    /// How often a batch holding a copy's chunks may commit (`BatchOptions`), when the sink
    /// wants few such commits: BigQuery, one load job per copied table each.
    fn copy_commit_interval(&self) -> Option<Duration> {
        match self {
            SinkConfig::DuckDb(_) => None,
            SinkConfig::BigQuery(c) => Some(Duration::from_millis(c.copy_commit_interval_ms)),
        }
    }
}

/// The configured source driver, whichever kind it is.
pub enum AnyDriver {
    Postgres(PgDriver),
    MySql(MySqlDriver),
}

/// The replication stream of the configured source.
pub enum AnySource {
    Postgres(PgSource),
    MySql(MySqlSource),
}

/// `verify`'s reader of the configured source.
pub enum AnyReader {
    Postgres(PgReader),
    MySql(MySqlReader),
}

/// `tidewater teardown` at the source: the objects dropped (or, without `drop`, that would
/// be); `None` when the source kind leaves nothing behind (a binlog reader).
pub async fn teardown_source(source: &SourceConfig, drop: bool) -> Result<Option<Vec<String>>> {
    match source {
        SourceConfig::MySql(_) => Ok(None),
        SourceConfig::Postgres(c) => {
            let found = tidewater_postgres::teardown::teardown(&c.resolved()?, drop).await?;
            Ok(Some(found.objects))
        }
    }
}

/// The driver of the configured source (nothing is connected yet). Fails when `source.url`
/// names an environment variable that is not set.
pub fn driver(source: &SourceConfig) -> Result<AnyDriver> {
    Ok(match source {
        SourceConfig::MySql(c) => AnyDriver::MySql(MySqlDriver {
            config: c.resolved()?,
        }),
        SourceConfig::Postgres(c) => AnyDriver::Postgres(PgDriver {
            config: c.resolved()?,
        }),
    })
}

impl SourceDriver for AnyDriver {
    type Stream = AnySource;
    type Reader = AnyReader;

    async fn connect(&self) -> Result<AnySource> {
        Ok(match self {
            AnyDriver::Postgres(d) => AnySource::Postgres(d.connect().await?),
            AnyDriver::MySql(d) => AnySource::MySql(d.connect().await?),
        })
    }

    async fn check(&self, copy_readers: usize) -> Vec<CheckItem> {
        match self {
            AnyDriver::Postgres(d) => d.check(copy_readers).await,
            AnyDriver::MySql(d) => d.check(copy_readers).await,
        }
    }

    async fn row_estimates(&self, tables: &[Arc<TableSchema>]) -> BTreeMap<String, u64> {
        match self {
            AnyDriver::Postgres(d) => d.row_estimates(tables).await,
            AnyDriver::MySql(d) => d.row_estimates(tables).await,
        }
    }

    async fn reader(&self, only: &[String]) -> Result<AnyReader> {
        Ok(match self {
            AnyDriver::Postgres(d) => AnyReader::Postgres(d.reader(only).await?),
            AnyDriver::MySql(d) => AnyReader::MySql(d.reader(only).await?),
        })
    }
}

impl Source for AnySource {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        match self {
            AnySource::Postgres(s) => s.tables(),
            AnySource::MySql(s) => s.tables(),
        }
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        match self {
            AnySource::Postgres(s) => s.run(ctx).await,
            AnySource::MySql(s) => s.run(ctx).await,
        }
    }
}

impl ConsistentReader for AnyReader {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        match self {
            AnyReader::Postgres(r) => r.tables(),
            AnyReader::MySql(r) => r.tables(),
        }
    }

    async fn begin(&mut self) -> Result<Position> {
        match self {
            AnyReader::Postgres(r) => r.begin().await,
            AnyReader::MySql(r) => r.begin().await,
        }
    }

    async fn end(&mut self) -> Result<()> {
        match self {
            AnyReader::Postgres(r) => r.end().await,
            AnyReader::MySql(r) => r.end().await,
        }
    }

    async fn read<C: RowConsumer>(
        &mut self,
        table: usize,
        keys: Option<&[Vec<Value>]>,
        out: &mut C,
    ) -> Result<u64> {
        match self {
            AnyReader::Postgres(r) => r.read(table, keys, out).await,
            AnyReader::MySql(r) => r.read(table, keys, out).await,
        }
    }

    fn reached(&self, applied: &Position, target: &Position) -> bool {
        match self {
            AnyReader::Postgres(r) => r.reached(applied, target),
            AnyReader::MySql(r) => r.reached(applied, target),
        }
    }
}

/// Opens the configured sink; `source_type` and `log_tables` (`[apply]`) go into its
/// options. DuckDB also gives its read side, which the monitor reads the replica through
/// (status, `/query`); BigQuery gives its bytes processed for `/metrics` (its read side is
/// opened by the commands, `open_remote_replica`: the monitor would bill a query a second).
pub async fn open_sink(
    sink: &SinkConfig,
    source_type: &str,
    log_tables: bool,
) -> Result<OpenedSink> {
    let c = match sink {
        SinkConfig::BigQuery(c) => {
            let sink = BigQuerySink::connect(BigQueryOptions {
                connection: c.connection(),
                pipeline: PIPELINE_NAME.into(),
                source_type: source_type.into(),
            })
            .await?;
            let metrics: Arc<dyn SinkMetrics> = sink.cost();
            return Ok(OpenedSink {
                sink: Box::new(sink),
                replica: None,
                metrics: Some(metrics),
            });
        }
        SinkConfig::DuckDb(c) => c,
    };
    let opts = DuckDbOptions {
        path: c.path.clone(),
        log_tables,
        pipeline: PIPELINE_NAME.into(),
        source_type: source_type.into(),
        threads: c.threads,
        primary_key: c.primary_key,
        primary_key_rows: c.primary_key_rows,
        memory_limit: c.memory_limit.clone(),
        checkpoint_threshold: c.checkpoint_threshold.clone(),
        checkpoint_when_idle: c.checkpoint_when_idle,
        storage_version: c.storage_version.clone(),
    };
    let sink = tokio::task::spawn_blocking(move || DuckDbSink::open(opts))
        .await
        .map_err(|e| Error::sink(format!("opening the sink: {e}")))??;
    let replica = DuckDbReplica::beside_sink(sink.connection(), PIPELINE_NAME)?;
    Ok(OpenedSink {
        sink: Box::new(sink),
        replica: Some(Arc::new(replica)),
        metrics: None,
    })
}

/// What `open_sink` opened: the sink, and what the monitor reads beside it.
pub struct OpenedSink {
    pub sink: Box<dyn Sink>,
    /// Its read side (status, `/query`, the SQL endpoint), when it has one.
    pub replica: Option<Arc<dyn Replica>>,
    /// What the sink counts about itself (`/metrics`).
    pub metrics: Option<Arc<dyn SinkMetrics>>,
}

/// A replica in a remote warehouse (no file on this machine), opened for `status`, `query`
/// and `verify` whether or not `tidewater run` writes it.
pub struct RemoteReplica {
    pub replica: Arc<dyn Replica>,
    /// What `tidewater status` calls it (`bigquery project.dataset`).
    pub name: String,
    /// How long its stored position may stand still before a reader stops waiting for it:
    /// a writer commits at least this often while the source has changes.
    pub settle: Duration,
}

/// The read side of the configured sink when it is remote (`None` for a local file: see
/// `open_local_replica`).
pub async fn open_remote_replica(sink: &SinkConfig) -> Result<Option<RemoteReplica>> {
    let SinkConfig::BigQuery(c) = sink else {
        return Ok(None);
    };
    let replica = BigQueryReplica::connect(&c.connection(), PIPELINE_NAME).await?;
    let interval = Duration::from_millis(c.merge_interval_ms);
    Ok(Some(RemoteReplica {
        name: replica.name(),
        replica: Arc::new(replica),
        settle: (interval * 3).max(Duration::from_secs(5)),
    }))
}

/// `verify`'s comparison with a replica file on this machine while nobody writes it; fails
/// while `tidewater run` holds it, with `replica::Held` as the error's source.
pub fn open_local_comparison(path: &Path) -> Result<Box<dyn Comparison>> {
    DuckDbReplica::file_comparison(path)
}

/// The read side of a replica file on this machine (`SinkConfig::local_file`, `--db`),
/// opened read-only: fails while `tidewater run` holds it, with `replica::Held` as the
/// error's source.
pub fn open_local_replica(path: &Path) -> Result<Arc<dyn Replica>> {
    Ok(Arc::new(DuckDbReplica::open_read_only(
        path,
        PIPELINE_NAME,
    )?))
}

/// How the apply loop batches for the configured sink: `options` from `[apply]`, then
/// what the sink needs (see `SinkConfig::min_commit_interval`; DuckDB gathers a copy's
/// chunks into commits of `copy_commit_rows`, `[snapshot] commit_rows`).
pub fn batch_options(
    sink: &SinkConfig,
    mut options: BatchOptions,
    copy_commit_rows: usize,
) -> BatchOptions {
    if let Some(interval) = sink.min_commit_interval() {
        options.flush_interval = interval;
        options.min_commit_interval = interval;
    }
    if let (SinkConfig::DuckDb(_), 1..) = (sink, copy_commit_rows) {
        options.copy_batch = Some(tidewater_core::apply::CopyBatch {
            rows: copy_commit_rows,
            ..tidewater_duckdb::COPY_BATCH
        });
    }
    if let Some(interval) = sink.copy_commit_interval() {
        options.copy_commit_interval = interval;
        options.copy_commit_burst = tidewater_bigquery::config::COPY_COMMIT_BURST;
    }
    options
}

/// What the configured sink adds to an error that stopped the pipeline (DuckDB: what to do
/// about a full file system or its memory limit).
pub fn explain_sink_error(sink: &SinkConfig, e: Error) -> Error {
    match sink {
        SinkConfig::BigQuery(_) => e,
        SinkConfig::DuckDb(c) => {
            let e = tidewater_duckdb::errors::with_disk_full_fix(e, &c.path);
            tidewater_duckdb::errors::with_memory_fix(e, &c.memory_limit)
        }
    }
}
