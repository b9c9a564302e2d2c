//! Checkpoints off the apply path, and a checkpointed file at a clean stop.
//!
//! DuckDB commits into its write-ahead log (`<file>.wal`) and moves the log into the file in
//! a checkpoint. By itself it checkpoints inside the commit that takes the log past
//! `checkpoint_threshold` (16MB by default): that batch, and every source transaction queued
//! behind it, waits for the checkpoint, which shows as freshness p99 spikes. So:
//!
//! - the sink checkpoints itself whenever the apply loop is idle (no batch open, nothing
//!   queued: [`tidewater_core::Sink::idle`]) and the log holds at least [`IDLE_BYTES`] (or
//!   half of `[sink] checkpoint_threshold`, if that is less). A transaction arriving during
//!   such a checkpoint waits for it, but the checkpoints stay small and fall where apply has
//!   nothing to do;
//! - under a load that never leaves apply idle, DuckDB's own checkpoint inside a commit
//!   bounds the log (its disk use, and the replay after a crash), at `checkpoint_threshold`
//!   (default 128MB). That checkpoint writes a large transaction straight into the file
//!   instead of into the log first, which a checkpoint of the sink's after the commit could
//!   not do (measured: 2 KiB rows drained ~15 % slower that way). But DuckDB
//!   does not test the log's size: it tests the log plus an estimate of the committing
//!   transaction, its rows at their fixed widths plus the in-memory size of its
//!   transaction-local key indexes, several MiB per keyed table written however few the
//!   rows. A batch touching a hundred keyed tables passed 128MB with a log of a few MiB, so
//!   DuckDB checkpointed every table inside every such commit (docs/performance.md, "Memory
//!   per table a batch writes"). So before each batch's commit the sink tells DuckDB whether
//!   it may ([`Checkpoints::before_commit`]): only when the log plus the batch's own values
//!   reach the threshold; otherwise DuckDB's threshold is out of reach for that commit
//!   ([`OUT_OF_REACH`]);
//! - a checkpoint rewrites the last, partly filled row group of every table written since the
//!   last one, whole (DuckDB re-compresses a column whose row group received rows). Rows of
//!   2 KiB fill a row group (122,880 rows) with ~240 MiB, so a checkpoint every 128MB of log
//!   rewrote the same row group several times: the 2 KiB drain spent most of its time there.
//!   Both tests above therefore scale with the width of the rows being written
//!   ([`Checkpoints::scale`]): the log may grow to what one row group of those rows, in every
//!   copy the log receives, adds up to, at most [`MAX_SCALE`] times the configured sizes, so
//!   each row group is rewritten about twice at most instead of once per 128MB. Narrow rows
//!   (a row group of ~12 MiB) keep the configured sizes;
//! - `[sink] checkpoint_when_idle = false` leaves checkpoints to DuckDB alone, at its own
//!   test of `checkpoint_threshold` (with `"16MB"`, DuckDB's defaults: the behaviour before);
//! - a clean stop checkpoints ([`close`]), so the `.duckdb` file can be copied alone.
//!
//! Exactness: a checkpoint moves committed data from the log into the file and nothing else;
//! the sink's own runs between batches (never inside one), and whether DuckDB may run one
//! inside a commit changes when the log is moved, not what the commit holds; so what a batch
//! commits is the same whether or not, and wherever, checkpoints run. A checkpoint DuckDB
//! refuses because another connection (a query) holds a transaction is skipped and tried at
//! the next idle moment: the commits stay in the log, durable as before.

use std::path::{Path, PathBuf};
use std::time::Instant;

use duckdb::Connection;
use tidewater_core::{Error, Result};
use tracing::{debug, info};

use crate::config::{parse_size, ROW_GROUP_ROWS};
use crate::sql::exec;

/// Log bytes past which an idle apply loop checkpoints: small enough that a transaction
/// arriving meanwhile waits briefly, large enough that checkpoints (each with a fixed cost:
/// the file's metadata, the tables' indexes) are not run after every small commit.
pub const IDLE_BYTES: u64 = 8 << 20;

/// DuckDB's `checkpoint_threshold` for a commit that should not checkpoint: out of reach of
/// any log plus estimate.
pub const OUT_OF_REACH: &str = "1000GB";

