//! `[apply] log_tables` turned off, then on again. While it is off no change reaches a
//! table's `_log`, so once it is back on the log would silently miss them: the last `_log`
//! entry of a key changed meanwhile would no longer be its replica row, and a key deleted
//! meanwhile would still look live. Readers replaying the log, and `verify`'s live as-of
//! re-check (`compare/as_of.rs`), rely on the opposite.
//!
//! So each table records whether its `_log` holds every change applied to its replica
//! (`_tidewater.tables.log_complete`, set false whenever the sink prepares the table with
//! `log_tables = false`). When the sink prepares a table with `log_tables = true` whose log is
//! not complete, or has no `_log` at all (a table first replicated without one), its log
//! restarts: a `TRUNCATE` row, then every row of the replica as a `SNAPSHOT` row, as one
//! transaction of its own (the next `_metadata_tx` ordinal) at the committed source position,
//! written in the same DuckDB transaction that prepares the tables and records the ordinal.
//! That is the shape a re-copy leaves in the log (a `TRUNCATE` row, then the copied rows), and
//! from it on every key's last entry is its replica row again, whatever happened before.
//!
//! Correctness: the rows come from the replica as committed, which equals the source at the
//! committed position (a table being copied again: its copy table, which its later log rows
//! describe, `sink/recopy.rs`), and no batch is open while the sink prepares. A crash before
//! the commit leaves the flag false and the ordinal unused: the next start does it again.
//!
//! Limits: a table prepared in the middle of a batch (one the replica holds that appears at
//! the source again while running) cannot take an ordinal of its own there; its log restarts
//! at the next start, and a warning says so. A split transaction partly applied
//! (`large_transaction = "split"`) holds the next ordinal, so turning the log on then is
//! refused until it is applied.

use duckdb::{params, Connection, OptionalExt};
use tidewater_core::{Error, Position, Result};
use tracing::{info, warn};

use crate::catalog::Catalog;
use crate::order::log_position;
use crate::rowwise::meta_columns;
use crate::sql::{
    duckdb_type, exec, log_id, log_table, old_key_columns, qualified, quote_ident, table_columns,
};
use crate::state;
use crate::table::{column_list, TableSql};

