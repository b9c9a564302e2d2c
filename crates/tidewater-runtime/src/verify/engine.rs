//! One verification: the source read at a consistent snapshot and compared, table by table,
//! with the replica once the replica holds everything up to that snapshot; then, while `run`
//! moves the replica, the keys that differed are read again at newer snapshots (a key can
//! differ only because it changed after a snapshot) and only keys that differ in every round
//! are reported. Source reading and the replica's comparison (`tidewater_core::replica::Comparison`) overlap: rows flow through a small
//! channel to a blocking thread.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tidewater_core::stats::Stats;
use tidewater_core::{ConsistentReader, Error, Position, Result, RowConsumer, SourceDriver, Value};
use tokio::sync::mpsc;
use tracing::info;

use super::report::VerifyReport;
use crate::config::Config;
use crate::config::PIPELINE_NAME;
use crate::registry::{self, AnyReader};
use tidewater_core::replica::{Comparison, Pass};

/// Re-check rounds after the first comparison (live only).
const RECHECK_ROUNDS: u32 = 3;
/// Keys looked up at the source per query in a re-check.
const KEYS_PER_LOOKUP: u64 = 1000;
/// More differing keys than this in one table are reported without re-checking them.
const RECHECK_MAX: u64 = 100_000;
/// How long the replica may take to reach a snapshot's position.
const REACH_TIMEOUT: Duration = Duration::from_secs(300);
const REACH_POLL: Duration = Duration::from_millis(50);
/// How often a remote replica's stored position is read (each read is a billed query).
const REMOTE_POLL: Duration = Duration::from_secs(1);
/// Chunks in flight between the source reader and the comparison.
const IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VerifyRequest {
    /// `schema.table` globs narrowing the replicated tables (empty: all).
    #[serde(default)]
    pub tables: Vec<String>,
    pub max_examples: usize,
}

/// Where the replica's progress comes from.
pub enum Replica {
    /// Nobody writes the file: compared as it is, once.
    Stopped,
    /// `run` applies changes (this process): wait for it to pass each snapshot.
    Live(Arc<Stats>),
    /// A remote replica that a `run` elsewhere may be writing: its stored position is the
    /// only sign of progress. Each wait ends when the position reaches the snapshot, or has
    /// stood still for `settle` (nobody is writing, or the source had nothing more to send:
    /// a stored position is a transaction's, and an idle source's snapshot lies past it).
    /// The keys that differ are re-checked as when live.
    Remote { settle: Duration },
}

/// The comparer, used from blocking threads one call at a time, and the pace source rows
/// are read at.
#[derive(Clone)]
struct Duck(Arc<Mutex<Box<dyn Comparison>>>, Option<Arc<Pacer>>);

impl Duck {
    fn lock(&self) -> MutexGuard<'_, Box<dyn Comparison>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Comparison) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me.lock().as_mut()))
            .await
            .map_err(|e| Error::sink(format!("verify: comparison task failed: {e}")))?
    }
}

/// Sends source rows to the comparison thread, at the pace of the verification.
struct ToDuck(mpsc::Sender<Vec<Vec<Value>>>, Option<Arc<Pacer>>);

impl RowConsumer for ToDuck {
    async fn rows(&mut self, rows: Vec<Vec<Value>>) -> Result<()> {
        let n = rows.len() as u64;
        self.0
            .send(rows)
            .await
            .map_err(|_| Error::sink("verify: the comparison stopped"))?;
        if let Some(pacer) = &self.1 {
            pacer.read(n).await;
        }
        Ok(())
    }
}

/// At most `rows_per_second` source rows over a whole verification (every table and
/// re-check): after each chunk, reading waits until the rows read so far are due. A chunk is
/// read at full speed, so the rate holds on average, over seconds; memory is unchanged (the
/// source's chunks and the in-flight channel bound it).
struct Pacer {
    rows_per_second: u64,
    started: Instant,
    rows: std::sync::atomic::AtomicU64,
}