/// The most the log's bounds are scaled for wide rows: the configured `checkpoint_threshold`
/// (128MB by default) becomes at most 512 MB of log, what a crash replays at start, enough for
/// a row group of 2 KiB rows in the replica and the `_log`. Measured (docs/performance.md,
/// "Checkpoints scaled to the row width"): a drain of 1M changes of 2 KiB rows ran ~1.45× as
/// fast; DuckDB alone did the same writes in 19 s instead of 31 s.
pub const MAX_SCALE: u64 = 4;

/// When the sink checkpoints, and when it lets DuckDB.
pub(crate) struct Checkpoints {
    wal: PathBuf,
    /// `checkpoint_threshold`, as given and in bytes.
    threshold: (String, u64),
    /// `None`: checkpoints are DuckDB's alone (`[sink] checkpoint_when_idle = false`).
    idle_bytes: Option<u64>,
    /// Whether DuckDB's threshold is now [`OUT_OF_REACH`] (a setting, not rolled back with a
    /// failed commit; were it ever stale, a commit would checkpoint or not: timing only).
    held_off: bool,
    /// Copies of each value the log receives: the replica's, and the change log's if kept.
    copies: u64,
    /// Estimated bytes of a change in the last batch committed (`change_bytes`'s estimate).
    row_bytes: u64,
}

impl Checkpoints {
    /// For the DuckDB file at `path`, whose `checkpoint_threshold` is `threshold` (a size,
    /// validated with the config; `crate::settings` sets DuckDB's to it).
    pub fn new(path: &Path, threshold: &str, when_idle: bool, log_tables: bool) -> Checkpoints {
        let mut wal = path.as_os_str().to_owned();
        wal.push(".wal");
        let bytes = parse_size(threshold).unwrap_or(2 * IDLE_BYTES).max(1);
        Checkpoints {
            wal: PathBuf::from(wal),
            threshold: (threshold.trim().to_owned(), bytes),
            idle_bytes: when_idle.then(|| IDLE_BYTES.min(bytes / 2).max(1)),
            held_off: false,
            copies: if log_tables { 2 } else { 1 },
            row_bytes: 0,
        }
    }

    /// How many times the configured sizes the log may hold now: one row group of the rows
    /// being written, in each copy the log receives, over the configured threshold, rounded
    /// up, between 1 and [`MAX_SCALE`].
    fn scale(&self) -> u64 {
        let row_group = self
            .row_bytes
            .saturating_mul(ROW_GROUP_ROWS as u64)
            .saturating_mul(self.copies);
        row_group.div_ceil(self.threshold.1).clamp(1, MAX_SCALE)
    }

    fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    /// Called in a batch before its COMMIT, with the estimated bytes of its values and its
    /// changes: DuckDB may checkpoint inside the commit only if the log will then reach the
    /// threshold, scaled to the batch's rows. One `SET` when the answer changes, none
    /// otherwise.
    pub fn before_commit(
        &mut self,
        conn: &Connection,
        batch_bytes: u64,
        changes: u64,
    ) -> Result<()> {
        if self.idle_bytes.is_none() {
            return Ok(());
        }
        if let Some(row_bytes) = batch_bytes.checked_div(changes) {
            self.row_bytes = row_bytes;
        }
        let logged = batch_bytes.saturating_mul(self.copies);
        let threshold = self.threshold.1.saturating_mul(self.scale());
        let hold_off = self.wal_bytes().saturating_add(logged) < threshold;
        if hold_off != self.held_off {
            let value = if hold_off {
                OUT_OF_REACH
            } else {
                &self.threshold.0
            };
            crate::settings::set_checkpoint_threshold(conn, value)?;
            self.held_off = hold_off;
        }
        Ok(())
    }

