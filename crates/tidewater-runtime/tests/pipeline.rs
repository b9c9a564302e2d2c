//! The pipeline's attempts against a scripted source and a recording sink (no database): a
//! retry resumes from the position the sink committed, tables the sink does not hold yet are
//! handed to the source to copy while streaming (and only the held ones are prepared first),
//! and shutdown commits what is complete and abandons a partial transaction.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_core::apply::BatchOptions;
use tidewater_core::check::CheckItem;
use tidewater_core::stats::{now_us, Stats};
use tidewater_core::*;
use tidewater_runtime::monitor::Monitor;
use tidewater_runtime::pipeline::{run_with, Parts};
use tokio::sync::{watch, Notify};

/// Longest any step of a test may take.
const DEADLINE: Duration = Duration::from_secs(20);

fn table(name: &str) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new("s", name),
        columns: vec![Column {
            name: "id".into(),
            ty: ColumnType::Int32,
            nullable: false,
            source_type: "int4".into(),
        }],
        key: vec![0],
    })
}

fn pos(p: &str) -> Position {
    Position(p.into())
}

/// What the sink was asked to do, shared with the test.
#[derive(Default)]
struct SinkLog {
    log: Vec<String>,
    /// The committed position (what `state` returns, as a durable sink would).
    committed: Option<Position>,
}

struct RecordingSink {
    shared: Arc<Mutex<SinkLog>>,
    /// Notified after each commit.
    changed: Arc<Notify>,
    /// Tables the destination already holds (`None`: the sink does not track them).
    held: Option<BTreeSet<TableId>>,
}

impl RecordingSink {
    fn push(&self, line: String) {
        self.shared.lock().unwrap().log.push(line);
    }
}

impl Sink for RecordingSink {
    fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<()> {
        let names: Vec<String> = tables.iter().map(|t| t.id.to_string()).collect();
        self.push(format!("prepare [{}]", names.join(", ")));
        Ok(())
    }
    fn replicated_tables(&mut self) -> Result<Option<BTreeSet<TableId>>> {
        Ok(self.held.clone())
    }
    fn state(&mut self) -> Result<PipelineState> {
        Ok(PipelineState {
            position: self.shared.lock().unwrap().committed.clone(),
            ..Default::default()
        })
    }
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    fn write(&mut self, tx: &TxInfo, _: i64, changes: Vec<Change>) -> Result<()> {
        self.push(format!("write {} x{}", tx.position, changes.len()));
        Ok(())
    }
    fn truncate(&mut self, _: &TxInfo, _: &[Arc<TableSchema>]) -> Result<()> {
        Ok(())
    }
    fn commit(&mut self, position: &Position, _: i64) -> Result<()> {
        let mut s = self.shared.lock().unwrap();
        s.log.push(format!("commit {position}"));
        s.committed = Some(position.clone());
        self.changed.notify_one();
        Ok(())
    }
    fn rollback(&mut self) -> Result<()> {
        self.push("rollback".into());
        Ok(())
    }
}

/// What one attempt of the scripted source does after recording its context.
enum Step {
    /// Sends these transactions, waits until the sink has committed each, then fails with a
    /// retryable error (a lost connection).
    CommitThenFail(Vec<&'static str>),
    /// Sends these whole transactions, then the first half of one more (no commit), signals
    /// `sent`, and waits for the end.
    CommitThenPartial(Vec<&'static str>, &'static str),
}

/// What each attempt saw: its resume position, the tables to copy while streaming, and
/// whether the sink takes tables in while streaming.
type Seen = (Option<Position>, Vec<TableId>, bool);

struct Script {
    tables: Vec<Arc<TableSchema>>,
    steps: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<Seen>>,
    sent: Notify,
}

struct ScriptedDriver(Arc<Script>);
struct ScriptedSource(Arc<Script>);
struct NoReader;

impl SourceDriver for ScriptedDriver {
    type Stream = ScriptedSource;
    type Reader = NoReader;
    async fn connect(&self) -> Result<ScriptedSource> {
        Ok(ScriptedSource(self.0.clone()))
    }
    async fn check(&self, _copy_readers: usize) -> Vec<CheckItem> {
        Vec::new()
    }
    async fn row_estimates(&self, _: &[Arc<TableSchema>]) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    async fn reader(&self, _: &[String]) -> Result<NoReader> {
        Ok(NoReader)
    }
}

impl ConsistentReader for NoReader {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        Vec::new()
    }
    async fn begin(&mut self) -> Result<Position> {
        Ok(pos("0"))
    }
    async fn end(&mut self) -> Result<()> {
        Ok(())
    }
    async fn read<C: RowConsumer>(
        &mut self,
        _: usize,
        _: Option<&[Vec<Value>]>,
        _: &mut C,
    ) -> Result<u64> {
        Ok(0)
    }
    fn reached(&self, _: &Position, _: &Position) -> bool {
        true
    }
}

