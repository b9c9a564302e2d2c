//! Each held table's layout at the source beyond its definition (`Sink::table_layouts`:
//! PostgreSQL's leaf partitions), kept in `_tidewater.tables.layout` so that a start sees a
//! detach or attach made while tidewater was stopped. Written inside the batch that the
//! source's `Layouts` event arrives in, so it commits with that batch's position; the source
//! sends it only once the replica reflects the layout (or a copy that will has begun).

use std::collections::BTreeMap;

use duckdb::{params, Connection};
use tidewater_core::{Error, Result, TableId};

/// The recorded layouts (tables without one, written before layouts were kept or never
/// laid out, are absent).
pub fn read(conn: &Connection) -> Result<BTreeMap<TableId, String>> {
    let err = |e: duckdb::Error| Error::sink(format!("reading _tidewater.tables: {e}"));
    let mut stmt = conn
        .prepare(
            "SELECT schema_name, table_name, layout FROM _tidewater.tables \
             WHERE layout IS NOT NULL",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            let id = TableId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            Ok((id, r.get::<_, String>(2)?))
        })
        .and_then(|rows| rows.collect::<std::result::Result<BTreeMap<_, _>, _>>())
        .map_err(err)?;
    Ok(rows)
}

/// Records `layouts` in the open transaction. A table without a row (not held) is skipped:
/// the source sends layouts of held tables only.
pub fn write(conn: &Connection, layouts: &[(TableId, String)]) -> Result<()> {
    let err = |e: duckdb::Error| Error::sink(format!("writing _tidewater.tables: {e}"));
    let mut stmt = conn
        .prepare("UPDATE _tidewater.tables SET layout = ? WHERE schema_name = ? AND table_name = ?")
        .map_err(err)?;
    for (id, layout) in layouts {
        stmt.execute(params![layout, id.schema, id.name])
            .map_err(err)?;
    }
    Ok(())
}
