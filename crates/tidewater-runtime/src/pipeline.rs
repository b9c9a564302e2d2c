//! One replication pipeline: source → apply loop → sink, restarted from the committed
//! position after a retryable failure (the same path as a process restart, so recovery is
//! exercised constantly rather than being a special case).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::apply::{run_apply, BatchOptions};
use tidewater_core::copy::ChunkSize;
use tidewater_core::stats::Stats;
use tidewater_core::ChunkedCopy;
use tidewater_core::{
    Error, ErrorKind, PipelineState, Result, Sink, Source, SourceContext, SourceDriver, TableId,
    TableSchema,
};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::monitor::{Monitor, Phase};
use crate::registry::{self, open_sink};
use crate::status_file::StatusPublisher;

/// Events in flight between source and apply loop. A `Changes` event holds up to 1024
/// changes or `apply::MAX_EVENT_BYTES` of them, so this bounds memory (at most ~64k changes
/// or ~32 MiB queued, whichever is less); small transactions take
/// three events each, so about 20 of them can queue up while a commit runs and then join
/// the next batch together (group commit needs them visible in the queue).
const EVENT_QUEUE: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An attempt that streamed this long resets the retry backoff.
const HEALTHY_ATTEMPT: Duration = Duration::from_secs(60);

/// Runs until `shutdown` becomes true (then returns Ok) or a fatal error.
pub async fn run(
    config: &Config,
    monitor: Arc<Monitor>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let result = run_pipeline(config, &monitor, shutdown)
        .await
        .map_err(|e| registry::explain_sink_error(&config.sink, e));
    monitor.set_phase(Phase::Stopping);
    if let Err(e) = &result {
        monitor.record_error(e);
    }
    result
}

async fn run_pipeline(
    config: &Config,
    monitor: &Arc<Monitor>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let driver = Arc::new(registry::driver(&config.source)?);
    // Source problems (unreachable, wal_level, no tables, ...) surface before the DuckDB file
    // is created, so a mistyped config leaves nothing behind. The first attempt reuses it.
    let connected = Some(driver.connect().await?);
    let opened = open_sink(&config.sink, config.source.kind(), config.apply.log_tables).await?;
    let sink = opened.sink;
    if let Some(metrics) = opened.metrics {
        monitor.set_sink_metrics(metrics);
    }
    // The status file and `/status` read the replica through its read side.
    let status = match opened.replica {
        Some(replica) => {
            monitor.set_replica(replica)?;
            Some(StatusPublisher::start(monitor.clone())?)
        }
        None => None,
    };
    let parts = Parts {
        driver,
        connected,
        sink,
        options: config.batch_options(),
        chunk_size: config.snapshot.chunk_size(),
    };
    let outcome = run_with(parts, monitor, shutdown).await;
    if let Some(status) = status {
        status.stop();
    }
    outcome
}

/// What one pipeline runs: a source driver, a sink, and how the apply loop batches for it.
pub struct Parts<D: SourceDriver> {
    pub driver: Arc<D>,
    /// The first attempt's source when it is already connected (`run` connects it before
    /// opening the sink); later attempts connect through `driver`.
    pub connected: Option<D::Stream>,
    pub sink: Box<dyn Sink>,
    pub options: BatchOptions,
    /// How large a chunk of the chunked initial snapshot may be (`[snapshot] chunk_rows`,
    /// `chunk_bytes`).
    pub chunk_size: ChunkSize,
}

/// The pipeline's attempts: each prepares the sink, reads its committed position and runs the
/// source from there into the apply loop. A retryable error after the first attempt has
/// streamed starts the next attempt (with backoff) from the position the sink committed;
/// `shutdown` ends it cleanly. Runs until shutdown (Ok) or a fatal error.
pub async fn run_with<D: SourceDriver + 'static>(
    parts: Parts<D>,
    monitor: &Arc<Monitor>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let Parts {
        driver,
        mut connected,
        mut sink,
        options,
        chunk_size,
    } = parts;
    let stats = monitor.stats.clone();
    let reporter = tokio::spawn(report_progress(stats.clone()));
    let mut backoff = Duration::from_secs(1);
    let mut ever_streamed = false;
    let outcome = loop {
        let source = connected.take();
        let attempt_started = std::time::Instant::now();
        let attempt = Attempt {
            driver: &driver,
            options,
            chunk_size,
            monitor,
        };
        let (returned, result) = attempt
            .run(source, sink, shutdown.clone(), &mut ever_streamed)
            .await;
        sink = returned;
        match result {
            Ok(()) => break Ok(()),
            Err(e) if e.kind == ErrorKind::Shutdown || *shutdown.borrow() => break Ok(()),
            Err(e) if e.is_retryable() && ever_streamed => {
                // An attempt that ran for a while was a recovery, not a failing loop: the next
                // interruption starts again with the shortest wait.
                if attempt_started.elapsed() >= HEALTHY_ATTEMPT {
                    backoff = Duration::from_secs(1);
                }
                monitor.record_error(&e);
                monitor.set_phase(Phase::Retrying);
                warn!(error = %e, position = stats.position().as_deref().unwrap_or("-"), retry_in = ?backoff, "replication interrupted; resuming from the committed position");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break Ok(()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                monitor
                    .restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                monitor.set_phase(Phase::Starting);
            }
            Err(e) => break Err(e),
        }
    };
    reporter.abort();
    if outcome.is_ok() {
        close_sink(sink).await;
        info!("stopped cleanly");
    }
    outcome
}