impl ScriptedSource {
    async fn send_tx(&self, ctx: &SourceContext, p: &str, commit: bool) -> Result<()> {
        let closed = |_| Error::source_retryable("apply loop gone");
        let tx = TxInfo {
            position: pos(p),
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        };
        ctx.events
            .send(SourceEvent::Begin(tx))
            .await
            .map_err(closed)?;
        let change = Change {
            table: self.0.tables[0].clone(),
            kind: ChangeKind::Insert,
            row: vec![Value::text("1")],
            old: None,
        };
        ctx.events
            .send(SourceEvent::Changes(vec![change]))
            .await
            .map_err(closed)?;
        if commit {
            ctx.events.send(SourceEvent::Commit).await.map_err(closed)?;
        }
        Ok(())
    }
}

impl Source for ScriptedSource {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.0.tables.clone()
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        self.0.seen.lock().unwrap().push((
            ctx.resume.clone(),
            ctx.backfill.clone(),
            ctx.add_tables,
        ));
        let step = self.0.steps.lock().unwrap().pop_front();
        let Some(step) = step else {
            // An attempt the script did not plan: stream nothing.
            return std::future::pending().await;
        };
        match step {
            Step::CommitThenFail(txs) => {
                for p in txs {
                    self.send_tx(&ctx, p, true).await?;
                    let mut acks = ctx.acks.clone();
                    acks.wait_for(|a| a.as_ref() == Some(&pos(p)))
                        .await
                        .map_err(|_| Error::source_retryable("acks gone"))?;
                }
                Err(Error::source_retryable("connection lost (scripted)"))
            }
            Step::CommitThenPartial(txs, partial) => {
                for p in &txs {
                    self.send_tx(&ctx, p, true).await?;
                }
                let mut acks = ctx.acks.clone();
                let last = pos(txs.last().expect("at least one transaction"));
                acks.wait_for(|a| a.as_ref() == Some(&last))
                    .await
                    .map_err(|_| Error::source_retryable("acks gone"))?;
                self.send_tx(&ctx, partial, false).await?;
                self.0.sent.notify_one();
                std::future::pending().await
            }
        }
    }
}

struct Rig {
    script: Arc<Script>,
    sink: Arc<Mutex<SinkLog>>,
    sink_changed: Arc<Notify>,
    monitor: Arc<Monitor>,
}

fn rig(
    tables: Vec<Arc<TableSchema>>,
    steps: Vec<Step>,
    committed: Option<Position>,
    held: Option<BTreeSet<TableId>>,
) -> (Rig, Parts<ScriptedDriver>) {
    let script = Arc::new(Script {
        tables,
        steps: Mutex::new(steps.into()),
        seen: Mutex::default(),
        sent: Notify::new(),
    });
    let sink = Arc::new(Mutex::new(SinkLog {
        log: Vec::new(),
        committed,
    }));
    let sink_changed = Arc::new(Notify::new());
    let monitor = Arc::new(Monitor::new(
        Arc::new(Stats::default()),
        "scripted",
        PathBuf::new(),
    ));
    let parts = Parts {
        driver: Arc::new(ScriptedDriver(script.clone())),
        connected: None,
        sink: Box::new(RecordingSink {
            shared: sink.clone(),
            changed: sink_changed.clone(),
            held,
        }),
        options: BatchOptions {
            flush_interval: Duration::from_millis(10),
            ..BatchOptions::default()
        },
        chunk_size: tidewater_core::copy::ChunkSize::default(),
    };
    (
        Rig {
            script,
            sink,
            sink_changed,
            monitor,
        },
        parts,
    )
}

