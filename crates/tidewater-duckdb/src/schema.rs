//! Creating replica and log tables, and refusing to write into ones that no longer match.

use std::sync::Arc;

use duckdb::Connection;
use tidewater_core::{Error, Result, TableSchema};

use crate::sink::exec;
use crate::sql::{qualified, quote_ident};
use crate::state;
use crate::table::TableSql;

pub fn prepare_table(
    conn: &Connection,
    schema: Arc<TableSchema>,
    index: usize,
    log_tables: bool,
) -> Result<TableSql> {
    let id = &schema.id;
    let sql = TableSql::new(schema.clone(), index, log_tables);
    exec(
        conn,
        &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&id.schema)),
        id,
    )?;
    match state::read_table_schema(conn, &schema)? {
        Some(stored) if stored == *schema => {}
        Some(stored) => {
            return Err(Error::source_fatal(format!(
                "source table {id} changed since its replica was created: columns were ({}), \
                 now ({}). Applying schema changes is not supported yet; to re-snapshot, drop the \
                 replica, its _log table and the _tidewater state (or start from a new DuckDB file)",
                names(&stored),
                names(&schema)
            )))
        }
        None => {
            exec(conn, &sql.create_replica(), &format_args!("creating replica {id}"))?;
            if log_tables {
                exec(conn, &sql.create_log(), &format_args!("creating change log of {id}"))?;
            }
            state::write_table_schema(conn, &schema)?;
        }
    }
    let found = replica_columns(conn, &schema)?;
    let expected: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    if found != expected {
        return Err(Error::sink(format!(
            "replica {} does not have the columns tidewater created (expected ({}), found ({})): \
             it was changed by hand. Restore it, or drop it with its _log table and the \
             _tidewater state to take a new snapshot",
            qualified(id),
            expected.join(", "),
            found.join(", ")
        )));
    }
    exec(
        conn,
        &sql.create_stage,
        &format_args!("creating staging for {id}"),
    )?;
    Ok(sql)
}

fn names(schema: &TableSchema) -> String {
    let v: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    v.join(", ")
}

fn replica_columns(conn: &Connection, schema: &TableSchema) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = \
             current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )
        .map_err(|e| Error::sink(format!("reading columns of {}: {e}", schema.id)))?;
    let rows = stmt
        .query_map([&schema.id.schema, &schema.id.name], |r| {
            r.get::<_, String>(0)
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
        .map_err(|e| Error::sink(format!("reading columns of {}: {e}", schema.id)))?;
    Ok(rows)
}
