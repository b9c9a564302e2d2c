//! One replication pipeline: source → apply loop → sink, restarted from the committed
//! position after a retryable failure (the same path as a process restart, so recovery is
//! exercised constantly rather than being a special case).

use std::sync::Arc;
use std::time::Duration;

use tidewater_bigquery::{BigQueryOptions, BigQuerySink, Connection as BqConnection};
use tidewater_core::apply::{run_apply, BatchOptions};
use tidewater_core::stats::Stats;
use tidewater_core::{
    Error, ErrorKind, PipelineState, Result, Sink, Source, SourceContext, TableId, TableSchema,
};
use tidewater_duckdb::duckdb::Connection;
use tidewater_duckdb::{DuckDbOptions, DuckDbSink};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::monitor::{Monitor, Phase};
use crate::sources::{self, AnySource};
use crate::status_file::StatusPublisher;

pub const PIPELINE_NAME: &str = "default";
/// Events in flight between source and apply loop. A `Changes` event holds up to 1024
/// changes, so this bounds memory (at most ~64k changes queued); small transactions take
/// three events each, so about 20 of them can queue up while a commit runs and then join
/// the next batch together (group commit needs them visible in the queue).
const EVENT_QUEUE: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An attempt that streamed this long resets the retry backoff.
const HEALTHY_ATTEMPT: Duration = Duration::from_secs(60);

pub fn sink_options(config: &Config) -> DuckDbOptions {
    DuckDbOptions {
        path: config.sink.path.clone(),
        log_tables: config.apply.log_tables,
        pipeline: PIPELINE_NAME.into(),
        source_type: config.source.kind.clone(),
        threads: config.sink.threads,
        primary_key: config.sink.primary_key,
    }
}

pub fn bigquery_options(config: &Config) -> BigQueryOptions {
    let s = &config.sink;
    BigQueryOptions {
        connection: BqConnection {
            project: s.project.clone().unwrap_or_default(),
            dataset: s.dataset.clone().unwrap_or_default(),
            location: s.location.clone(),
            credentials: s.credentials.clone(),
            endpoint: s.endpoint.clone(),
        },
        pipeline: PIPELINE_NAME.into(),
        source_type: config.source.kind.clone(),
    }
}

/// Opens the configured sink. DuckDB also gives the connection the monitor reads the
/// replica through (status, `/query`); BigQuery has none yet.
async fn open_sink(config: &Config) -> Result<(Box<dyn Sink>, Option<Connection>)> {
    if config.sink.is_bigquery() {
        let sink = BigQuerySink::connect(bigquery_options(config)).await?;
        return Ok((Box::new(sink), None));
    }
    let opts = sink_options(config);
    let sink = tokio::task::spawn_blocking(move || DuckDbSink::open(opts))
        .await
        .map_err(|e| Error::sink(format!("opening the sink: {e}")))??;
    let reader = sink
        .connection()
        .try_clone()
        .map_err(|e| Error::sink(format!("opening a read connection: {e}")))?;
    Ok((Box::new(sink), Some(reader)))
}

/// How the apply loop batches for the configured sink: BigQuery merges at most every
/// `merge_interval_ms` (each MERGE is a DML job, and BigQuery limits those per table).
fn batch_options(config: &Config) -> BatchOptions {
    let mut options = BatchOptions {
        flush_interval: Duration::from_millis(config.apply.flush_interval_ms),
        max_batch_rows: config.apply.max_batch_rows,
        min_commit_interval: Duration::ZERO,
    };
    if config.sink.is_bigquery() {
        let merge = Duration::from_millis(config.sink.merge_interval_ms());
        options.flush_interval = merge;
        options.min_commit_interval = merge;
    }
    options
}

/// Runs until `shutdown` becomes true (then returns Ok) or a fatal error.
pub async fn run(
    config: &Config,
    monitor: Arc<Monitor>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let result = run_pipeline(config, &monitor, shutdown)
        .await
        .map_err(|e| with_disk_full_fix(e, config));
    monitor.set_phase(Phase::Stopping);
    if let Err(e) = &result {
        monitor.record_error(e);
    }
    result
}

/// A sink error caused by a full file system (DuckDB's message names the file it could not
/// write) gets what to do about it. A failed write fails its whole batch, so the replica stays
/// at the last committed batch and a later run resumes from there.
fn with_disk_full_fix(e: Error, config: &Config) -> Error {
    let full = ["No space left on device", "Disk quota exceeded"]
        .iter()
        .any(|m| e.message().contains(m));
    if !full || !matches!(e.kind, ErrorKind::Sink | ErrorKind::SinkRetryable) {
        return e;
    }
    let db = config.sink.path.display();
    Error::new(
        e.kind,
        format!(
            "{e}. The file system holding {db} is full; the replica stays at its last committed \
             batch. Fix: free space on that file system, or move {db} and {db}.wal (if present) \
             together to one with room and set sink.path to the new place; then `tidewater run` \
             resumes from the last committed batch"
        ),
    )
}

