//! Snapshot progress: on a terminal a bar per table (rows, rate, ETA when the source has a
//! row estimate), otherwise a log line per table every 10 s. Reads the apply loop's counters;
//! the snapshot itself does not wait for it.
//!
//! Log lines and bars share stderr: while bars are shown, log lines are written through
//! `MultiProgress::suspend` so that they do not tear the bars (see `LogWriter`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing::info;

use tidewater_runtime::monitor::{Monitor, Phase};

static BARS: OnceLock<MultiProgress> = OnceLock::new();

const LOG_EVERY: Duration = Duration::from_secs(10);
const DRAW_EVERY: Duration = Duration::from_millis(200);

/// Shows snapshot progress for as long as the process runs.
pub fn spawn(monitor: Arc<Monitor>, terminal: bool) -> tokio::task::JoinHandle<()> {
    if terminal {
        let bars = BARS.get_or_init(MultiProgress::new).clone();
        tokio::spawn(draw_bars(monitor, bars))
    } else {
        tokio::spawn(log_lines(monitor))
    }
}

async fn draw_bars(monitor: Arc<Monitor>, multi: MultiProgress) {
    let rate = |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.0} rows/s", state.per_sec());
    };
    let known = ProgressStyle::with_template(
        "{prefix:<32} [{bar:30}] {human_pos:>11}/{human_len:11} {rate:>14}  ETA {eta}",
    )
    .expect("template")
    .with_key("rate", rate)
    .progress_chars("=> ");
    let unknown =
        ProgressStyle::with_template("{prefix:<32} {spinner} {human_pos:>11} rows {rate:>14}")
            .expect("template")
            .with_key("rate", rate);
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut tick = tokio::time::interval(DRAW_EVERY);
    loop {
        tick.tick().await;
        if monitor.phase().0 != Phase::Snapshot {
            for (_, bar) in std::mem::take(&mut bars) {
                bar.finish();
            }
            continue;
        }
        let estimates = monitor.estimates();
        for (table, copied) in monitor.stats.snapshot_copied() {
            let bar = bars.entry(table.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::no_length());
                bar.set_prefix(table.clone());
                bar.set_style(unknown.clone());
                bar
            });
            if let Some(&e) = estimates.get(&table) {
                if bar.length() != Some(e.max(copied)) {
                    bar.set_style(known.clone());
                    bar.set_length(e.max(copied));
                }
            }
            bar.set_position(copied);
        }
    }
}

async fn log_lines(monitor: Arc<Monitor>) {
    let mut last: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
    let mut tick = tokio::time::interval(LOG_EVERY);
    loop {
        tick.tick().await;
        if monitor.phase().0 != Phase::Snapshot {
            last.clear();
            continue;
        }
        let estimates = monitor.estimates();
        for (table, copied) in monitor.stats.snapshot_copied() {
            let (before, at) = last
                .get(&table)
                .copied()
                .unwrap_or((0, Instant::now() - LOG_EVERY));
            if copied == before {
                continue;
            }
            let rate = ((copied - before) as f64 / at.elapsed().as_secs_f64().max(1e-3)) as u64;
            match estimates.get(&table) {
                Some(&e) => info!(
                    table = %table,
                    rows = copied,
                    estimate = e,
                    percent = (copied * 100 / e.max(1)).min(100),
                    rows_per_sec = rate,
                    "snapshot progress"
                ),
                None => {
                    info!(table = %table, rows = copied, rows_per_sec = rate, "snapshot progress")
                }
            }
            last.insert(table, (copied, Instant::now()));
        }
    }
}

/// stderr for the log, drawn around the progress bars when there are any.
#[derive(Default)]
pub struct LogWriter {
    buf: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(&buf)),
            None => std::io::stderr().write_all(&buf),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogMakeWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter::default()
    }
}

/// The `tracing_subscriber` writer of every log line.
pub struct LogMakeWriter;
