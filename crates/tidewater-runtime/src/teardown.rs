//! `tidewater teardown`: removes a pipeline. At a PostgreSQL source that means the
//! replication slot and publications tidewater created (an abandoned slot keeps WAL until
//! the disk fills); a MySQL/MariaDB binlog reader leaves nothing at the source. The replica
//! stays unless `--drop-replica`. Without `--yes` it only lists what it would drop.
//!
//! It refuses while `run` is running: dropping the slot under a live pipeline would end it,
//! and the next start would take a new snapshot.

use std::path::Path;

use tidewater_core::{Error, Result};

use crate::config::Config;
use crate::registry::teardown_source;
use crate::single_writer::live_writer;

/// What teardown dropped (or, without `yes`, would drop), as lines for the terminal.
pub async fn teardown(config_path: &Path, yes: bool, drop_replica: bool) -> Result<String> {
    let config = Config::load(config_path)?;
    if let Some(writer) = live_writer(&config) {
        return Err(Error::config(format!(
            "{writer}: teardown refuses while `tidewater run` is running. Stop it first \
             (SIGTERM), then run teardown again"
        )));
    }
    let verb = if yes { "dropped" } else { "would drop" };
    let mut out = String::new();
    match teardown_source(&config.source, yes).await? {
        None => out.push_str(
            "source: nothing to drop: a MySQL/MariaDB binlog reader leaves no slot or \
             publication behind (the source purges binlogs by its own retention)\n",
        ),
        Some(objects) if objects.is_empty() => {
            out.push_str("source: nothing to drop: no slot or publication of this config\n")
        }
        Some(objects) => {
            for object in &objects {
                out.push_str(&format!("source: {verb} {object}\n"));
            }
        }
    }
    out.push_str(&replica(&config, yes, drop_replica)?);
    if !yes {
        out.push_str("nothing was dropped: run again with --yes to drop the above\n");
    }
    Ok(out)
}

/// Removes (or names) the DuckDB replica and its companion files when `drop_replica`.
fn replica(config: &Config, yes: bool, drop_replica: bool) -> Result<String> {
    let Some(db) = config.sink.local_file() else {
        return Ok(match drop_replica {
            true => "replica: left alone: drop the BigQuery dataset's tables in BigQuery\n".into(),
            false => "replica: kept (the BigQuery dataset)\n".into(),
        });
    };
    if !drop_replica {
        return Ok(format!(
            "replica: kept ({}; add --drop-replica to delete it too)\n",
            db.display()
        ));
    }
    let mut wal = db.as_os_str().to_os_string();
    wal.push(".wal");
    let files: Vec<std::path::PathBuf> = [db.to_path_buf(), wal.into()]
        .into_iter()
        .filter(|f| f.exists())
        .collect();
    let mut out = String::new();
    for f in &files {
        if yes {
            std::fs::remove_file(f).map_err(|e| {
                Error::sink(format!(
                    "cannot delete {}: {e}; delete it by hand",
                    f.display()
                ))
            })?;
        }
        let verb = if yes { "deleted" } else { "would delete" };
        out.push_str(&format!("replica: {verb} {}\n", f.display()));
    }
    if files.is_empty() {
        out.push_str(&format!("replica: {} does not exist\n", db.display()));
    }
    Ok(out)
}