impl Rig {
    fn log(&self) -> Vec<String> {
        self.sink.lock().unwrap().log.clone()
    }
    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_resumes_from_the_committed_position() {
    let (rig, parts) = rig(
        vec![table("t")],
        vec![
            Step::CommitThenFail(vec!["1", "2"]),
            Step::CommitThenFail(vec!["3"]),
        ],
        Some(pos("0")),
        None,
    );
    let (_stop, stop_rx) = watch::channel(false);
    let monitor = rig.monitor.clone();
    let run = tokio::spawn(async move { run_with(parts, &monitor, stop_rx).await });
    // The second attempt's commit (after the first attempt failed and the pipeline waited
    // out its backoff).
    tokio::time::timeout(DEADLINE, async {
        while !rig.log().iter().any(|l| l == "commit 3") {
            rig.sink_changed.notified().await;
        }
    })
    .await
    .expect("the second attempt commits within the deadline");
    run.abort();
    let seen = rig.seen();
    assert_eq!(seen[0].0, Some(pos("0")), "{seen:?}");
    assert_eq!(
        seen[1].0,
        Some(pos("2")),
        "the second attempt resumes at the sink's committed position: {seen:?}"
    );
    let log = rig.log();
    let commits: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("commit"))
        .collect();
    assert_eq!(
        commits,
        ["commit 1", "commit 2", "commit 3"],
        "each once: {log:?}"
    );
    assert_eq!(
        rig.monitor
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_the_sink_does_not_hold_are_copied_while_streaming_and_not_prepared_first() {
    let (held, missing) = (table("held"), table("new"));
    let (rig, parts) = rig(
        vec![held.clone(), missing.clone()],
        vec![Step::CommitThenPartial(vec!["1"], "2")],
        Some(pos("0")),
        Some(BTreeSet::from([held.id.clone()])),
    );
    let (stop, stop_rx) = watch::channel(false);
    let monitor = rig.monitor.clone();
    let run = tokio::spawn(async move { run_with(parts, &monitor, stop_rx).await });
    tokio::time::timeout(DEADLINE, rig.script.sent.notified())
        .await
        .expect("the source streams within the deadline");
    stop.send(true).unwrap();
    tokio::time::timeout(DEADLINE, run)
        .await
        .expect("stops within the deadline")
        .unwrap()
        .unwrap();
    let log = rig.log();
    assert_eq!(
        log[0], "prepare [s.held]",
        "only the held table is prepared before the stream: {log:?}"
    );
    let seen = rig.seen();
    assert_eq!(seen, vec![(Some(pos("0")), vec![missing.id.clone()], true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_snapshot_prepares_every_table_and_backfills_none() {
    let (a, b) = (table("a"), table("b"));
    let (rig, parts) = rig(
        vec![a.clone(), b.clone()],
        vec![Step::CommitThenPartial(vec!["1"], "2")],
        None,
        Some(BTreeSet::new()),
    );
    let (stop, stop_rx) = watch::channel(false);
    let monitor = rig.monitor.clone();
    let run = tokio::spawn(async move { run_with(parts, &monitor, stop_rx).await });
    tokio::time::timeout(DEADLINE, rig.script.sent.notified())
        .await
        .expect("the source streams within the deadline");
    stop.send(true).unwrap();
    tokio::time::timeout(DEADLINE, run)
        .await
        .expect("stops within the deadline")
        .unwrap()
        .unwrap();
    assert_eq!(rig.log()[0], "prepare [s.a, s.b]");
    assert_eq!(rig.seen(), vec![(None, Vec::new(), true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_is_complete_and_abandons_a_partial_transaction() {
    let (rig, parts) = rig(
        vec![table("t")],
        vec![Step::CommitThenPartial(vec!["1", "2"], "3")],
        Some(pos("0")),
        None,
    );
    let (stop, stop_rx) = watch::channel(false);
    let monitor = rig.monitor.clone();
    let run = tokio::spawn(async move { run_with(parts, &monitor, stop_rx).await });
    tokio::time::timeout(DEADLINE, rig.script.sent.notified())
        .await
        .expect("the source streams within the deadline");
    stop.send(true).unwrap();
    let result = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("stops within the deadline")
        .unwrap();
    assert!(
        result.is_ok(),
        "a requested stop is not an error: {result:?}"
    );
    let log = rig.log();
    assert_eq!(
        rig.sink.lock().unwrap().committed,
        Some(pos("2")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l == "commit 3"),
        "the partial transaction must not commit: {log:?}"
    );
    assert_eq!(rig.seen().len(), 1, "no retry after a requested stop");
}
