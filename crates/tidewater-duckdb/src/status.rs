//! What `tidewater status` shows (`tidewater_core::replica::StatusReport`), read from the
//! state schema and the replicas.

use std::path::Path;

use duckdb::{AccessMode, Config, Connection, OptionalExt};
use tidewater_core::{Error, Result};

use crate::errors::open_error;
use crate::sql::qualified;

pub use tidewater_core::replica::{StatusReport, TableStatus};

/// Opens the file read-only, without access to other files or the environment; fails (with
/// a message saying so, and `replica::Held` as the source) while `run` holds it.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    must_exist(path)?;
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .and_then(|c| c.enable_external_access(false))
        .map_err(|e| Error::sink(e.to_string()))?;
    Connection::open_with_flags(path, config).map_err(|e| open_error(path, e))
}

/// Fails, saying who creates it, when the replica file does not exist yet.
pub(crate) fn must_exist(path: &Path) -> Result<()> {
    match path.exists() {
        true => Ok(()),
        false => Err(Error::sink(format!(
            "DuckDB file {} does not exist yet: `tidewater run` creates it",
            path.display()
        ))),
    }
}

pub fn collect(conn: &Connection, pipeline: &str) -> Result<StatusReport> {
    let err = |e: duckdb::Error| Error::sink(format!("reading the _tidewater state: {e}"));
    let mut report = conn
        .query_row(
            "SELECT position, source_type, CAST(last_source_commit AS VARCHAR), \
             CAST(last_apply AS VARCHAR), transactions_applied, changes_applied \
             FROM _tidewater.pipeline WHERE name = ?",
            [pipeline],
            |r| {
                Ok(StatusReport {
                    position: r.get(0)?,
                    source_type: r.get(1)?,
                    last_source_commit: r.get(2)?,
                    last_apply: r.get(3)?,
                    transactions_applied: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                    changes_applied: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                    ..StatusReport::default()
                })
            },
        )
        .optional()
        .map_err(err)?
        .unwrap_or_default();
    let mut stmt = conn
        .prepare(
            "SELECT schema_name, table_name, changes_applied, schema_version \
             FROM _tidewater.tables ORDER BY schema_name, table_name",
        )
        .map_err(err)?;
    let tables: Vec<(String, String, i64, i32)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .and_then(|rows| rows.collect())
        .map_err(err)?;
    // A file written before the split transactions' columns existed has none.
    report.partial = crate::state::read_partial(conn, pipeline)
        .ok()
        .flatten()
        .map(|(p, _)| (p.position.0, p.changes));
    if let Some(wal) = wal_path(conn) {
        report.wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
        report.checkpointed = Some(report.wal_bytes == 0);
    }
    for (schema, name, changes, version) in tables {
        let id = tidewater_core::TableId::new(schema, name);
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", qualified(&id)),
                [],
                |r| r.get(0),
            )
            .unwrap_or(-1);
        report.tables.push(TableStatus {
            table: id.to_string(),
            rows,
            changes_applied: changes,
            schema_version: version,
        });
    }
    Ok(report)
}

/// The write-ahead log of the connection's database file (`<file>.wal`), if it has a file.
fn wal_path(conn: &Connection) -> Option<std::path::PathBuf> {
    let path: Option<String> = conn
        .query_row(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()",
            [],
            |r| r.get(0),
        )
        .ok()?;
    path.filter(|p| !p.is_empty() && p != ":memory:")
        .map(|p| std::path::PathBuf::from(format!("{p}.wal")))
}
