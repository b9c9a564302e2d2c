//! The verify engine behind `tidewater verify`: compares every selected source table with its replica, by primary key
//! (as a multiset for keyless tables), and reports rows compared, missing, extra and differing
//! rows with example keys. Exit 0 when equal, 1 when not.
//!
//! While `run` runs it holds the replica file, so the comparison runs inside that process
//! (`POST /verify` on the address in its status file, answered by [`serve`]) on a connection
//! of its own, waiting for the replica to pass each source snapshot. Otherwise the file is
//! compared here, read-only (`registry::open_local_comparison`; `run` cannot start meanwhile).
//! A remote replica (BigQuery) is compared from here, while `run` writes it or not
//! (`engine::Replica::Remote`).
//!
//! With `[verify] interval`, `run` also verifies in the background ([`continuous`]) and shows
//! what the last pass found ([`passes`]).

pub mod continuous;
mod engine;
pub use crate::verify_report as report;
pub mod serve;

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::Method;
use tidewater_core::replica::is_held;
use tidewater_core::{Error, ErrorKind, Result};

use crate::client;
use crate::config::Config;
use crate::registry::{open_local_comparison, open_remote_replica};
use crate::status_file::read_published;
use engine::Replica;
pub use engine::VerifyRequest;
use report::VerifyReport;

/// How long to wait for a `run` that holds the file but has not published its address yet.
const WAIT_FOR_PUBLISHED: Duration = Duration::from_secs(5);
/// The longest a verification inside the running process may take.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Verifies inside the running process if there is one, else on the replica file here; a
/// remote replica (BigQuery) is compared from here, whether or not `run` writes it.
pub async fn run_somewhere(config: &Config, request: &VerifyRequest) -> Result<VerifyReport> {
    if let Some(remote) = open_remote_replica(&config.sink).await? {
        let replica = remote.replica.clone();
        let comparer = tokio::task::spawn_blocking(move || replica.comparison())
            .await
            .map_err(|e| Error::sink(format!("verify: opening the comparison: {e}")))??;
        let settle = remote.settle;
        return engine::verify(config, comparer, Replica::Remote { settle }, request, None).await;
    }
    let db = config.sink.duckdb_path("verify")?;
    if let Some(addr) = published_http(db) {
        match remote(&addr, request).await {
            Err(Remote::Unreachable(_)) => {} // the process just ended: the file is free
            other => return other.map_err(Remote::into_error),
        }
    }
    match open_local_comparison(db) {
        // (The comparison's temporary files go when it is dropped, at the end of `verify`.)
        Ok(comparer) => engine::verify(config, comparer, Replica::Stopped, request, None).await,
        Err(e) if is_held(&e) => {
            // Held by a `run` that is starting: its status file appears within seconds.
            let deadline = Instant::now() + WAIT_FOR_PUBLISHED;
            while Instant::now() < deadline {
                if let Some(addr) = published_http(db) {
                    return remote(&addr, request).await.map_err(Remote::into_error);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Error::sink(format!(
                "{} is held by another process that publishes no address to verify through \
                 (an older tidewater, or not tidewater): stop it and run verify again ({})",
                db.display(),
                e.message()
            )))
        }
        Err(e) => Err(e),
    }
}

fn published_http(db: &Path) -> Option<String> {
    read_published(db)?.live?.http
}

enum Remote {
    Unreachable(String),
    Answer(Error),
}

impl Remote {
    fn into_error(self) -> Error {
        match self {
            Remote::Unreachable(m) => Error::sink(m),
            Remote::Answer(e) => e,
        }
    }
}

async fn remote(addr: &str, request: &VerifyRequest) -> Result<VerifyReport, Remote> {
    let body = serde_json::to_vec(request).expect("request serialises");
    let (status, bytes) = client::call(addr, Method::POST, "/verify", Some(body), REMOTE_TIMEOUT)
        .await
        .map_err(Remote::Unreachable)?;
    if status == 200 {
        return serde_json::from_slice(&bytes).map_err(|e| {
            Remote::Answer(Error::sink(format!("unreadable answer from {addr}: {e}")))
        });
    }
    let answer: wire::ErrorAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        Remote::Answer(Error::sink(format!(
            "unreadable answer from {addr} (HTTP {status}): {e}"
        )))
    })?;
    Err(Remote::Answer(answer.into_error()))
}

/// The form of an error answered by `POST /verify`.
mod wire {
    use super::*;

    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub struct ErrorAnswer {
        pub kind: String,
        pub error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fix: Option<String>,
    }

    impl ErrorAnswer {
        pub fn from_error(e: &Error) -> ErrorAnswer {
            let kind = match e.kind {
                ErrorKind::Config => "config",
                ErrorKind::Check => "check",
                ErrorKind::SourceFatal | ErrorKind::SourceRetryable => "source",
                ErrorKind::Sink | ErrorKind::SinkRetryable | ErrorKind::Shutdown => "sink",
            };
            ErrorAnswer {
                kind: kind.into(),
                error: e.message().to_string(),
                fix: e.fix().map(String::from),
            }
        }

        pub fn into_error(self) -> Error {
            let kind = match self.kind.as_str() {
                "config" => ErrorKind::Config,
                "check" => ErrorKind::Check,
                "source" => ErrorKind::SourceFatal,
                _ => ErrorKind::Sink,
            };
            let e = Error::new(kind, self.error);
            match self.fix {
                Some(fix) => e.with_fix(fix),
                None => e,
            }
        }
    }
}
