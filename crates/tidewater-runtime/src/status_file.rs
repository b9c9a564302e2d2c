//! While `run` holds the DuckDB file no other process can open it, so `run` publishes its
//! status (the same view as `GET /status`, with the HTTP address local commands use) to
//! `<file>.status.json` every few seconds, written atomically (temp file + rename).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{Error, Result};
use tracing::debug;

use crate::monitor::Monitor;
use crate::status_view::StatusView;

const PUBLISH_EVERY: Duration = Duration::from_secs(2);

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
    /// Starts publishing; the monitor must have its reader connection.
    pub fn start(monitor: Arc<Monitor>) -> Result<StatusPublisher> {
        let stop = Arc::new(AtomicBool::new(false));
        let path = status_path(&monitor.db_path);
        let (stop2, path2) = (stop.clone(), path.clone());
        std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match monitor.report(Duration::ZERO) {
                        Ok(report) => {
                            let view = StatusView::live(&monitor, (*report).clone());
                            if let Err(e) = write_atomically(&path2, &view) {
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

fn write_atomically(path: &Path, s: &StatusView) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(s).expect("status serialises"),
    )?;
    std::fs::rename(tmp, path)
}

/// The status published by a running `tidewater run` of this replica, if one runs.
pub fn read_published(db: &Path) -> Option<StatusView> {
    let text = std::fs::read_to_string(status_path(db)).ok()?;
    let s: StatusView = serde_json::from_str(&text).ok()?;
    // A file left by a killed process is not a live status.
    let pid = s.pid?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(s)
}

/// The configured replica's status: a local file's from [`current`], a remote replica's
/// (BigQuery) read from its dataset.
pub async fn of_config(config: &crate::config::Config) -> Result<StatusView> {
    let Some(remote) = crate::registry::open_remote_replica(&config.sink).await? else {
        return current(config.sink.duckdb_path("status")?).await;
    };
    let replica = remote.replica.clone();
    let report = tokio::task::spawn_blocking(move || replica.status())
        .await
        .map_err(|e| Error::sink(format!("reading the replica's status: {e}")))??;
    Ok(StatusView::remote(&remote.name, report))
}

/// The running process's `/status` (fresh), else its status file, else the replica itself.
pub async fn current(db: &std::path::Path) -> tidewater_core::Result<StatusView> {
    let published = read_published(db);
    if let Some(p) = &published {
        if let Some(addr) = p.live.as_ref().and_then(|l| l.http.as_deref()) {
            let answer = crate::client::call(
                addr,
                hyper::Method::GET,
                "/status",
                None,
                std::time::Duration::from_secs(5),
            )
            .await;
            if let Ok((200, body)) = answer {
                if let Ok(view) = serde_json::from_slice(&body) {
                    return Ok(view);
                }
            }
        }
        return Ok(published.expect("checked"));
    }
    let path = db.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        crate::registry::open_local_replica(&path).and_then(|replica| replica.status())
    })
    .await
    .expect("status task");
    match opened {
        Ok(report) => Ok(StatusView::stopped(db, report)),
        // `run` may have taken the file in the meantime.
        Err(e) => read_published(db).ok_or(e),
    }
}