/// A clean stop leaves a self-contained destination (DuckDB: checkpointed). Committed data is
/// durable either way, so a failure is a warning naming what to keep.
async fn close_sink(mut sink: Box<dyn Sink>) {
    match tokio::task::spawn_blocking(move || sink.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "the replica file is not checkpointed: its committed changes are also in the .wal file next to it; keep the two together")
        }
        Err(e) => warn!(error = %e, "closing the sink"),
    }
}

/// One attempt's fixed inputs.
struct Attempt<'a, D: SourceDriver> {
    driver: &'a Arc<D>,
    options: BatchOptions,
    chunk_size: ChunkSize,
    monitor: &'a Arc<Monitor>,
}

impl<D: SourceDriver + 'static> Attempt<'_, D> {
    async fn run(
        &self,
        connected: Option<D::Stream>,
        sink: Box<dyn Sink>,
        mut shutdown: watch::Receiver<bool>,
        ever_streamed: &mut bool,
    ) -> (Box<dyn Sink>, Result<()>) {
        let monitor = self.monitor;
        let mut source = match connected {
            Some(s) => s,
            None => match self.driver.connect().await {
                Ok(s) => s,
                Err(e) => return (sink, Err(e)),
            },
        };
        let tables = source.tables();
        let mut sink = sink;
        // The sink blocks (BigQuery reads its tables through the runtime): off the runtime.
        let prepared = tokio::task::spawn_blocking(move || {
            let r = prepare(&mut *sink, tables).and_then(|prepared| {
                let progress = match sink.copies_in_chunks() {
                    true => Some((sink.copy_progress()?, sink.copies_beside())),
                    false => None,
                };
                Ok((prepared, progress))
            });
            (sink, r)
        })
        .await
        .expect("prepare task");
        let (mut sink, prepared) = prepared;
        let (prepared, progress) = match prepared {
            Ok(p) => p,
            Err(e) => return (sink, Err(e)),
        };
        let Prepared {
            state,
            backfill,
            replica_schemas,
            left_out,
            add_tables,
            layouts,
        } = prepared;
        let chunked = progress.map(|(progress, beside)| {
            monitor.stats.set_copy_state(&progress, Some(&beside));
            ChunkedCopy {
                size: self.chunk_size,
                progress,
            }
        });
        if !backfill.is_empty() {
            let names: Vec<String> = backfill.iter().map(|t| t.to_string()).collect();
            info!(tables = %names.join(", "), "selected tables the replica does not hold yet: their rows are copied while streaming");
        }
        *ever_streamed = true;
        let stats = &monitor.stats;
        match &state.position {
            Some(p) => {
                info!(position = %p, "resuming");
                stats.set_resumed_at(p);
                monitor.set_phase(Phase::Streaming);
                if chunked
                    .as_ref()
                    .is_some_and(|c| !c.progress.is_empty() && !c.finished())
                {
                    info!("the initial copy is under way: it continues while streaming");
                    let (monitor, driver, tables) =
                        (monitor.clone(), self.driver.clone(), source.tables());
                    tokio::spawn(async move {
                        monitor.set_estimates(driver.row_estimates(&tables).await);
                    });
                }
            }
            None => {
                info!("no committed position: taking the initial snapshot");
                monitor.set_phase(Phase::Snapshot);
                let (monitor, driver, tables) =
                    (monitor.clone(), self.driver.clone(), source.tables());
                tokio::spawn(async move {
                    monitor.set_estimates(driver.row_estimates(&tables).await);
                });
            }
        }

        let resnapshot_fix = sink.resnapshot_fix();
        let (events_tx, mut events_rx) = mpsc::channel(EVENT_QUEUE);
        let (ack_tx, ack_rx) = watch::channel(state.position.clone());
        let options = self.options;
        let handle = tokio::runtime::Handle::current();
        let apply_stats = stats.clone();
        if let Some(p) = &state.partial {
            info!(transaction = %p.position, changes = p.changes, "the replica holds the first changes of a transaction split into pieces (large_transaction = \"split\"): its replay continues after them");
        }
        let committed = state.clone();
        let apply = tokio::task::spawn_blocking(move || {
            let r = run_apply(
                &mut *sink,
                &mut events_rx,
                &ack_tx,
                options,
                &apply_stats,
                &handle,
                &committed,
            );
            (sink, r)
        });

        if state.position.is_none() {
            let mut first_ack = ack_rx.clone();
            let monitor = monitor.clone();
            tokio::spawn(async move {
                if let Ok(p) = first_ack.wait_for(Option::is_some).await {
                    // The first acknowledged position can be past the snapshot's own (what
                    // streamed after it may commit in the same batch): named for what it is.
                    info!(replica_at = %p.as_ref().map(|p| p.0.as_str()).unwrap_or(""), "initial snapshot committed (with what streamed after it in the same commit)");
                    monitor.set_phase(Phase::Streaming);
                }
            });
        }
        let ctx = SourceContext {
            resume: state.position,
            acknowledged: state.acknowledged,
            replica_id: state.replica_id,
            events: events_tx,
            acks: ack_rx,
            backfill,
            left_out,
            replica_schemas,
            add_tables,
            resnapshot_fix,
            unreplicated: stats.unreplicated.clone(),
            chunked,
            recopy: stats.recopy.clone(),
            layouts,
        };
        let source_result = tokio::select! {
            r = source.run(ctx) => r,
            _ = shutdown.changed() => Err(Error::shutdown()),
        };
        // The source (and its event sender) is gone: the apply loop commits what is complete,
        // abandons a partial transaction, and returns.
        drop(source);
        let (sink, apply_result) = apply.await.expect("apply task");
        let result = match (apply_result, source_result) {
            (Err(e), _) => {
                error!(error = %e, position = stats.position().as_deref().unwrap_or("-"), "apply failed");
                Err(e)
            }
            (Ok(()), r) => r,
        };
        (sink, result)
    }
}

