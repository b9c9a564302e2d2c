//! While `run` holds the DuckDB file no other process can open it, so `run` publishes its
//! status to `<file>.status.json` every few seconds (written atomically: temp file + rename),
//! read by `tidewater status`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater_core::stats::{now_us, Stats};
use tidewater_core::{Error, Result};
use tidewater_duckdb::status::{collect, StatusReport};
use tidewater_duckdb::DuckDbSink;
use tracing::debug;

use crate::pipeline::PIPELINE_NAME;

const PUBLISH_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
pub struct PublishedStatus {
    pub pid: u32,
    pub published_at_us: i64,
    /// Source commit → replica commit of the last applied transaction.
    pub last_lag_ms: i64,
    pub report: StatusReport,
}

pub fn status_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".status.json");
    db.with_file_name(name)
}

pub struct StatusPublisher {
    stop: Arc<AtomicBool>,
    path: PathBuf,
}

impl StatusPublisher {
    pub fn start(sink: &DuckDbSink, db: &Path, stats: Arc<Stats>) -> Result<StatusPublisher> {
        let conn = sink
            .connection()
            .try_clone()
            .map_err(|e| Error::sink(format!("opening a status connection: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let path = status_path(db);
        let (stop2, path2) = (stop.clone(), path.clone());
        std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match collect(&conn, PIPELINE_NAME) {
                        Ok(report) => {
                            let applied = stats.last_apply_us.load(Ordering::Relaxed);
                            let committed = stats.last_source_commit_us.load(Ordering::Relaxed);
                            let s = PublishedStatus {
                                pid: std::process::id(),
                                published_at_us: now_us(),
                                last_lag_ms: (applied - committed) / 1000,
                                report,
                            };
                            if let Err(e) = write_atomically(&path2, &s) {
                                debug!("publishing status: {e}");
                            }
                        }
                        Err(e) => debug!("collecting status: {e}"),
                    }
                    std::thread::park_timeout(PUBLISH_EVERY);
                }
            })
            .map_err(|e| Error::sink(format!("starting the status thread: {e}")))?;
        Ok(StatusPublisher { stop, path })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn write_atomically(path: &Path, s: &PublishedStatus) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(s).expect("status serialises"),
    )?;
    std::fs::rename(tmp, path)
}

pub fn read_published(db: &Path) -> Option<PublishedStatus> {
    let text = std::fs::read_to_string(status_path(db)).ok()?;
    let s: PublishedStatus = serde_json::from_str(&text).ok()?;
    // A file left by a killed process is not a live status.
    Path::new(&format!("/proc/{}", s.pid)).exists().then_some(s)
}