    /// Called between batches with nothing queued: checkpoints once the log is long enough
    /// (scaled like the threshold, to the last batch's rows); skipped (and tried again at the
    /// next idle moment) while another connection holds a transaction.
    pub fn idle(&self, conn: &Connection) -> Result<()> {
        let Some(idle_bytes) = self.idle_bytes else {
            return Ok(());
        };
        let wal_bytes = self.wal_bytes();
        if wal_bytes < idle_bytes.saturating_mul(self.scale()) {
            return Ok(());
        }
        let started = Instant::now();
        match conn.execute_batch("CHECKPOINT") {
            Ok(()) => debug!(
                wal_bytes,
                millis = started.elapsed().as_millis() as u64,
                "checkpointed while idle"
            ),
            Err(e) if crate::errors::is_checkpoint_conflict(&e) => {
                debug!(error = %e, "idle checkpoint skipped: another connection holds a transaction")
            }
            Err(e) => {
                return Err(Error::sink(format!("checkpointing the DuckDB file: {e}")));
            }
        }
        Ok(())
    }
}

/// A clean stop leaves the `.duckdb` file complete by itself: the batches committed since
/// the last checkpoint move from the `.wal` into it (DuckDB then empties the `.wal`), so the
/// file can be copied alone, and a `.wal` lost afterwards loses nothing.
pub(crate) fn close(conn: &Connection, path: &Path) -> Result<()> {
    let started = Instant::now();
    if let Err(e) = exec(conn, "CHECKPOINT", &"checkpointing the DuckDB file") {
        // Another connection (a query still running at shutdown) holds a transaction: FORCE
        // waits for it to end.
        debug!(error = %e, "CHECKPOINT refused; forcing it");
        exec(conn, "FORCE CHECKPOINT", &"checkpointing the DuckDB file")?;
    }
    info!(
        millis = started.elapsed().as_millis() as u64,
        "checkpointed {}: the file alone holds every commit",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(conn: &Connection) -> String {
        crate::sql::current_setting(conn, "checkpoint_threshold").unwrap()
    }

    #[test]
    fn the_log_may_hold_a_row_group_of_wide_rows_before_a_commit_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open_in_memory().unwrap();
        let mut checkpoints = Checkpoints::new(&dir.path().join("r.duckdb"), "64MB", true, true);
        crate::settings::set_checkpoint_threshold(&conn, "64MB").unwrap();
        let configured = threshold(&conn);

        // 40 MB of narrow rows (100 bytes: a row group of ~12 MB, twice): the log would pass
        // 64MB, so DuckDB may checkpoint inside the commit.
        checkpoints
            .before_commit(&conn, 40_000_000, 400_000)
            .unwrap();
        assert!(!checkpoints.held_off);
        assert_eq!(threshold(&conn), configured);

        // The same bytes in 2,000-byte rows: a row group of those is ~245 MB, twice; the log
        // may grow to MAX_SCALE × 64MB first.
        checkpoints
            .before_commit(&conn, 40_000_000, 20_000)
            .unwrap();
        assert_eq!(checkpoints.scale(), MAX_SCALE);
        assert!(checkpoints.held_off);
        assert_ne!(threshold(&conn), configured);

        // Past the scaled bound, a commit of wide rows checkpoints too.
        checkpoints
            .before_commit(&conn, 130_000_000, 65_000)
            .unwrap();
        assert!(!checkpoints.held_off);
        assert_eq!(threshold(&conn), configured);
    }

    #[test]
    fn the_scale_follows_the_rows_of_the_last_batch() {
        let conn = Connection::open_in_memory().unwrap();
        let path = Path::new("/nonexistent/r.duckdb");
        let mut with_log = Checkpoints::new(path, "128MB", true, true);
        let mut replica_only = Checkpoints::new(path, "128MB", true, false);
        for (bytes_per_row, scale, scale_alone) in
            [(100, 1, 1), (600, 2, 1), (1000, 2, 1), (2100, 4, 3)]
        {
            with_log
                .before_commit(&conn, bytes_per_row * 10, 10)
                .unwrap();
            replica_only
                .before_commit(&conn, bytes_per_row * 10, 10)
                .unwrap();
            assert_eq!(with_log.scale(), scale, "{bytes_per_row} bytes a row");
            assert_eq!(
                replica_only.scale(),
                scale_alone,
                "{bytes_per_row} bytes a row, no log"
            );
        }
        // A batch without changes (a truncate alone) keeps the width it had.
        with_log.before_commit(&conn, 0, 0).unwrap();
        assert_eq!(with_log.scale(), 4);
    }
}