/// What [`prepare`] found: the committed state and what the source is told about the held
/// tables (the fields of `SourceContext` of the same names).
struct Prepared {
    state: PipelineState,
    backfill: Vec<TableId>,
    replica_schemas: Vec<TableSchema>,
    left_out: Vec<TableId>,
    add_tables: bool,
    layouts: Option<BTreeMap<TableId, String>>,
}

/// Prepares the destination tables and reads the committed state. Past the initial snapshot,
/// a sink that tracks its tables prepares only those it holds; the other selected tables are
/// returned to be copied while streaming (their creation then commits with their rows).
/// Also returns the definitions the held tables were written with
/// (`SourceContext::replica_schemas`), the held tables that are not selected
/// (`SourceContext::left_out`), and their recorded layouts (`SourceContext::layouts`).
fn prepare(sink: &mut dyn Sink, tables: Vec<Arc<TableSchema>>) -> Result<Prepared> {
    let Some(held) = sink.replicated_tables()? else {
        sink.prepare(&tables)?;
        return Ok(Prepared {
            state: sink.state()?,
            backfill: Vec::new(),
            replica_schemas: Vec::new(),
            left_out: Vec::new(),
            add_tables: false,
            layouts: None,
        });
    };
    let state = sink.state()?;
    let layouts = sink.table_layouts()?;
    if state.position.is_none() {
        sink.prepare(&tables)?;
        // A new snapshot: layouts left by an earlier one describe nothing held.
        return Ok(Prepared {
            state,
            backfill: Vec::new(),
            replica_schemas: Vec::new(),
            left_out: Vec::new(),
            add_tables: true,
            layouts: layouts.map(|_| BTreeMap::new()),
        });
    }
    let left_out = held
        .iter()
        .filter(|id| !tables.iter().any(|t| t.id == **id))
        .cloned()
        .collect();
    let (present, missing): (Vec<_>, Vec<_>) =
        tables.into_iter().partition(|t| held.contains(&t.id));
    sink.prepare(&present)?;
    let mut stored = Vec::new();
    for t in &present {
        stored.extend(sink.replica_schema(&t.id)?);
    }
    let backfill = missing.iter().map(|t| t.id.clone()).collect();
    Ok(Prepared {
        state,
        backfill,
        replica_schemas: stored,
        left_out,
        add_tables: true,
        layouts,
    })
}

/// A log line every 10 s while changes flow: throughput and source-commit → replica-commit
/// latency of the transactions applied in that window.
async fn report_progress(stats: Arc<Stats>) {
    use std::sync::atomic::Ordering::Relaxed;
    const EVERY: Duration = Duration::from_secs(10);
    let mut last = (0, 0, 0);
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = (
            stats.rows_applied.load(Relaxed),
            stats.batches.load(Relaxed),
            stats.commit_us_total.load(Relaxed),
        );
        let lat = stats.take_latencies();
        let batches = now.1 - last.1;
        if now.0 != last.0 {
            info!(
                changes_per_sec = (now.0 - last.0) / EVERY.as_secs(),
                transactions = lat.count,
                batches,
                avg_commit_ms = (now.2 - last.2) / batches.max(1) / 1000,
                freshness_p50_ms = lat.p50_ms,
                freshness_p99_ms = lat.p99_ms,
                freshness_max_ms = lat.max_ms,
                "applied"
            );
        }
        last = now;
    }
}
