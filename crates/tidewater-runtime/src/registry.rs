//! The registry: the one place that maps the configured source and sink kinds to their
//! crates. The configured source, whichever kind it is, is one type for the pipeline to run
//! and one entry point for `check`; the configured sink is opened here with its options.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidewater_bigquery::{BigQueryOptions, BigQuerySink, Connection as BqConnection};
use tidewater_core::apply::BatchOptions;
use tidewater_core::check::CheckItem;
use tidewater_core::{
    ConsistentReader, Error, Position, Result, RowConsumer, Sink, Source, SourceContext,
    SourceDriver, TableSchema, Value,
};
use tidewater_duckdb::duckdb::Connection;
use tidewater_duckdb::{DuckDbOptions, DuckDbSink};
use tidewater_mysql::{MySqlDriver, MySqlReader, MySqlSource, MySqlSourceConfig, ZeroDates};
use tidewater_postgres::{PgDriver, PgReader, PgSource, PgSourceConfig};

use crate::config::PIPELINE_NAME;
use crate::config::{Config, DEFAULT_SERVER_ID};
use crate::monitor::Monitor;

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

fn is_mysql(config: &Config) -> bool {
    config.source.kind == "mysql"
}

/// `tidewater teardown` at the source: the objects dropped (or, without `drop`, that would
/// be); `None` when the source kind leaves nothing behind (a binlog reader).
pub async fn teardown_source(config: &Config, drop: bool) -> Result<Option<Vec<String>>> {
    if is_mysql(config) {
        return Ok(None);
    }
    let found = tidewater_postgres::teardown::teardown(&pg_config(config)?, drop).await?;
    Ok(Some(found.objects))
}

pub fn pg_config(config: &Config) -> Result<PgSourceConfig> {
    Ok(PgSourceConfig {
        url: config.source_url()?,
        tables: config.source.tables.clone(),
        slot: config.source.slot.clone(),
        publication: config.source.publication.clone(),
    })
}

pub fn mysql_config(config: &Config) -> Result<MySqlSourceConfig> {
    Ok(MySqlSourceConfig {
        url: config.source_url()?,
        tables: config.source.tables.clone(),
        server_id: config.source.server_id.unwrap_or(DEFAULT_SERVER_ID),
        zero_dates: match config.source.zero_dates.as_deref() {
            Some("error") => ZeroDates::Error,
            _ => ZeroDates::Null,
        },
    })
}

/// The driver of the configured source (nothing is connected yet). Fails when `source.url`
/// names an environment variable that is not set.
pub fn driver(config: &Config) -> Result<AnyDriver> {
    Ok(if is_mysql(config) {
        AnyDriver::MySql(MySqlDriver {
            config: mysql_config(config)?,
        })
    } else {
        AnyDriver::Postgres(PgDriver {
            config: pg_config(config)?,
        })
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

    async fn check(&self) -> Vec<CheckItem> {
        match self {
            AnyDriver::Postgres(d) => d.check().await,
            AnyDriver::MySql(d) => d.check().await,
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

pub fn sink_options(config: &Config) -> DuckDbOptions {
    DuckDbOptions {
        path: config.sink.path.clone(),
        log_tables: config.apply.log_tables,
        pipeline: PIPELINE_NAME.into(),
        source_type: config.source.kind.clone(),
        threads: config.sink.threads,
        primary_key: config.sink.primary_key,
    }
}

pub fn bigquery_options(config: &Config) -> BigQueryOptions {
    let s = &config.sink;
    BigQueryOptions {
        connection: BqConnection {
            project: s.project.clone().unwrap_or_default(),
            dataset: s.dataset.clone().unwrap_or_default(),
            location: s.location.clone(),
            credentials: s.credentials.clone(),
            endpoint: s.endpoint.clone(),
        },
        pipeline: PIPELINE_NAME.into(),
        source_type: config.source.kind.clone(),
    }
}

/// Opens the configured sink. DuckDB also gives the connection the monitor reads the
/// replica through (status, `/query`); BigQuery has none yet, and gives the monitor its
/// bytes processed instead.
pub async fn open_sink(
    config: &Config,
    monitor: &Monitor,
) -> Result<(Box<dyn Sink>, Option<Connection>)> {
    if config.sink.is_bigquery() {
        let sink = BigQuerySink::connect(bigquery_options(config)).await?;
        monitor.set_bigquery_cost(sink.cost());
        return Ok((Box::new(sink), None));
    }
    let opts = sink_options(config);
    let sink = tokio::task::spawn_blocking(move || DuckDbSink::open(opts))
        .await
        .map_err(|e| Error::sink(format!("opening the sink: {e}")))??;
    let reader = sink
        .connection()
        .try_clone()
        .map_err(|e| Error::sink(format!("opening a read connection: {e}")))?;
    Ok((Box::new(sink), Some(reader)))
}

/// How the apply loop batches for the configured sink: BigQuery merges at most every
/// `merge_interval_ms` (each MERGE is a DML job, and BigQuery limits those per table).
pub fn batch_options(config: &Config) -> BatchOptions {
    let mut options = BatchOptions {
        flush_interval: Duration::from_millis(config.apply.flush_interval_ms),
        max_batch_rows: config.apply.max_batch_rows,
        min_commit_interval: Duration::ZERO,
    };
    if config.sink.is_bigquery() {
        let merge = Duration::from_millis(config.sink.merge_interval_ms());
        options.flush_interval = merge;
        options.min_commit_interval = merge;
    }
    options
}

/// What the configured sink adds to an error that stopped the pipeline (DuckDB: what to do
/// about a full file system).
pub fn explain_sink_error(config: &Config, e: Error) -> Error {
    if config.sink.is_bigquery() {
        e
    } else {
        tidewater_duckdb::errors::with_disk_full_fix(e, &config.sink.path)
    }
}