/// Records whether `sql`'s table is logged from now on, and says whether its log must restart
/// first (see the module doc). Creates a missing `_log` when `log_tables` is on.
pub fn needs_restart(
    conn: &Connection,
    catalog: &mut Catalog,
    sql: &TableSql,
    log_tables: bool,
) -> Result<bool> {
    let id = &sql.schema.id;
    if !log_tables {
        set_complete(conn, sql, false)?;
        return Ok(false);
    }
    let complete: Option<bool> = conn
        .query_row(
            "SELECT log_complete FROM _tidewater.tables WHERE schema_name = ? AND table_name = ?",
            [&id.schema, &id.name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| Error::sink(format!("reading _tidewater.tables: {e}")))?
        .flatten();
    let exists = catalog.exists(&log_id(id));
    if !exists {
        exec(
            conn,
            &sql.create_log(),
            &format_args!("creating change log of {id}"),
        )?;
        catalog.reread(conn, &log_id(id))?;
    }
    // NULL: a file from before the flag, whose log is taken as complete if it exists.
    if exists && complete != Some(false) {
        if complete.is_none() {
            set_complete(conn, sql, true)?;
        }
        return Ok(false);
    }
    Ok(true)
}

/// [`needs_restart`] for a table prepared inside a batch, where its log cannot restart: the
/// next start restarts it.
pub fn defer(
    conn: &Connection,
    catalog: &mut Catalog,
    sql: &TableSql,
    log_tables: bool,
) -> Result<()> {
    if needs_restart(conn, catalog, sql, log_tables)? {
        warn!(
            table = %sql.schema.id,
            "this table's _log missed the changes applied while apply.log_tables was false; it \
             restarts (a TRUNCATE row, then the replica's rows) when tidewater next starts"
        );
    }
    Ok(())
}

/// Restarts the logs of `tables` (inside the open transaction that prepares them) as one
/// transaction of the next ordinal at the committed position; returns that ordinal, or
/// `None` before the first commit (the replicas are empty, so are their logs: nothing to do).
/// `partial`: a split transaction is partly applied.
pub fn restart(
    conn: &Connection,
    tables: &[&TableSql],
    partial: bool,
    pipeline: &str,
    source_type: &str,
) -> Result<Option<i64>> {
    let Some(position) = state::read_position(conn, pipeline)? else {
        for sql in tables {
            set_complete(conn, sql, true)?;
        }
        return Ok(None);
    };
    if partial {
        return Err(Error::sink(
            "apply.log_tables is on again while a large transaction is partly applied \
             (apply.large_transaction = \"split\"): its rest holds the next log ordinal",
        )
        .with_fix(
            "start with apply.log_tables = false until `tidewater status` shows no partly \
             applied transaction, then turn it on",
        ));
    }
    let ordinal = state::read_tx_ordinal(conn, pipeline)? + 1;
    let mut sequence = 0i64;
    for sql in tables {
        let rows = restart_table(
            conn,
            sql,
            &position,
            source_type,
            pipeline,
            ordinal,
            sequence,
        )?;
        sequence += 1 + rows as i64;
        set_complete(conn, sql, true)?;
        info!(
            table = %sql.schema.id,
            rows,
            tx = ordinal,
            "the _log missed changes applied while apply.log_tables was false: restarted it \
             with a TRUNCATE row and the replica's rows as SNAPSHOT rows"
        );
    }
    conn.execute(
        "UPDATE _tidewater.pipeline SET tx_ordinal = ? WHERE name = ?",
        params![ordinal, pipeline],
    )
    .map_err(|e| Error::sink(format!("writing _tidewater.pipeline: {e}")))?;
    Ok(Some(ordinal))
}

/// Writes one table's `TRUNCATE` row (sequence `first`) and its replica's rows as `SNAPSHOT`
/// rows after it; returns how many rows.
fn restart_table(
    conn: &Connection,
    sql: &TableSql,
    position: &Position,
    source_type: &str,
    pipeline: &str,
    ordinal: i64,
    first: i64,
) -> Result<usize> {
    let s = &sql.schema;
    let log = log_table(&s.id);
    let meta = meta_columns();
    let at = log_position(source_type, position);
    let err = |e: duckdb::Error| Error::sink(format!("restarting the change log of {}: {e}", s.id));
    // Columns added to the replica while the log was not written (its old-key columns
    // included) are added to the log; a type changed meanwhile is cast on insert.
    let have = table_columns(conn, &log_id(&s.id))?;
    let wanted = s.columns.iter().map(|c| (c.name.clone(), &c.ty)).chain(
        old_key_columns(s)
            .into_iter()
            .map(|(name, k)| (name, &s.columns[k].ty)),
    );
    for (name, ty) in wanted.filter(|(name, _)| !have.contains(name)) {
        exec(
            conn,
            &format!(
                "ALTER TABLE {log} ADD COLUMN {} {}",
                quote_ident(&name),
                duckdb_type(ty)
            ),
            &format_args!("restarting the change log of {}", s.id),
        )?;
    }
    // The source timestamp of the state the rows show: the last applied commit.
    let committed = "(SELECT last_source_commit FROM _tidewater.pipeline WHERE name = ?)";
    conn.execute(
        &format!(
            "INSERT INTO {log} ({meta}) SELECT 'TRUNCATE', true, {committed}, \
             get_current_timestamp(), ?, {first}, {ordinal}"
        ),
        params![pipeline, at],
    )
    .map_err(err)?;
    // In the replica's scan order: `row_number() OVER ()` streams (DuckDB's streaming
    // window), where ordering by the key would sort the whole table in memory.
    let columns = column_list(s);
    conn.execute(
        &format!(
            "INSERT INTO {log} ({columns}, {meta}) SELECT {columns}, 'SNAPSHOT', false, \
             {committed}, get_current_timestamp(), ?, {first} + row_number() OVER (), \
             {ordinal} FROM {}",
            qualified(&sql.replica)
        ),
        params![pipeline, at],
    )
    .map_err(err)
}

fn set_complete(conn: &Connection, sql: &TableSql, complete: bool) -> Result<()> {
    let id = &sql.schema.id;
    conn.execute(
        "UPDATE _tidewater.tables SET log_complete = ? WHERE schema_name = ? AND table_name = ? \
         AND log_complete IS DISTINCT FROM ?",
        params![complete, id.schema, id.name, complete],
    )
    .map_err(|e| Error::sink(format!("writing _tidewater.tables: {e}")))?;
    Ok(())
}