async fn run_pipeline(
    config: &Config,
    monitor: &Arc<Monitor>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let stats = monitor.stats.clone();
    // Source problems (unreachable, wal_level, no tables, ...) surface before the DuckDB file
    // is created, so a mistyped config leaves nothing behind. The first attempt reuses it.
    let mut connected = Some(sources::connect(config).await?);
    let (mut sink, reader) = open_sink(config).await?;
    // The status file and `/status` read the replica through DuckDB.
    let status = match reader {
        Some(reader) => {
            monitor.set_reader(reader)?;
            Some(StatusPublisher::start(monitor.clone())?)
        }
        None => None,
    };
    let reporter = tokio::spawn(report_progress(stats.clone()));
    let mut backoff = Duration::from_secs(1);
    let mut ever_streamed = false;
    let outcome = loop {
        let source = connected.take();
        let attempt_started = std::time::Instant::now();
        let (returned, result) = run_once(
            config,
            source,
            sink,
            monitor,
            shutdown.clone(),
            &mut ever_streamed,
        )
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
    if let Some(status) = status {
        status.stop();
    }
    reporter.abort();
    if outcome.is_ok() {
        info!("stopped cleanly");
    }
    outcome
}

async fn run_once(
    config: &Config,
    connected: Option<AnySource>,
    mut sink: Box<dyn Sink>,
    monitor: &Arc<Monitor>,
    mut shutdown: watch::Receiver<bool>,
    ever_streamed: &mut bool,
) -> (Box<dyn Sink>, Result<()>) {
    let mut source = match connected {
        Some(s) => s,
        None => match sources::connect(config).await {
            Ok(s) => s,
            Err(e) => return (sink, Err(e)),
        },
    };
    let tables = source.tables();
    let prepared = tokio::task::spawn_blocking(move || {
        let r = prepare(&mut *sink, tables);
        (sink, r)
    })
    .await
    .expect("prepare task");
    let (mut sink, prepared) = prepared;
    let (state, backfill, add_tables) = match prepared {
        Ok(p) => p,
        Err(e) => return (sink, Err(e)),
    };
    if !backfill.is_empty() {
        let names: Vec<String> = backfill.iter().map(|t| t.to_string()).collect();
        info!(tables = %names.join(", "), "selected tables the replica does not hold yet: their rows are copied while streaming");
    }
    *ever_streamed = true;
    let stats = &monitor.stats;
    match &state.position {
        Some(p) => {
            info!(position = %p, "resuming");
            monitor.set_phase(Phase::Streaming);
        }
        None => {
            info!("no committed position: taking the initial snapshot");
            monitor.set_phase(Phase::Snapshot);
            let (monitor, config, tables) = (monitor.clone(), config.clone(), source.tables());
            tokio::spawn(async move {
                monitor.set_estimates(crate::estimates::fetch(&config, &tables).await);
            });
        }
    }

    let (events_tx, mut events_rx) = mpsc::channel(EVENT_QUEUE);
    let (ack_tx, ack_rx) = watch::channel(state.position.clone());
    let options = batch_options(config);
    let handle = tokio::runtime::Handle::current();
    let apply_stats = stats.clone();
    let apply = tokio::task::spawn_blocking(move || {
        let r = run_apply(
            &mut *sink,
            &mut events_rx,
            &ack_tx,
            options,
            &apply_stats,
            &handle,
        );
        (sink, r)
    });

    if state.position.is_none() {
        let mut first_ack = ack_rx.clone();
        let monitor = monitor.clone();
        tokio::spawn(async move {
            if let Ok(p) = first_ack.wait_for(Option::is_some).await {
                info!(position = %p.as_ref().map(|p| p.0.as_str()).unwrap_or(""), "initial snapshot committed");
                monitor.set_phase(Phase::Streaming);
            }
        });
    }
    let ctx = SourceContext {
        resume: state.position,
        events: events_tx,
        acks: ack_rx,
        backfill,
        add_tables,
        unreplicated: stats.unreplicated.clone(),
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

/// Prepares the destination tables and reads the committed state. Past the initial snapshot,
/// a sink that tracks its tables prepares only those it holds; the other selected tables are
/// returned to be copied while streaming (their creation then commits with their rows).
fn prepare(
    sink: &mut dyn Sink,
    tables: Vec<Arc<TableSchema>>,
) -> Result<(PipelineState, Vec<TableId>, bool)> {
    let Some(held) = sink.replicated_tables()? else {
        sink.prepare(&tables)?;
        return Ok((sink.state()?, Vec::new(), false));
    };
    let state = sink.state()?;
    if state.position.is_none() {
        sink.prepare(&tables)?;
        return Ok((state, Vec::new(), true));
    }
    let (present, missing): (Vec<_>, Vec<_>) =
        tables.into_iter().partition(|t| held.contains(&t.id));
    sink.prepare(&present)?;
    Ok((state, missing.iter().map(|t| t.id.clone()).collect(), true))
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
