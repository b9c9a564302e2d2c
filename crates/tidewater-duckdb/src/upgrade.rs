//! Brings a file written by an earlier layout to the current one when the sink opens it, in
//! one DuckDB transaction (a crash part-way leaves the old layout, and the next start upgrades
//! again).
//!
//! The layout before transaction ordinals had no `_tidewater.pipeline.tx_ordinal`, no
//! `_metadata_tx` and no `_metadata_old_<key>` log columns, and stored PostgreSQL LSNs
//! unpadded. The upgrade adds the columns and numbers the transactions already logged: each
//! distinct `_metadata_position` across all logs is one source transaction (the old layout
//! cannot tell apart two transactions at one position, which then share an ordinal), ordered
//! by the source's own order of positions (`order::position_order_sql`). The stored ordinal
//! becomes the highest, so the transactions applied next continue the sequence. The old key
//! of key-changing updates logged before was never recorded: those rows keep NULL there.

use duckdb::Connection;
use tidewater_core::{Error, Result, TableSchema};
use tracing::info;

use crate::order::{padded_lsn_sql, position_order_sql};
use crate::sql::{duckdb_type, exec, in_transaction, log_table, old_key_columns, quote_ident};

const WHAT: &str = "upgrading the change logs to the current layout";

/// Upgrades the file if `_tidewater.pipeline` predates `tx_ordinal` (a new file's has it).
pub fn upgrade_layout(conn: &Connection) -> Result<()> {
    if has_column(conn, "_tidewater", "pipeline", "tx_ordinal")? {
        return Ok(());
    }
    let (logs, transactions) = in_transaction(conn, WHAT, || upgrade(conn))?;
    info!(
        logs,
        transactions,
        "upgraded the file to the current layout: the _log tables have _metadata_tx (the \
         transaction ordinal) and _metadata_old_<key> columns"
    );
    Ok(())
}

/// The upgrade inside the open transaction; returns (logs upgraded, transactions numbered).
fn upgrade(conn: &Connection) -> Result<(usize, i64)> {
    exec(
        conn,
        "ALTER TABLE _tidewater.pipeline ADD COLUMN tx_ordinal BIGINT",
        &WHAT,
    )?;
    let mut logs = Vec::new();
    for schema in stored_schemas(conn)? {
        let id = &schema.id;
        if !has_table(conn, &id.schema, &format!("{}_log", id.name))? {
            continue;
        }
        let log = log_table(id);
        let mut ddl = vec![format!(
            "ALTER TABLE {log} ADD COLUMN IF NOT EXISTS _metadata_tx BIGINT"
        )];
        for (name, k) in old_key_columns(&schema) {
            let ty = duckdb_type(&schema.columns[k].ty);
            ddl.push(format!(
                "ALTER TABLE {log} ADD COLUMN IF NOT EXISTS {} {ty}",
                quote_ident(&name)
            ));
        }
        for statement in ddl {
            exec(conn, &statement, &format_args!("{WHAT}: {id}"))?;
        }
        logs.push(log);
    }
    if logs.is_empty() {
        exec(conn, "UPDATE _tidewater.pipeline SET tx_ordinal = 0", &WHAT)?;
        return Ok((0, 0));
    }
    // One row per distinct position: its ordinal, and the text the log stores from now on.
    let positions: Vec<String> = logs
        .iter()
        .map(|l| format!("SELECT _metadata_position AS p, _metadata_timestamp AS ts FROM {l}"))
        .collect();
    let postgres = "(SELECT bool_or(source_type = 'postgres') FROM _tidewater.pipeline)";
    exec(
        conn,
        &format!(
            "CREATE OR REPLACE TEMP TABLE tidewater_upgrade_tx AS \
             SELECT p, row_number() OVER (ORDER BY k NULLS LAST, first_ts, p) AS ordinal, \
             CASE WHEN coalesce({postgres}, false) THEN {padded} ELSE p END AS stored \
             FROM (SELECT p, {key} AS k, min(ts) AS first_ts FROM ({union}) GROUP BY p)",
            padded = padded_lsn_sql("p"),
            key = position_order_sql("p"),
            union = positions.join(" UNION ALL "),
        ),
        &WHAT,
    )?;
    for log in &logs {
        exec(
            conn,
            &format!(
                "UPDATE {log} AS l SET _metadata_tx = m.ordinal, _metadata_position = m.stored \
                 FROM temp.tidewater_upgrade_tx m WHERE l._metadata_position = m.p"
            ),
            &format_args!("{WHAT}: {log}"),
        )?;
    }
    let transactions: i64 = conn
        .query_row(
            "SELECT coalesce(max(ordinal), 0) FROM temp.tidewater_upgrade_tx",
            [],
            |r| r.get(0),
        )
        .map_err(|e| Error::sink(format!("{WHAT}: {e}")))?;
    exec(
        conn,
        &format!(
            "UPDATE _tidewater.pipeline SET tx_ordinal = {transactions}; \
             DROP TABLE temp.tidewater_upgrade_tx"
        ),
        &WHAT,
    )?;
    Ok((logs.len(), transactions))
}

/// The schema recorded for every replicated table.
fn stored_schemas(conn: &Connection) -> Result<Vec<TableSchema>> {
    let err = |e: duckdb::Error| Error::sink(format!("{WHAT}: reading _tidewater.tables: {e}"));
    let mut stmt = conn
        .prepare("SELECT schema_json FROM _tidewater.tables ORDER BY schema_name, table_name")
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
        .map_err(err)?;
    rows.iter()
        .map(|json| {
            serde_json::from_str(json).map_err(|e| {
                Error::sink(format!(
                    "{WHAT}: _tidewater.tables holds an unreadable schema: {e}"
                ))
            })
        })
        .collect()
}

fn has_table(conn: &Connection, schema: &str, table: &str) -> Result<bool> {
    count(
        conn,
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() \
         AND table_schema = ? AND table_name = ?",
        &[schema, table],
    )
}

fn has_column(conn: &Connection, schema: &str, table: &str, column: &str) -> Result<bool> {
    count(
        conn,
        "SELECT count(*) FROM information_schema.columns WHERE table_catalog = current_database() \
         AND table_schema = ? AND table_name = ? AND column_name = ?",
        &[schema, table, column],
    )
}

fn count(conn: &Connection, sql: &str, params: &[&str]) -> Result<bool> {
    let n: i64 = conn
        .query_row(sql, duckdb::params_from_iter(params), |r| r.get(0))
        .map_err(|e| Error::sink(format!("{WHAT}: reading the catalog: {e}")))?;
    Ok(n > 0)
}
