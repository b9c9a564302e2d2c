//! A paced writer for the copy under writes (issue 15's production shape: a table copied
//! while the application keeps changing it): the source's own client reads a script of small
//! transactions on random keys of the snapshot table, each followed by a short pause, until
//! stopped. Random keys land in ranges already copied and in ranges still to copy.

use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{BenchError, Result};
use crate::source::{writer_tx, Db};

pub struct Writer {
    child: Child,
    feeder: Option<JoinHandle<std::io::Result<()>>>,
    stop: Arc<AtomicBool>,
}

impl Writer {
    /// Starts writing to `table` (`rows` rows, keys 1..=rows) with `pause_ms` between
    /// transactions.
    pub fn start(db: &Db, table: &str, rows: u64, pause_ms: u32) -> Result<Writer> {
        let mut child = db
            .script_command()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BenchError::io("starting the writer's client"))?;
        let mut stdin = child.stdin.take().expect("piped");
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, table, kind) = (stop.clone(), table.to_string(), db.kind());
        let feeder = std::thread::spawn(move || {
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut key = || {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                1 + (seed >> 33) % rows.max(1)
            };
            let mut i = 0;
            while !stopped.load(Ordering::Relaxed) {
                i += 1;
                let keys = [key(), key(), key()];
                let tx = writer_tx(kind, &table, rows, i, keys, pause_ms);
                stdin.write_all(tx.as_bytes())?;
                stdin.flush()?;
            }
            Ok(())
        });
        Ok(Writer {
            child,
            feeder: Some(feeder),
            stop,
        })
    }

    /// Ends the script and waits for the client to run what it has read.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let feeder = self.feeder.take().expect("running");
        let fed = feeder
            .join()
            .map_err(|_| BenchError::Other("the writer's feeder panicked".into()))?;
        fed.map_err(BenchError::io("writing the writer's script"))?;
        let status = self
            .child
            .wait()
            .map_err(BenchError::io("waiting for the writer's client"))?;
        if !status.success() {
            return Err(BenchError::Other(format!(
                "the writer's client exited with {status}"
            )));
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
