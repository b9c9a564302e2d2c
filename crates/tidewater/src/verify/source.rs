//! The source side of `verify`: the configured source's tables, read at consistent snapshots
//! of verify's own through the readers the initial snapshot uses.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use tidewater_core::glob::selected;
use tidewater_core::{Error, Position, Result, RowConsumer, TableSchema, Value};
use tidewater_mysql::conn::Flavor;
use tidewater_mysql::ZeroDates;

use crate::config::Config;
use crate::sources::mysql_config;

/// Source rows per chunk handed to the comparison.
const READ_CHUNK: usize = 8192;

pub enum VerifySource {
    Postgres {
        client: tidewater_postgres::tokio_postgres::Client,
        tables: Vec<tidewater_postgres::catalog::SourceTable>,
    },
    MySql {
        conn: mysql_async::Conn,
        flavor: Flavor,
        tables: Vec<tidewater_mysql::catalog::SourceTable>,
        zero: ZeroDates,
    },
}

impl VerifySource {
    /// Connects and resolves the replicated tables, narrowed to `only` (globs) if not empty.
    pub async fn connect(config: &Config, only: &[String]) -> Result<VerifySource> {
        let keep = |id: &tidewater_core::TableId| only.is_empty() || selected(only, id);
        let source = if config.source.kind == "mysql" {
            let mut conn = tidewater_mysql::conn::connect(&config.source.url).await?;
            let flavor = tidewater_mysql::conn::flavor(&mut conn).await?;
            let mut tables =
                tidewater_mysql::catalog::resolve_tables(&mut conn, &config.source.tables).await?;
            tables.retain(|t| keep(&t.schema.id));
            VerifySource::MySql {
                conn,
                flavor,
                tables,
                zero: mysql_config(config).zero_dates,
            }
        } else {
            let client = tidewater_postgres::conn::connect(&config.source.url).await?;
            let mut tables =
                tidewater_postgres::catalog::resolve_tables(&client, &config.source.tables).await?;
            tables.retain(|t| keep(&t.schema.id));
            VerifySource::Postgres { client, tables }
        };
        if source.tables().is_empty() {
            return Err(Error::config(format!(
                "no replicated table matches --tables {only:?} (source.tables = {:?})",
                config.source.tables
            )));
        }
        Ok(source)
    }

    pub fn tables(&self) -> Vec<Arc<TableSchema>> {
        match self {
            VerifySource::Postgres { tables, .. } => {
                tables.iter().map(|t| t.schema.clone()).collect()
            }
            VerifySource::MySql { tables, .. } => tables.iter().map(|t| t.schema.clone()).collect(),
        }
    }

    /// Opens a consistent snapshot; returns its position.
    pub async fn begin(&mut self) -> Result<Position> {
        match self {
            VerifySource::Postgres { client, .. } => {
                tidewater_postgres::read::begin_read_snapshot(client).await
            }
            VerifySource::MySql { conn, flavor, .. } => {
                let pos = tidewater_mysql::snapshot::begin_snapshot(conn, *flavor).await?;
                Ok(Position(pos.to_string()))
            }
        }
    }

    pub async fn end(&mut self) -> Result<()> {
        match self {
            VerifySource::Postgres { client, .. } => {
                tidewater_postgres::read::end_read_snapshot(client).await
            }
            VerifySource::MySql { conn, .. } => conn
                .query_drop("COMMIT")
                .await
                .map_err(|e| tidewater_mysql::conn::my_error(e, "ending the snapshot")),
        }
    }

    /// Streams table `i` (or only the rows of `keys`) in key order at the open snapshot.
    pub async fn read(
        &mut self,
        i: usize,
        keys: Option<&[Vec<Value>]>,
        out: &mut impl RowConsumer,
    ) -> Result<u64> {
        match self {
            VerifySource::Postgres { client, tables } => {
                let opts = tidewater_postgres::read::ReadOptions {
                    ordered: true,
                    keys,
                    chunk_rows: READ_CHUNK,
                };
                tidewater_postgres::read::read_table(client, &tables[i].schema, &opts, out).await
            }
            VerifySource::MySql {
                conn, tables, zero, ..
            } => {
                let opts = tidewater_mysql::read::ReadOptions {
                    keys,
                    chunk_rows: READ_CHUNK,
                    zero_dates: *zero,
                };
                tidewater_mysql::read::read_table(conn, &tables[i], &opts, out).await
            }
        }
    }

    /// Whether a replica applied up to `applied` holds everything up to `target`.
    pub fn reached(&self, applied: &Position, target: &Position) -> bool {
        match self {
            VerifySource::Postgres { .. } => {
                tidewater_postgres::read::position_reached(applied, target)
            }
            VerifySource::MySql { .. } => {
                tidewater_mysql::position::position_reached(applied, target)
            }
        }
    }
}
