//! The MySQL / MariaDB source driver: what the runtime asks of this source besides the stream
//! ([`MySqlSource`]): preflight checks, row estimates for snapshot progress, and the
//! consistent reader `verify` compares with.

use std::collections::BTreeMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidewater_core::check::CheckItem;
use tidewater_core::driver::{estimates_of, retain_selected, READ_CHUNK_ROWS};
use tidewater_core::{
    ConsistentReader, Position, Result, RowConsumer, SourceDriver, TableSchema, Value,
};

use crate::catalog::{resolve_tables, SourceTable};
use crate::conn::{connect, flavor, my_error, Flavor};
use crate::read::{read_table, ReadOptions};
use crate::{MySqlSource, MySqlSourceConfig, ZeroDates};

/// Row estimates from `information_schema.TABLES.TABLE_ROWS`.
const ESTIMATES: &str = "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), CAST(TABLE_ROWS AS SIGNED) \
     FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_ROWS IS NOT NULL";

pub struct MySqlDriver {
    pub config: MySqlSourceConfig,
}

impl SourceDriver for MySqlDriver {
    type Stream = MySqlSource;
    type Reader = MySqlReader;

    async fn connect(&self) -> Result<MySqlSource> {
        MySqlSource::connect(self.config.clone()).await
    }

    async fn check(&self, copy_readers: usize) -> Vec<CheckItem> {
        crate::check::run_checks(&self.config, copy_readers).await
    }

    async fn row_estimates(&self, tables: &[Arc<TableSchema>]) -> BTreeMap<String, u64> {
        estimates_of(tables, estimates(self.config.url.expose()).await)
    }

    async fn reader(&self, only: &[String]) -> Result<MySqlReader> {
        let mut conn = connect(self.config.url.expose()).await?;
        let flavor = flavor(&mut conn).await?;
        let mut tables = resolve_tables(&mut conn, &self.config.tables).await?;
        retain_selected(&mut tables, only, |t| &t.schema.id);
        Ok(MySqlReader {
            conn,
            flavor,
            tables,
            zero_dates: self.config.zero_dates,
        })
    }
}

async fn estimates(url: &str) -> Result<Vec<(String, i64)>> {
    let mut conn = connect(url).await?;
    let rows: Vec<(String, i64)> = conn
        .query(ESTIMATES)
        .await
        .map_err(|e| my_error(e, "reading row estimates"))?;
    let _ = conn.disconnect().await;
    Ok(rows)
}

/// `verify`'s reader: a connection of its own, snapshots opened like the initial snapshot's.
pub struct MySqlReader {
    conn: Conn,
    flavor: Flavor,
    tables: Vec<SourceTable>,
    zero_dates: ZeroDates,
}

impl ConsistentReader for MySqlReader {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.iter().map(|t| t.schema.clone()).collect()
    }

    async fn begin(&mut self) -> Result<Position> {
        let pos = crate::snapshot::begin_snapshot(&mut self.conn, self.flavor, None).await?;
        Ok(Position(pos.to_string()))
    }

    async fn end(&mut self) -> Result<()> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| my_error(e, "ending the snapshot"))
    }

    async fn read<C: RowConsumer>(
        &mut self,
        table: usize,
        keys: Option<&[Vec<Value>]>,
        out: &mut C,
    ) -> Result<u64> {
        let opts = ReadOptions {
            keys,
            chunk_rows: READ_CHUNK_ROWS,
            zero_dates: self.zero_dates,
        };
        read_table(&mut self.conn, &self.tables[table], &opts, out).await
    }

    fn reached(&self, applied: &Position, target: &Position) -> bool {
        crate::position::position_reached(applied, target)
    }
}
