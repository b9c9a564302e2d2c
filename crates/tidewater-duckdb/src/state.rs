//! The `_tidewater` state schema: the committed source position and per-table facts,
//! written in the same DuckDB transaction as the data they describe.

use std::collections::BTreeSet;

use duckdb::{params, Connection, OptionalExt};
use tidewater_core::{CopyProgress, Error, PartialTx, Position, Result, TableId, TableSchema};

use crate::sql::run_cached_with;

pub const STATE_DDL: &str = "
CREATE SCHEMA IF NOT EXISTS _tidewater;
CREATE TABLE IF NOT EXISTS _tidewater.pipeline (
    name VARCHAR PRIMARY KEY,
    source_type VARCHAR,
    position VARCHAR,
    last_source_commit TIMESTAMPTZ,
    last_apply TIMESTAMPTZ,
    transactions_applied BIGINT,
    changes_applied BIGINT,
    -- The ordinal of the last applied source transaction (`_metadata_tx` in the logs).
    tx_ordinal BIGINT
);
CREATE TABLE IF NOT EXISTS _tidewater.tables (
    schema_name VARCHAR,
    table_name VARCHAR,
    schema_json VARCHAR,
    schema_version INTEGER,
    changes_applied BIGINT,
    updated_at TIMESTAMPTZ,
    PRIMARY KEY (schema_name, table_name)
);
-- The chunked initial snapshot: each table's copy progress, committed with its chunks.
CREATE TABLE IF NOT EXISTS _tidewater.copies (
    schema_name VARCHAR,
    table_name VARCHAR,
    last_key VARCHAR,
    rows_copied BIGINT,
    chunks BIGINT,
    done BOOLEAN,
    horizon VARCHAR,
    consistent BOOLEAN,
    updated_at TIMESTAMPTZ,
    PRIMARY KEY (schema_name, table_name)
);
";

/// Columns added to the state tables after their first layout (files written before them
/// get them when opened):
/// - `[apply] large_transaction = "split"` (`tidewater_core::split`): the transaction after
///   `position` whose first changes the file holds, written with every commit (NULL when none);
/// - `tables.log_complete`: whether the table's `_log` holds every change applied to its
///   replica (`crate::log_restart`; NULL: not known, a file from before the column).
pub const ADDED_COLUMNS_DDL: &str = "
ALTER TABLE _tidewater.pipeline ADD COLUMN IF NOT EXISTS partial_position VARCHAR;
ALTER TABLE _tidewater.pipeline ADD COLUMN IF NOT EXISTS partial_changes BIGINT;
ALTER TABLE _tidewater.pipeline ADD COLUMN IF NOT EXISTS partial_fingerprint BIGINT;
ALTER TABLE _tidewater.pipeline ADD COLUMN IF NOT EXISTS partial_tx BIGINT;
ALTER TABLE _tidewater.tables ADD COLUMN IF NOT EXISTS log_complete BOOLEAN;
ALTER TABLE _tidewater.tables ADD COLUMN IF NOT EXISTS layout VARCHAR;
";

/// The partially applied transaction, if the last commit ended inside one, with its ordinal
/// (`_metadata_tx`: its rest continues it).
pub fn read_partial(conn: &Connection, pipeline: &str) -> Result<Option<(PartialTx, i64)>> {
    type Row = (Option<String>, Option<i64>, Option<i64>, Option<i64>);
    let row: Option<Row> = conn
        .query_row(
            "SELECT partial_position, partial_changes, partial_fingerprint, partial_tx \
             FROM _tidewater.pipeline WHERE name = ?",
            [pipeline],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(|e| Error::sink(format!("reading _tidewater.pipeline: {e}")))?;
    Ok(match row {
        Some((Some(position), Some(changes), Some(fingerprint), Some(ordinal))) => Some((
            PartialTx {
                position: Position(position),
                changes,
                // Stored as BIGINT: the same 64 bits.
                fingerprint: fingerprint as u64,
            },
            ordinal,
        )),
        _ => None,
    })
}

/// The copy progress of every table (`tidewater_core::copy`).
pub fn read_copies(conn: &Connection) -> Result<Vec<CopyProgress>> {
    let what = |e: duckdb::Error| Error::sink(format!("reading _tidewater.copies: {e}"));
    let mut stmt = conn
        .prepare(
            "SELECT schema_name, table_name, last_key, rows_copied, chunks, done, horizon, \
             consistent FROM _tidewater.copies ORDER BY schema_name, table_name",
        )
        .map_err(what)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                TableId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, bool>(7)?,
            ))
        })
        .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(what)?;
    rows.into_iter()
        .map(|(table, key, rows, chunks, done, horizon, consistent)| {
            let last_key = key
                .map(|k| serde_json::from_str(&k))
                .transpose()
                .map_err(|e| {
                    Error::sink(format!("_tidewater.copies holds an unreadable key: {e}"))
                })?;
            Ok(CopyProgress {
                table,
                last_key,
                rows: rows as u64,
                chunks: chunks as u64,
                done,
                horizon,
                consistent,
            })
        })
        .collect()
}

