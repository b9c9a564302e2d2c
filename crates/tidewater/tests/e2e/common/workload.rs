//! A write workload for crash and kill tests: one persistent `psql` / `mariadb` client fed
//! one transaction at a time from a background thread, paced so that a debug build on busy
//! cores keeps up, until the test stops it and learns how many transactions it sent.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tidewater_harness::wait_until;

use super::{Rig, Src, MY_DB};

/// A persistent SQL client fed transaction `1`, `2`, ... from a background thread.
pub struct Workload {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: JoinHandle<(Child, ChildStdin)>,
    err_path: std::path::PathBuf,
}

impl Workload {
    pub fn start(rig: &Rig, transaction: fn(u64) -> String) -> Workload {
        let err_path = rig.dir.path().join("workload.err");
        let err = std::fs::File::create(&err_path).unwrap();
        let mut cmd = match &rig.src {
            Src::Pg(pg) => {
                let mut c = Command::new("psql");
                c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &pg.url("postgres")]);
                c
            }
            Src::My(my) => {
                let mut c = Command::new("mariadb");
                c.args(["--no-defaults", "--protocol=TCP", "--user=root", "-B"])
                    .args(["--host", my.host(), "--port", &my.port().to_string()])
                    .arg(format!("--database={}", MY_DB));
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn the workload client");
        let mut stdin = child.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        // Paced so a debug build on busy cores keeps up; the long run writes the same way.
        let pause = Duration::from_millis(4);
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !stop2.load(Ordering::Relaxed) {
                i += 1;
                if stdin.write_all(transaction(i).as_bytes()).is_err() {
                    break; // the client died: reported by finish()
                }
                let _ = stdin.flush();
                sent2.store(i, Ordering::Relaxed);
                std::thread::sleep(pause);
            }
            (child, stdin)
        });
        Workload {
            stop,
            sent,
            thread,
            err_path,
        }
    }

    /// Whether the workload is still writing transactions.
    pub fn writing(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Stops writing, lets the client finish what it was sent, checks it succeeded and
    /// returns how many transactions were sent (counted after the writer thread has stopped,
    /// so a transaction sent while stopping is counted too).
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (mut child, stdin) = self.thread.join().unwrap();
        let sent = self.sent.load(Ordering::Relaxed);
        drop(stdin);
        let mut status = None;
        wait_until(
            Duration::from_secs(60),
            "the workload client to exit",
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        )
        .unwrap();
        let err = std::fs::read_to_string(&self.err_path).unwrap_or_default();
        assert!(
            status.unwrap().success() && err.trim().is_empty(),
            "workload client failed ({status:?}):\n{err}"
        );
        sent
    }
}