impl Pacer {
    async fn read(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let rows = self.rows.fetch_add(n, Relaxed) + n;
        let due = Duration::from_secs_f64(rows as f64 / self.rows_per_second as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// Compares the source with the replica; `max_rows_per_second` paces the source reads
/// (continuous verification), `None` reads as fast as the comparison goes.
pub async fn verify(
    config: &Config,
    comparer: Box<dyn Comparison>,
    replica: Replica,
    req: &VerifyRequest,
    max_rows_per_second: Option<u64>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let mut source = registry::driver(&config.source)?
        .reader(&req.tables)
        .await?;
    if source.tables().is_empty() {
        return Err(Error::config(format!(
            "no replicated table matches --tables {:?} (source.tables = {:?})",
            req.tables,
            config.source.tables()
        )));
    }
    let pacer = max_rows_per_second.map(|rows_per_second| {
        Arc::new(Pacer {
            rows_per_second: rows_per_second.max(1),
            started: Instant::now(),
            rows: Default::default(),
        })
    });
    let duck = Duck(Arc::new(Mutex::new(comparer)), pacer);
    let schemas = source.tables();
    let mut indexes = Vec::with_capacity(schemas.len());
    for s in schemas {
        indexes.push(duck.call(move |c| c.add_table(s)).await?);
    }
    let mut report = VerifyReport {
        live: matches!(replica, Replica::Live(_)),
        remote: matches!(replica, Replica::Remote { .. }),
        rounds: 1,
        ..VerifyReport::default()
    };

    let position = source.begin().await?;
    let (replica_position, reached) = wait_for(&duck, &source, &replica, &position).await?;
    info!(source = %position, replica = replica_position.as_deref().unwrap_or("-"), "verify: comparing");
    for &i in &indexes {
        if !duck.call(move |c| Ok(c.comparable(i))).await? {
            continue;
        }
        duck.call(move |c| c.start(i, Pass::First)).await?;
        report.rows += stream(&mut source, &duck, i, None).await?;
        duck.call(|c| c.finish()).await?;
    }
    source.end().await?;
    report.source_position = position.0;
    report.replica_position = replica_position;

    if !matches!(replica, Replica::Stopped) {
        for _ in 0..RECHECK_ROUNDS {
            let mut differing = Vec::new();
            for &i in &indexes {
                let n = duck.call(move |c| c.differences(i)).await?;
                if n > 0 {
                    differing.push((i, n));
                }
            }
            if differing.is_empty() {
                break;
            }
            report.rounds += 1;
            // The replica's rows of the differing keys before the snapshot, so that the round
            // can compare the replica as of the snapshot (compare/as_of.rs in the DuckDB sink).
            let mut based = Vec::new();
            for &(i, n) in &differing {
                let keyed = source.tables()[i].has_key();
                if keyed && n <= RECHECK_MAX {
                    let pipeline = PIPELINE_NAME;
                    if duck.call(move |c| c.recheck_base(i, pipeline)).await? {
                        based.push(i);
                    }
                }
            }
            let position = source.begin().await?;
            wait_for(&duck, &source, &replica, &position).await?;
            for &i in &based {
                let later = duck.call(move |c| c.recheck_later(i)).await?;
                // Ordinals follow the source's commit order and the snapshot holds a prefix
                // of it: the last transaction it holds is where the prefix ends.
                let cutoff = later
                    .iter()
                    .take_while(|(_, p)| source.reached(&position, &Position(p.clone())))
                    .last()
                    .map_or(i64::MIN, |(ordinal, _)| *ordinal);
                duck.call(move |c| c.recheck_as_of(i, cutoff)).await?;
            }
            info!(source = %position, tables = differing.len(), as_of = based.len(), "verify: re-checking differences");
            for (i, _) in differing {
                recheck(&mut source, &duck, i, &mut report).await?;
            }
            source.end().await?;
        }
    }

    for &i in &indexes {
        let n = req.max_examples;
        report
            .tables
            .push(duck.call(move |c| c.result(i, n)).await?);
    }
    if !reached && report.differences() > 0 && matches!(replica, Replica::Remote { .. }) {
        report.notes.push(format!(
            "the replica's stored position ({}) had not reached the source snapshot ({}) when \
             it was compared: if `tidewater run` is stopped, changes made at the source since \
             count as differences; start it to catch up and verify again",
            report.replica_position.as_deref().unwrap_or("none"),
            report.source_position
        ));
    } else if !reached && report.differences() > 0 {
        report.notes.push(format!(
            "the replica was stopped at {} and the source snapshot is at {}: changes made at the \
             source since `run` stopped, if any, count as differences; start `tidewater run` to \
             catch up and verify again (verify also works while run runs)",
            report.replica_position.as_deref().unwrap_or("no position"),
            report.source_position
        ));
    }
    report.seconds = started.elapsed().as_secs_f64();
    info!(
        rows = report.rows,
        seconds = format!("{:.1}", report.seconds),
        rows_per_sec = report.rows_per_sec(),
        differences = report.differences(),
        "verify done"
    );
    Ok(report)
}

/// Reads the differing keys of table `i` again at the open snapshot.
async fn recheck(
    source: &mut AnyReader,
    duck: &Duck,
    i: usize,
    report: &mut VerifyReport,
) -> Result<()> {
    let keyed = source.tables()[i].has_key();
    if !keyed {
        duck.call(move |c| c.start(i, Pass::Rescan)).await?;
        stream(source, duck, i, None).await?;
        return duck.call(|c| c.finish()).await;
    }
    let total = duck.call(move |c| c.recheck_prepare(i)).await?;
    if total > RECHECK_MAX {
        report.notes.push(format!(
            "{}: {total} keys differ, too many to re-check; some may have changed after the snapshot",
            source.tables()[i].id
        ));
        return Ok(());
    }
    duck.call(move |c| c.start(i, Pass::Recheck)).await?;
    let mut from = 1;
    while from <= total {
        let to = (from + KEYS_PER_LOOKUP - 1).min(total);
        let keys = duck.call(move |c| c.recheck_keys(i, from, to)).await?;
        stream(source, duck, i, Some(&keys)).await?;
        duck.call(move |c| c.recheck_batch(from, to)).await?;
        from = to + 1;
    }
    duck.call(move |c| c.recheck_done(i)).await
}

/// Streams table `i` (or the rows of `keys`) from the source into the comparison.
async fn stream(
    source: &mut AnyReader,
    duck: &Duck,
    i: usize,
    keys: Option<&[Vec<Value>]>,
) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<Vec<Vec<Value>>>(IN_FLIGHT);
    let d = duck.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut c = d.lock();
        while let Some(rows) = rx.blocking_recv() {
            c.rows(&rows)?;
        }
        Ok::<_, Error>(())
    });
    let mut out = ToDuck(tx, duck.1.clone());
    let read = source.read(i, keys, &mut out).await;
    drop(out);
    let consumed = consumer
        .await
        .map_err(|e| Error::sink(format!("verify: comparison task failed: {e}")))?;
    // A comparison error closes the channel: it is the cause, report it first.
    consumed?;
    read
}

