//! Row estimates of the source tables, for snapshot progress (bars with an ETA, percentages):
//! PostgreSQL `pg_class.reltuples` (a table never vacuumed or analyzed is counted when small),
//! MySQL/MariaDB `information_schema.TABLES.TABLE_ROWS`. Best effort: an estimate that cannot
//! be read is left out, and progress shows rows and rate only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tidewater_core::{Result, TableSchema};
use tracing::debug;

use crate::config::Config;

const PG_ESTIMATES: &str = "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint, \
     pg_relation_size(c.oid), format('%I.%I', n.nspname, c.relname) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')";
/// A table never vacuumed or analyzed has no estimate; up to this size it is counted instead.
const PG_COUNT_BELOW_BYTES: i64 = 64 << 20;
const MY_ESTIMATES: &str =
    "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), CAST(TABLE_ROWS AS SIGNED) \
     FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_ROWS IS NOT NULL";

/// Estimates per replicated table ("schema.table"); tables without one are missing.
pub async fn fetch(config: &Config, tables: &[Arc<TableSchema>]) -> BTreeMap<String, u64> {
    let wanted: HashSet<String> = tables.iter().map(|t| t.id.to_string()).collect();
    let all = if config.source.kind == "mysql" {
        mysql(&config.source.url).await
    } else {
        postgres(&config.source.url, &wanted).await
    };
    match all {
        Ok(all) => all
            .into_iter()
            .filter(|(t, n)| *n > 0 && wanted.contains(t))
            .map(|(t, n)| (t, n as u64))
            .collect(),
        Err(e) => {
            debug!("reading row estimates: {e}");
            BTreeMap::new()
        }
    }
}

async fn postgres(url: &str, wanted: &HashSet<String>) -> Result<Vec<(String, i64)>> {
    let client = tidewater_postgres::conn::connect(url).await?;
    let err = |e: tidewater_postgres::tokio_postgres::Error| {
        tidewater_core::Error::source_retryable(e.to_string())
    };
    let rows = client.query(PG_ESTIMATES, &[]).await.map_err(err)?;
    let mut estimates = Vec::with_capacity(rows.len());
    for r in rows {
        let (name, mut n, bytes, quoted): (String, i64, i64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if n < 0 && bytes < PG_COUNT_BELOW_BYTES && wanted.contains(&name) {
            let count = client
                .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
                .await
                .map_err(err)?;
            n = count.get(0);
        }
        estimates.push((name, n));
    }
    Ok(estimates)
}

async fn mysql(url: &str) -> Result<Vec<(String, i64)>> {
    use mysql_async::prelude::Queryable;
    let mut conn = tidewater_mysql::conn::connect(url).await?;
    let rows: Vec<(String, i64)> = conn
        .query(MY_ESTIMATES)
        .await
        .map_err(|e| tidewater_core::Error::source_retryable(e.to_string()))?;
    let _ = conn.disconnect().await;
    Ok(rows)
}
