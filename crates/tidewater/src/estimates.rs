//! Row estimates of the source tables, for snapshot progress (bars with an ETA, percentages):
//! PostgreSQL `pg_class.reltuples` (unknown until the table was vacuumed or analyzed),
//! MySQL/MariaDB `information_schema.TABLES.TABLE_ROWS`. Best effort: an estimate that cannot
//! be read is left out, and progress shows rows and rate only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tidewater_core::{Result, TableSchema};
use tracing::debug;

use crate::config::Config;

const PG_ESTIMATES: &str = "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')";
const MY_ESTIMATES: &str =
    "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), CAST(TABLE_ROWS AS SIGNED) \
     FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_ROWS IS NOT NULL";

/// Estimates per replicated table ("schema.table"); tables without one are missing.
pub async fn fetch(config: &Config, tables: &[Arc<TableSchema>]) -> BTreeMap<String, u64> {
    let wanted: HashSet<String> = tables.iter().map(|t| t.id.to_string()).collect();
    let all = if config.source.kind == "mysql" {
        mysql(&config.source.url).await
    } else {
        postgres(&config.source.url).await
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

async fn postgres(url: &str) -> Result<Vec<(String, i64)>> {
    let client = tidewater_postgres::conn::connect(url).await?;
    let rows = client
        .query(PG_ESTIMATES, &[])
        .await
        .map_err(|e| tidewater_core::Error::source_retryable(e.to_string()))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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
