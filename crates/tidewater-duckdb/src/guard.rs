//! What the position guard needs from the DuckDB file: the replica's identity and the
//! highest position the source may have been told is applied.
//!
//! - `_tidewater.replica` holds one UUID, created (and checkpointed into the main file, so a
//!   lost `.wal` cannot take it) when the file is first opened for `run`, before anything is
//!   taken from the source. The source records it as the owner of its server-side state (a
//!   PostgreSQL replication slot), so a second replica with the same slot is told apart from
//!   this one redoing its own interrupted snapshot.
//! - `_tidewater.pipeline.acked_position` is written in the same transaction as `position`
//!   (equal to it, or the idle position acknowledged with that batch) and by
//!   [`record_idle`] for an idle position outside a batch, always before the source is told.
//!   A file written before this column existed has it NULL: the guard then has nothing exact
//!   to compare until the next commit.

use duckdb::{Connection, OptionalExt};
use tidewater_core::{Error, Position, Result};

pub const GUARD_DDL: &str = "
CREATE TABLE IF NOT EXISTS _tidewater.replica (
    id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ
);
ALTER TABLE _tidewater.pipeline ADD COLUMN IF NOT EXISTS acked_position VARCHAR;
";

fn sink_error(what: &str, e: duckdb::Error) -> Error {
    Error::sink(format!("{what}: {e}"))
}

/// The replica's UUID, created and checkpointed on first use.
pub fn replica_id(conn: &Connection) -> Result<String> {
    let read = |conn: &Connection| {
        conn.query_row("SELECT min(id) FROM _tidewater.replica", [], |r| {
            r.get::<_, Option<String>>(0)
        })
        .map_err(|e| sink_error("reading _tidewater.replica", e))
    };
    if let Some(id) = read(conn)? {
        return Ok(id);
    }
    conn.execute_batch(
        "INSERT INTO _tidewater.replica VALUES (CAST(uuid() AS VARCHAR), get_current_timestamp())",
    )
    .map_err(|e| sink_error("writing _tidewater.replica", e))?;
    // Into the main file at once, so that a lost .wal cannot take the identity with it (and
    // with it the claim on an interrupted first snapshot's slot). Without it the identity
    // still holds until the next automatic checkpoint, hence only a warning.
    if let Err(e) = conn.execute_batch("CHECKPOINT") {
        tracing::warn!(error = %e, "could not checkpoint the new replica identity");
    }
    read(conn)?.ok_or_else(|| Error::sink("_tidewater.replica is empty after writing it"))
}

/// The acknowledged position of `pipeline` (NULL in a file written before it was kept).
pub fn acknowledged(conn: &Connection, pipeline: &str) -> Result<Option<Position>> {
    let pos: Option<Option<String>> = conn
        .query_row(
            "SELECT acked_position FROM _tidewater.pipeline WHERE name = ?",
            [pipeline],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sink_error("reading _tidewater.pipeline", e))?;
    Ok(pos.flatten().map(Position))
}

/// Stores an idle position outside a batch (autocommit). Only after a committed batch does
/// the source send one, so the pipeline's row exists.
pub fn record_idle(conn: &Connection, pipeline: &str, position: &Position) -> Result<()> {
    conn.prepare_cached("UPDATE _tidewater.pipeline SET acked_position = ? WHERE name = ?")
        .and_then(|mut stmt| stmt.execute([&position.0, pipeline]))
        .map_err(|e| sink_error("writing _tidewater.pipeline", e))?;
    Ok(())
}
