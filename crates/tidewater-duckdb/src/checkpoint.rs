//! Checkpoints off the apply path, and a checkpointed file at a clean stop.
//!
//! DuckDB commits into its write-ahead log (`<file>.wal`) and moves the log into the file in
//! a checkpoint. By itself it checkpoints inside the commit that takes the log past
//! `checkpoint_threshold` (16MB by default): that batch, and every source transaction queued
//! behind it, waits for the checkpoint, which shows as freshness p99 spikes. So:
//!
//! - the sink raises the threshold (`[sink] checkpoint_threshold`, default 128MB; set in
//!   `crate::settings`), and checkpoints itself whenever the apply loop is idle (no batch
//!   open, nothing queued: [`tidewater_core::Sink::idle`]) and the log holds at least
//!   [`IDLE_BYTES`] (or half the threshold, if that is less). A transaction arriving during
//!   such a checkpoint waits for it, but the checkpoints stay small and fall where apply has
//!   nothing to do;
//! - `[sink] checkpoint_when_idle = false` leaves checkpoints to DuckDB (with
//!   `checkpoint_threshold = "16MB"`, DuckDB's defaults: the behaviour before);
//! - under a load that never leaves apply idle, DuckDB's own checkpoint at the threshold
//!   still bounds the log (its disk use, and the replay after a crash);
//! - a clean stop checkpoints ([`close`]), so the `.duckdb` file can be copied alone.
//!
//! Exactness: a checkpoint moves committed data from the log into the file and nothing else;
//! the idle one runs between batches (never inside one), so what a batch commits is the same
//! whether or not, and wherever, checkpoints run. A checkpoint DuckDB refuses because another
//! connection (a query) holds a transaction is skipped and tried at the next idle moment:
//! the commits stay in the log, durable as before.

use std::path::{Path, PathBuf};
use std::time::Instant;

use duckdb::Connection;
use tidewater_core::{Error, Result};
use tracing::{debug, info};

use crate::config::parse_size;
use crate::sql::exec;

/// Log bytes past which an idle apply loop checkpoints: small enough that a transaction
/// arriving meanwhile waits briefly, large enough that checkpoints (each with a fixed cost:
/// the file's metadata, the tables' indexes) are not run after every small commit.
pub const IDLE_BYTES: u64 = 8 << 20;

/// When the sink checkpoints by itself.
pub(crate) struct Checkpoints {
    wal: PathBuf,
    /// `None`: no checkpoints when idle (`[sink] checkpoint_when_idle = false`).
    idle_bytes: Option<u64>,
}

impl Checkpoints {
    /// For the DuckDB file at `path`, whose `checkpoint_threshold` is `threshold` (a size,
    /// validated with the config).
    pub fn new(path: &Path, threshold: &str, when_idle: bool) -> Checkpoints {
        let mut wal = path.as_os_str().to_owned();
        wal.push(".wal");
        let half = parse_size(threshold).map_or(IDLE_BYTES, |t| t / 2);
        Checkpoints {
            wal: PathBuf::from(wal),
            idle_bytes: when_idle.then(|| IDLE_BYTES.min(half).max(1)),
        }
    }

    fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    /// Called between batches with nothing queued: checkpoints once the log is long enough.
    pub fn idle(&self, conn: &Connection) -> Result<()> {
        let Some(idle_bytes) = self.idle_bytes else {
            return Ok(());
        };
        let wal_bytes = self.wal_bytes();
        if wal_bytes < idle_bytes {
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
