//! The DuckDB settings the sink's connection runs with (they hold for the whole database
//! instance, so for the read connections cloned from it too): what apply needs to be fast,
//! and what bounds DuckDB's memory.

use duckdb::Connection;
use tidewater_core::Result;

use crate::config::DuckDbOptions;
use crate::sql::exec;

/// Applies the settings to a freshly opened connection.
pub(crate) fn apply(conn: &Connection, options: &DuckDbOptions) -> Result<crate::memory::Limit> {
    // Each batch deletes its touched keys with `key IN (SELECT ... FROM staging)`. DuckDB
    // turns a join's build side of up to this many keys into an IN filter on the replica
    // scan, which the primary key's index answers by lookups: 2 vs 8 ms for 80 keys of a
    // million-row table (the default, 50, covers only the smallest batches); no slower
    // without an index.
    exec(
        conn,
        "SET dynamic_or_filter_threshold = 1000",
        &"tuning key lookups",
    )?;
    if options.threads > 0 {
        let set = format!("SET threads = {}", options.threads);
        exec(conn, &set, &"setting the DuckDB thread count")?;
    }
    // DuckDB checkpoints by itself inside a commit whose log plus estimate passes this; the
    // sink holds that off for a commit whose log would stay short, and checkpoints at idle
    // moments long before (`crate::checkpoint`).
    set_checkpoint_threshold(conn, options.checkpoint_threshold.trim())?;
    // DuckDB's buffer pool otherwise keeps every block it wrote or read, up to 80 % of RAM;
    // beyond the limit it evicts them (and spills temporary data to `<path>.tmp`).
    crate::memory::apply(conn, &options.memory_limit)
}

/// Sets DuckDB's `checkpoint_threshold` (a size).
pub(crate) fn set_checkpoint_threshold(conn: &Connection, size: &str) -> Result<()> {
    let set = format!("SET checkpoint_threshold = '{}'", size.replace('\'', "''"));
    exec(conn, &set, &"setting DuckDB's checkpoint_threshold")
}