/// Stores copy progress (inside the batch that holds the chunk it describes).
pub fn write_copies(conn: &Connection, progress: &[CopyProgress]) -> Result<()> {
    for p in progress {
        let key = p
            .last_key
            .as_ref()
            .map(|k| serde_json::to_string(k).expect("key serialises"));
        conn.prepare_cached(
            "INSERT OR REPLACE INTO _tidewater.copies VALUES (?, ?, ?, ?, ?, ?, ?, ?, \
             get_current_timestamp())",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                p.table.schema,
                p.table.name,
                key,
                p.rows as i64,
                p.chunks as i64,
                p.done,
                p.horizon,
                p.consistent
            ])
        })
        .map_err(|e| Error::sink(format!("writing _tidewater.copies: {e}")))?;
    }
    Ok(())
}

pub fn read_position(conn: &Connection, pipeline: &str) -> Result<Option<Position>> {
    let pos: Option<Option<String>> = conn
        .query_row(
            "SELECT position FROM _tidewater.pipeline WHERE name = ?",
            [pipeline],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| Error::sink(format!("reading _tidewater.pipeline: {e}")))?;
    Ok(pos.flatten().map(Position))
}

/// The ordinal of the last applied source transaction (0 before the first).
pub fn read_tx_ordinal(conn: &Connection, pipeline: &str) -> Result<i64> {
    let ordinal: Option<Option<i64>> = conn
        .query_row(
            "SELECT tx_ordinal FROM _tidewater.pipeline WHERE name = ?",
            [pipeline],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| Error::sink(format!("reading _tidewater.pipeline: {e}")))?;
    Ok(ordinal.flatten().unwrap_or(0))
}

/// What a committing batch records in `_tidewater.pipeline`.
pub struct Committed<'a> {
    pub position: &'a Position,
    /// The acknowledged position: `position` itself, or an idle point after it.
    pub acked: &'a Position,
    /// The ordinal of the batch's last source transaction.
    pub tx_ordinal: i64,
    pub last_source_commit: &'a str,
    /// Transactions and changes in the batch (added to the totals).
    pub transactions: u64,
    pub changes: u64,
    /// The batch ends inside this transaction (`large_transaction = "split"`), with its
    /// ordinal.
    pub partial: Option<&'a (PartialTx, i64)>,
}

/// Records a committing batch in `_tidewater.pipeline`: an `UPDATE` of the pipeline's row,
/// which exists after its first commit, else the row inserted. (DuckDB ran the former
/// `INSERT … ON CONFLICT DO UPDATE` on this one-row table in about twice the time of the
/// `UPDATE`, once per batch: docs/performance.md, "Where the time goes now".)
pub fn write_position(
    conn: &Connection,
    pipeline: &str,
    source_type: &str,
    c: &Committed,
) -> Result<()> {
    let err = |e: duckdb::Error| Error::sink(format!("writing _tidewater.pipeline: {e}"));
    let partial_position = c.partial.map(|(p, _)| p.position.0.as_str());
    let partial_changes = c.partial.map(|(p, _)| p.changes);
    let partial_fingerprint = c.partial.map(|(p, _)| p.fingerprint as i64);
    let partial_tx = c.partial.map(|(_, ordinal)| *ordinal);
    let updated = run_cached_with(
        conn,
        "UPDATE _tidewater.pipeline SET acked_position = ?, partial_position = ?, \
             partial_changes = ?, partial_fingerprint = ?, partial_tx = ?, position = ?, \
             last_source_commit = CAST(? AS TIMESTAMPTZ), last_apply = get_current_timestamp(), \
             tx_ordinal = ?, transactions_applied = transactions_applied + ?, \
             changes_applied = changes_applied + ? WHERE name = ?",
        params![
            c.acked.0,
            partial_position,
            partial_changes,
            partial_fingerprint,
            partial_tx,
            c.position.0,
            c.last_source_commit,
            c.tx_ordinal,
            c.transactions as i64,
            c.changes as i64,
            pipeline
        ],
        &"writing _tidewater.pipeline",
    )?;
    if updated > 0 {
        return Ok(());
    }
    // The first commit (the sink is the file's only writer: no other can insert it meanwhile).
    conn.prepare_cached(
        "INSERT INTO _tidewater.pipeline (name, source_type, position, last_source_commit, \
         last_apply, transactions_applied, changes_applied, tx_ordinal, acked_position, \
         partial_position, partial_changes, partial_fingerprint, partial_tx) \
         VALUES (?, ?, ?, CAST(? AS TIMESTAMPTZ), get_current_timestamp(), ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            pipeline,
            source_type,
            c.position.0,
            c.last_source_commit,
            c.transactions as i64,
            c.changes as i64,
            c.tx_ordinal,
            c.acked.0,
            partial_position,
            partial_changes,
            partial_fingerprint,
            partial_tx
        ])
    })
    .map_err(err)?;
    Ok(())
}

