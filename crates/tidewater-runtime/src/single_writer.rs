//! One `tidewater run` writes a replica. A second `run` of the same config must say so, not
//! trip over the first one's ports ("address already in use" on a fixed `http.listen`):
//! this check runs before any port is bound.
//!
//! Two signs of a live writer, either sufficient: its published status file names a pid
//! that is alive, or the replica file cannot be opened because another process holds its lock
//! (the writer may not have published yet).

use std::path::Path;

use tidewater_core::replica::is_held;
use tidewater_core::{Error, Result};

use crate::config::Config;
use crate::own_run::live_run;
use crate::registry::open_local_replica;

/// Fails when another live process writes the configured DuckDB replica.
pub fn ensure_no_other_writer(config: &Config, config_path: &Path) -> Result<()> {
    match live_writer(config) {
        Some(writer) => Err(Error::sink(format!(
            "{writer}: only one `tidewater run` may write a replica. Stop the other one first, \
             or look at it with `tidewater status --config {}`",
            config_path.display()
        ))),
        None => Ok(()),
    }
}

/// Who writes the configured DuckDB replica, when another live process does.
pub fn live_writer(config: &Config) -> Option<String> {
    let db = config.sink.local_file()?;
    let own = std::process::id();
    if let Some(pid) = live_run(config).filter(|p| *p != own) {
        return Some(format!(
            "`tidewater run` (pid {pid}) is writing {}",
            db.display()
        ));
    }
    if !db.exists() {
        return None;
    }
    match open_local_replica(db) {
        // Any other failure to open is for the pipeline to report, with its context.
        Err(e) if is_held(&e) => Some(e.message().to_string()),
        _ => None,
    }
}
