//! The replica file's tables and their columns, listed once for `prepare`.
//!
//! Why: DuckDB answers a question about one table's columns (`information_schema.columns`,
//! `duckdb_columns()`, `duckdb_tables()` filtered by name) by listing every column of every
//! table and then filtering. Preparing asked three or four such questions per table (its copy
//! table, its replica, its `_log`), so start-up grew with the square of the table count:
//! ~3.5 ms a question with 100 tables (1.3 s of a 2.9 s drain in `tidewater-bench scaling
//! --tables 100`), ~17 ms with 1,000 (over a minute at every start and retry). One listing
//! answers them all (~26 ms for 1,000 tables); a table created or altered meanwhile is read
//! again by name (`DESCRIBE`, which looks up that one table).
//!
//! **Why the listing stays true.** It is read inside the transaction that prepares the tables
//! (`sink.rs`: `prepare`, and a table joining in a batch), so only that transaction's own
//! statements change the catalog meanwhile. Each table `prepare_table` and `needs_restart`
//! create is read again ([`Catalog::reread`]) before anything asks about it; the columns
//! `log_restart::restart` adds to a log afterwards are read by that function itself, and the
//! listing is not asked about that log again.

use std::collections::HashMap;

use duckdb::Connection;
use tidewater_core::{Error, Result, TableId};

use crate::sql::qualified;

/// Column names in table order, by table.
pub(crate) struct Catalog {
    columns: HashMap<TableId, Vec<String>>,
}

impl Catalog {
    /// Every table of the file (not temporary ones) with its columns, in one query.
    pub fn read(conn: &Connection) -> Result<Catalog> {
        let err = |e: duckdb::Error| Error::sink(format!("listing the replica's tables: {e}"));
        let mut stmt = conn
            .prepare(
                "SELECT schema_name, table_name, column_name FROM duckdb_columns() \
                 WHERE database_name = current_database() \
                 ORDER BY schema_name, table_name, column_index",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(err)?;
        let mut columns: HashMap<TableId, Vec<String>> = HashMap::new();
        for row in rows {
            let (schema, table, column) = row.map_err(err)?;
            columns
                .entry(TableId::new(schema, table))
                .or_default()
                .push(column);
        }
        Ok(Catalog { columns })
    }

    /// The columns of `table` in order; empty when it does not exist.
    pub fn columns(&self, table: &TableId) -> &[String] {
        self.columns.get(table).map_or(&[], Vec::as_slice)
    }

    /// Whether `table` exists (every table has a column).
    pub fn exists(&self, table: &TableId) -> bool {
        !self.columns(table).is_empty()
    }

    /// Reads `table` again, after this transaction created or altered it (it exists).
    pub fn reread(&mut self, conn: &Connection, table: &TableId) -> Result<()> {
        let err = |e: duckdb::Error| Error::sink(format!("reading the columns of {table}: {e}"));
        let mut stmt = conn
            .prepare(&format!("DESCRIBE {}", qualified(table)))
            .map_err(err)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
            .map_err(err)?;
        self.columns.insert(table.clone(), names);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_table_once_and_rereads_what_changed() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE SCHEMA \"we.ird\"; CREATE TABLE \"we.ird\".\"t\"\"x\" (b INT, \"a c\" INT); \
             CREATE TABLE main.u (z INT); CREATE TEMP TABLE tmp (q INT);",
        )
        .unwrap();
        let weird = TableId::new("we.ird", "t\"x");
        let mut catalog = Catalog::read(&conn).unwrap();
        assert_eq!(catalog.columns(&weird), ["b", "a c"], "in table order");
        assert_eq!(catalog.columns(&TableId::new("main", "u")), ["z"]);
        assert!(
            !catalog.exists(&TableId::new("temp", "tmp")),
            "temporary tables are not listed"
        );
        assert!(!catalog.exists(&TableId::new("main", "nope")));

        conn.execute_batch(
            "BEGIN; ALTER TABLE \"we.ird\".\"t\"\"x\" ADD COLUMN d INT; CREATE TABLE main.v (y INT);",
        )
        .unwrap();
        assert_eq!(
            catalog.columns(&weird),
            ["b", "a c"],
            "a listing, not a view"
        );
        catalog.reread(&conn, &weird).unwrap();
        catalog.reread(&conn, &TableId::new("main", "v")).unwrap();
        assert_eq!(catalog.columns(&weird), ["b", "a c", "d"]);
        assert_eq!(catalog.columns(&TableId::new("main", "v")), ["y"]);
    }
}