/// The tables whose replicas exist (recorded when each was created, in the transaction that
/// filled it).
pub fn replicated_tables(conn: &Connection) -> Result<BTreeSet<TableId>> {
    let mut stmt = conn
        .prepare("SELECT schema_name, table_name FROM _tidewater.tables")
        .map_err(|e| Error::sink(format!("reading _tidewater.tables: {e}")))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TableId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .and_then(|rows| rows.collect::<std::result::Result<BTreeSet<_>, _>>())
        .map_err(|e| Error::sink(format!("reading _tidewater.tables: {e}")))?;
    Ok(rows)
}

/// The schema recorded for a table when its replica was created, if any.
pub fn read_table_schema(conn: &Connection, schema: &TableSchema) -> Result<Option<TableSchema>> {
    let json: Option<String> = conn
        .query_row(
            "SELECT schema_json FROM _tidewater.tables WHERE schema_name = ? AND table_name = ?",
            [&schema.id.schema, &schema.id.name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| Error::sink(format!("reading _tidewater.tables: {e}")))?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| Error::sink(format!("_tidewater.tables holds an unreadable schema: {e}")))
    })
    .transpose()
}

pub fn write_table_schema(conn: &Connection, schema: &TableSchema) -> Result<()> {
    let json = serde_json::to_string(schema).expect("schema serialises");
    conn.execute(
        "INSERT INTO _tidewater.tables AS t (schema_name, table_name, schema_json, \
         schema_version, changes_applied, updated_at) \
         VALUES (?, ?, ?, 1, 0, get_current_timestamp()) ON CONFLICT (schema_name, table_name) DO UPDATE SET schema_json = excluded.schema_json, \
         schema_version = t.schema_version + 1, updated_at = excluded.updated_at",
        params![schema.id.schema, schema.id.name, json],
    )
    .map_err(|e| Error::sink(format!("writing _tidewater.tables: {e}")))?;
    Ok(())
}

/// Adds the batch's change counts of every touched table in one statement. Its text
/// depends only on how many tables the batch touched (the names and counts are parameters),
/// so a stream that keeps touching as many tables runs one cached plan instead of parsing
/// and planning a new statement every batch.
pub fn add_table_changes(conn: &Connection, counts: &[(&TableId, u64)]) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?::VARCHAR, ?::VARCHAR, ?::BIGINT)"; counts.len()];
    let sql = format!(
        "UPDATE _tidewater.tables AS t SET changes_applied = t.changes_applied + v.n, \
         updated_at = get_current_timestamp() FROM (VALUES {}) v(s, name, n) \
         WHERE t.schema_name = v.s AND t.table_name = v.name",
        rows.join(", ")
    );
    let mut values: Vec<duckdb::types::Value> = Vec::with_capacity(counts.len() * 3);
    for (id, n) in counts {
        values.push(id.schema.clone().into());
        values.push(id.name.clone().into());
        values.push((*n as i64).into());
    }
    let params = duckdb::params_from_iter(values);
    run_cached_with(conn, &sql, params, &"writing _tidewater.tables").map(drop)
}
