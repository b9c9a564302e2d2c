//! `tidewater forget` on a DuckDB file: the file stops holding tables. Their rows in
//! `_tidewater.tables` (which makes them held: a run refuses a `source.tables` that leaves a
//! held table out, because its changes would be missed from then on) and `_tidewater.copies`
//! go, in one transaction, and with `drop_tables` their replica, change log and copy tables
//! too. A table selected again later is then a new table to the run: it joins with a copy.

use duckdb::{params, Connection};
use tidewater_core::{Error, Result, TableId};
use tracing::info;

use crate::sql::{copy_table, exec, in_transaction, log_table, qualified};

/// Forgets `tables` (see the module doc); the caller makes sure no run writes the file.
pub fn forget(conn: &Connection, tables: &[TableId], drop_tables: bool) -> Result<()> {
    in_transaction(conn, "forgetting tables", || {
        tables
            .iter()
            .try_for_each(|id| forget_one(conn, id, drop_tables))
    })
}

fn forget_one(conn: &Connection, id: &TableId, drop_tables: bool) -> Result<()> {
    for state in ["_tidewater.tables", "_tidewater.copies"] {
        conn.execute(
            &format!("DELETE FROM {state} WHERE schema_name = ? AND table_name = ?"),
            params![id.schema, id.name],
        )
        .map_err(|e| Error::sink(format!("forgetting {id} in {state}: {e}")))?;
    }
    if drop_tables {
        for table in [qualified(id), log_table(id), qualified(&copy_table(id))] {
            exec(
                conn,
                &format!("DROP TABLE IF EXISTS {table}"),
                &format_args!("dropping {table}"),
            )?;
        }
    }
    info!(table = %id, dropped = drop_tables, "forgot a replicated table");
    Ok(())
}