/// Waits (live) until the replica holds everything up to `target`. Returns the replica's
/// position and whether it has reached `target`.
async fn wait_for(
    duck: &Duck,
    source: &AnyReader,
    replica: &Replica,
    target: &Position,
) -> Result<(Option<String>, bool)> {
    let deadline = Instant::now() + REACH_TIMEOUT;
    // The remote position last read, and since when it has stood there.
    let mut standing: Option<(Option<String>, Instant)> = None;
    loop {
        let stored = duck.call(|c| c.replica_position(PIPELINE_NAME)).await?;
        let mut candidates: Vec<String> = stored.iter().cloned().collect();
        if let Replica::Live(stats) = replica {
            candidates.extend(stats.caught_up());
        }
        let reached = candidates
            .iter()
            .any(|p| source.reached(&Position(p.clone()), target));
        let stats = match replica {
            Replica::Stopped => return Ok((stored, reached)),
            Replica::Remote { settle } => {
                let since = match &standing {
                    Some((seen, since)) if *seen == stored => *since,
                    _ => standing.insert((stored.clone(), Instant::now())).1,
                };
                if reached || since.elapsed() >= *settle || Instant::now() >= deadline {
                    return Ok((stored, reached));
                }
                tokio::time::sleep(REMOTE_POLL).await;
                continue;
            }
            Replica::Live(stats) => stats,
        };
        if reached {
            return Ok((stats.caught_up().or(stored), true));
        }
        if Instant::now() >= deadline {
            return Err(Error::sink(format!(
                "verify: the replica has not reached the source position {target} within {} s \
                 (it is at {}); is `tidewater run` streaming?",
                REACH_TIMEOUT.as_secs(),
                stats
                    .caught_up()
                    .or(stored)
                    .as_deref()
                    .unwrap_or("no position")
            )));
        }
        tokio::time::sleep(REACH_POLL).await;
    }
}
