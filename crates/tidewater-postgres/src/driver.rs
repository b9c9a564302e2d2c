//! The PostgreSQL source driver: what the runtime asks of a PostgreSQL source besides the
//! stream ([`PgSource`]): preflight checks, row estimates for snapshot progress, and the
//! consistent reader `verify` compares with.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tidewater_core::check::CheckItem;
use tidewater_core::driver::{estimates_of, retain_selected, table_names, READ_CHUNK_ROWS};
use tidewater_core::{
    ConsistentReader, Position, Result, RowConsumer, SourceDriver, TableSchema, Value,
};
use tokio_postgres::Client;

use crate::catalog::{resolve_tables, SourceTable};
use crate::conn::{connect, pg_error};
use crate::read::{
    begin_read_snapshot, end_read_snapshot, position_reached, read_table, ReadOptions,
};
use crate::{PgSource, PgSourceConfig};

/// Row estimates from `pg_class.reltuples` (-1 for a table never vacuumed or analyzed).
const ESTIMATES: &str = "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint, \
     pg_relation_size(c.oid), format('%I.%I', n.nspname, c.relname) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')";
/// A table never vacuumed or analyzed has no estimate; up to this size it is counted instead.
const COUNT_BELOW_BYTES: i64 = 64 << 20;

pub struct PgDriver {
    pub config: PgSourceConfig,
}

impl SourceDriver for PgDriver {
    type Stream = PgSource;
    type Reader = PgReader;

    async fn connect(&self) -> Result<PgSource> {
        PgSource::connect(self.config.clone()).await
    }

    async fn check(&self, copy_readers: usize) -> Vec<CheckItem> {
        crate::check::run_checks(&self.config, copy_readers).await
    }

    async fn row_estimates(&self, tables: &[Arc<TableSchema>]) -> BTreeMap<String, u64> {
        let wanted = table_names(tables);
        estimates_of(tables, estimates(self.config.url.expose(), &wanted).await)
    }

    async fn reader(&self, only: &[String]) -> Result<PgReader> {
        let client = connect(self.config.url.expose()).await?;
        let mut tables = resolve_tables(&client, &self.config.tables).await?;
        retain_selected(&mut tables, only, |t| &t.schema.id);
        Ok(PgReader { client, tables })
    }
}

async fn estimates(url: &str, wanted: &HashSet<String>) -> Result<Vec<(String, i64)>> {
    let client = connect(url).await?;
    let rows = client
        .query(ESTIMATES, &[])
        .await
        .map_err(|e| pg_error(e, "reading row estimates"))?;
    let mut estimates = Vec::with_capacity(rows.len());
    for r in rows {
        let (name, mut n, bytes, quoted): (String, i64, i64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if n < 0 && bytes < COUNT_BELOW_BYTES && wanted.contains(&name) {
            let count = client
                .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
                .await
                .map_err(|e| pg_error(e, "counting rows"))?;
            n = count.get(0);
        }
        estimates.push((name, n));
    }
    Ok(estimates)
}

/// `verify`'s reader: a connection of its own, snapshots opened with
/// [`begin_read_snapshot`].
pub struct PgReader {
    client: Client,
    tables: Vec<SourceTable>,
}

impl ConsistentReader for PgReader {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.iter().map(|t| t.schema.clone()).collect()
    }

    async fn begin(&mut self) -> Result<Position> {
        begin_read_snapshot(&self.client).await
    }

    async fn end(&mut self) -> Result<()> {
        end_read_snapshot(&self.client).await
    }

    async fn read<C: RowConsumer>(
        &mut self,
        table: usize,
        keys: Option<&[Vec<Value>]>,
        out: &mut C,
    ) -> Result<u64> {
        let opts = ReadOptions {
            ordered: true,
            keys,
            chunk_rows: READ_CHUNK_ROWS,
        };
        read_table(&self.client, &self.tables[table].schema, &opts, out).await
    }

    fn reached(&self, applied: &Position, target: &Position) -> bool {
        position_reached(applied, target)
    }
}
