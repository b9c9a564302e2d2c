//! The apply loop's batching contract, against a sink that records what it is asked to do.

use std::sync::Arc;
use std::time::Duration;

use tidewater_core::apply::{self, run_apply, AckReceiver, BatchOptions, CopyBatch};
use tidewater_core::split;
use tidewater_core::stats::{self, Stats};
use tidewater_core::*;
use tokio::sync::{mpsc, watch};

#[derive(Default)]
struct Recorder {
    log: Vec<String>,
    open: bool,
    fail_commit: bool,
}

impl Sink for Recorder {
    fn prepare(&mut self, _: &[Arc<TableSchema>]) -> Result<()> {
        Ok(())
    }
    fn state(&mut self) -> Result<PipelineState> {
        Ok(PipelineState::default())
    }
    fn begin(&mut self) -> Result<()> {
        assert!(!self.open, "begin inside an open batch");
        self.open = true;
        self.log.push("begin".into());
        Ok(())
    }
    fn write(&mut self, tx: &TxInfo, first: i64, changes: Vec<Change>) -> Result<()> {
        assert!(self.open);
        self.log
            .push(format!("write {} #{first} x{}", tx.position, changes.len()));
        Ok(())
    }
    fn truncate(&mut self, tx: &TxInfo, t: &[Arc<TableSchema>]) -> Result<()> {
        self.log
            .push(format!("truncate {} x{}", tx.position, t.len()));
        Ok(())
    }
    fn commit(&mut self, position: &Position, _: i64) -> Result<()> {
        if self.fail_commit {
            return Err(Error::sink("disk full"));
        }
        self.open = false;
        self.log.push(format!("commit {position}"));
        Ok(())
    }
    fn rollback(&mut self) -> Result<()> {
        self.open = false;
        self.log.push("rollback".into());
        Ok(())
    }
    fn record_ack(&mut self, position: &Position) -> Result<()> {
        let at = if self.open { "with the batch" } else { "alone" };
        self.log.push(format!("record {position} {at}"));
        Ok(())
    }
    fn write_progress(&mut self, _: &[tidewater_core::CopyProgress]) -> Result<()> {
        Ok(())
    }
    fn splits_transactions(&self) -> bool {
        true
    }
    fn record_partial(&mut self, p: &PartialTx) -> Result<()> {
        assert!(self.open);
        self.log
            .push(format!("partial {} after {}", p.position, p.changes));
        Ok(())
    }
}

fn table() -> Arc<TableSchema> {
    table_named("t")
}

fn table_named(name: &str) -> Arc<TableSchema> {
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

fn changes(n: usize) -> SourceEvent {
    changes_of(&table(), n)
}

fn changes_of(t: &Arc<TableSchema>, n: usize) -> SourceEvent {
    SourceEvent::Changes(
        (0..n)
            .map(|i| Change {
                table: t.clone(),
                kind: ChangeKind::Insert,
                row: vec![Value::text(&i.to_string())],
                old: None,
            })
            .collect(),
    )
}

/// A transaction that committed at the source just now.
fn tx(events: &mut Vec<SourceEvent>, pos: &str, chunks: &[usize]) {
    tx_at(events, pos, chunks, stats::now_us());
}

/// A transaction from a source without a backlog signal.
fn tx_at(events: &mut Vec<SourceEvent>, pos: &str, chunks: &[usize], commit_time_us: i64) {
    tx_with(events, pos, chunks, commit_time_us, Backlog::Unknown);
}

fn tx_with(
    events: &mut Vec<SourceEvent>,
    pos: &str,
    chunks: &[usize],
    commit_time_us: i64,
    backlog: Backlog,
) {
    events.push(SourceEvent::Begin(TxInfo {
        position: Position(pos.into()),
        commit_time_us,
        backlog,
    }));
    for &n in chunks {
        events.push(changes(n));
    }
    events.push(SourceEvent::Commit);
}

/// Feeds all events at once (so the loop sees a busy source), then closes the channel.
fn apply(
    sink: &mut Recorder,
    events: Vec<SourceEvent>,
    options: BatchOptions,
) -> (Result<()>, Option<Position>) {
    apply_after(sink, events, options, &PipelineState::default())
}

/// [`apply`] to a sink whose committed state is `committed`.
fn apply_after(
    sink: &mut Recorder,
    events: Vec<SourceEvent>,
    options: BatchOptions,
    committed: &PipelineState,
) -> (Result<()>, Option<Position>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    for e in events {
        tx.try_send(e).unwrap();
    }
    drop(tx);
    let (ack_tx, ack_rx) = watch::channel(None);
    let r = run_apply(
        sink,
        &mut rx,
        &ack_tx,
        options,
        &Stats::default(),
        rt.handle(),
        committed,
    );
    let acked = ack_rx.borrow().clone();
    (r, acked)
}

const LONG: BatchOptions = BatchOptions {
    flush_interval: Duration::from_secs(60),
    max_batch_rows: 1000,
    max_batch_bytes: usize::MAX,
    max_batch_tables: usize::MAX,
    min_commit_interval: Duration::ZERO,
    copy_commit_interval: Duration::ZERO,
    copy_commit_burst: 0,
    copy_batch: None,
    split_rows: None,
};

#[test]
fn batches_take_what_is_queued_and_end_at_max_rows() {
    let mut events = Vec::new();
    tx(&mut events, "1", &[5]);
    tx(&mut events, "2", &[400, 300]);
    tx(&mut events, "3", &[400]);
    tx(&mut events, "4", &[10]);
    let mut sink = Recorder::default();
    let (r, acked) = apply(&mut sink, events, LONG);
    r.unwrap();
    // Everything is queued up front: the batch takes whole transactions until it holds
    // max_batch_rows, and the last one commits when the queue is empty.
    assert_eq!(sink.log.join("; "), "begin; write 1 #0 x5; write 2 #0 x400; write 2 #400 x300; write 3 #0 x400; commit 3; begin; write 4 #0 x10; commit 4");
    assert_eq!(acked, Some(Position("4".into())));
}

/// Estimated bytes of the changes in `events` (`apply::change_bytes`).
fn bytes_of(events: &[SourceEvent]) -> usize {
    events
        .iter()
        .map(|e| match e {
            SourceEvent::Changes(c) => c.iter().map(apply::change_bytes).sum(),
            _ => 0,
        })
        .sum()
}

#[test]
fn batches_end_at_max_bytes_too() {
    let mut events = Vec::new();
    tx(&mut events, "1", &[5]);
    tx(&mut events, "2", &[400, 300]);
    let limit = bytes_of(&events);
    tx(&mut events, "3", &[400]);
    tx(&mut events, "4", &[10]);
    let options = BatchOptions {
        max_batch_rows: usize::MAX,
        max_batch_bytes: limit,
        ..LONG
    };
    let mut sink = Recorder::default();
    let (r, acked) = apply(&mut sink, events, options);
    r.unwrap();
    // The first batch reaches max_batch_bytes with transaction 2 (at its boundary, never
    // inside it); the rest stays below it and commits when the queue is empty.
    assert_eq!(sink.log.join("; "), "begin; write 1 #0 x5; write 2 #0 x400; write 2 #400 x300; commit 2; begin; write 3 #0 x400; write 4 #0 x10; commit 4");
    assert_eq!(acked, Some(Position("4".into())));
}

#[test]
fn batches_end_at_max_tables_too() {
    let mut events = Vec::new();
    // Transactions on tables a, b, a, c, d: the batch reaches two tables with the second
    // transaction and commits at its boundary; a transaction on a table the batch already
    // touched does not count again.
    // One transaction touching three tables (the last) commits whole: the bound only ever
    // ends a batch at a transaction boundary.
    for (pos, names) in [
        ("1", &["a"][..]),
        ("2", &["b"]),
        ("3", &["a"]),
        ("4", &["c"]),
        ("5", &["d"]),
        ("6", &["e", "f", "g"]),
    ] {
        events.push(SourceEvent::Begin(TxInfo {
            position: Position(pos.into()),
            commit_time_us: stats::now_us(),
            backlog: Backlog::Unknown,
        }));
        for name in names {
            events.push(changes_of(&table_named(name), 1));
        }
        events.push(SourceEvent::Commit);
    }
    let options = BatchOptions {
        max_batch_tables: 2,
        ..LONG
    };
    let mut sink = Recorder::default();
    let (r, acked) = apply(&mut sink, events, options);
    r.unwrap();
    assert_eq!(sink.log.join("; "), "begin; write 1 #0 x1; write 2 #0 x1; commit 2; begin; write 3 #0 x1; write 4 #0 x1; commit 4; begin; write 5 #0 x1; write 6 #0 x1; write 6 #1 x1; write 6 #2 x1; commit 6");
    assert_eq!(acked, Some(Position("6".into())));
}

#[test]
fn a_change_is_estimated_by_its_values() {
    let narrow = match changes(1) {
        SourceEvent::Changes(c) => apply::change_bytes(&c[0]),
        _ => unreachable!(),
    };
    let wide = Change {
        table: table(),
        kind: ChangeKind::Update,
        row: vec![Value::text(&"x".repeat(2048))],
        old: Some(vec![Value::text("1")]),
    };
    assert!(apply::change_bytes(&wide) >= narrow + 2048);
}

#[test]
fn a_partial_transaction_is_never_committed() {
    let mut events = Vec::new();
    tx(&mut events, "1", &[5]);
    events.push(SourceEvent::Begin(TxInfo {
        position: Position("2".into()),
        commit_time_us: 0,
        backlog: Backlog::Unknown,
    }));
    events.push(changes(5));
    // Batches of one transaction: the first commits although the second is already queued.
    let options = BatchOptions {
        max_batch_rows: 5,
        ..LONG
    };
    let mut sink = Recorder::default();
    let (r, acked) = apply(&mut sink, events, options);
    r.unwrap();
    assert_eq!(
        sink.log.join("; "),
        "begin; write 1 #0 x5; commit 1; begin; write 2 #0 x5; rollback"
    );
    assert_eq!(
        acked,
        Some(Position("1".into())),
        "only the complete transaction is acknowledged"
    );
}

#[test]
fn idle_position_is_acknowledged_only_after_the_commit_before_it() {
    let mut events = Vec::new();
    tx(&mut events, "1", &[5]);
    events.push(SourceEvent::Idle(Position("9".into())));
    let mut sink = Recorder::default();
    let (r, acked) = apply(&mut sink, events, LONG);
    r.unwrap();
    assert_eq!(
        sink.log.join("; "),
        "begin; write 1 #0 x5; record 9 with the batch; commit 1"
    );
    assert_eq!(acked, Some(Position("9".into())));
}

#[test]
fn a_failed_commit_acknowledges_nothing() {
    let mut events = Vec::new();
    tx(&mut events, "1", &[5]);
    let mut sink = Recorder {
        fail_commit: true,
        ..Default::default()
    };
    let (r, acked) = apply(&mut sink, events, LONG);
    assert!(r.unwrap_err().to_string().contains("disk full"));
    assert_eq!(sink.log.last().unwrap(), "rollback");
    assert_eq!(acked, None);
}

/// Runs the loop on its own thread; `feed` sends events to it (pacing them as it likes)
/// and returns when done, then the channel is closed. Returns the sink's log.
fn apply_live(
    options: BatchOptions,
    feed: impl FnOnce(&mpsc::Sender<SourceEvent>, &mut AckReceiver),
) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx_, mut rx) = mpsc::channel(16);
    let (ack_tx, mut ack_rx) = watch::channel(None);
    let worker = std::thread::spawn(move || {
        let mut sink = Recorder::default();
        let handle = rt.handle().clone();
        let r = run_apply(
            &mut sink,
            &mut rx,
            &ack_tx,
            options,
            &Stats::default(),
            &handle,
            &PipelineState::default(),
        );
        (r, sink.log)
    });
    feed(&tx_, &mut ack_rx);
    drop(tx_);
    let (r, log) = worker.join().unwrap();
    r.unwrap();
    log
}

fn send_all(sender: &mpsc::Sender<SourceEvent>, events: Vec<SourceEvent>) {
    for e in events {
        sender.blocking_send(e).unwrap();
    }
}

/// Waits (at most 10 s) until `position` is acknowledged.
fn wait_acked(acks: &mut AckReceiver, position: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            acks.wait_for(|a| a.as_ref().is_some_and(|p| p.0 == position)),
        )
        .await
        .expect("acknowledged in time")
        .unwrap();
    });
}

#[test]
fn a_quiet_source_gets_a_transaction_committed_without_waiting_for_the_flush_interval() {
    // With a 60 s flush interval, only the "nothing more is queued" rule can commit in time.
    let log = apply_live(LONG, |sender, acks| {
        for pos in ["1", "2"] {
            let mut events = Vec::new();
            tx(&mut events, pos, &[3]);
            send_all(sender, events);
            wait_acked(acks, pos);
        }
    });
    assert_eq!(
        log.join("; "),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; commit 2"
    );
}

#[test]
fn a_backlog_is_batched_even_when_nothing_is_queued_for_a_moment() {
    // Transactions that committed at the source a minute ago: the stream is catching up, so
    // a momentarily empty queue does not end the batch; the flush interval does.
    let options = BatchOptions {
        flush_interval: Duration::from_millis(300),
        ..LONG
    };
    let old = stats::now_us() - 60_000_000;
    let log = apply_live(options, |sender, acks| {
        let mut events = Vec::new();
        tx_at(&mut events, "1", &[3], old);
        send_all(sender, events);
        std::thread::sleep(Duration::from_millis(20)); // pacing the source, not synchronising
        let mut events = Vec::new();
        tx_at(&mut events, "2", &[3], old);
        send_all(sender, events);
        wait_acked(acks, "2");
    });
    assert_eq!(
        log.join("; "),
        "begin; write 1 #0 x3; write 2 #0 x3; commit 2"
    );
}

/// Transaction 1, committed; then `more` at positions 2 and 3, 20 ms apart, committed.
fn one_then_two_more(
    sender: &mpsc::Sender<SourceEvent>,
    acks: &mut AckReceiver,
    more: impl Fn(&mut Vec<SourceEvent>, &str),
) {
    let mut events = Vec::new();
    tx(&mut events, "1", &[3]);
    send_all(sender, events);
    wait_acked(acks, "1");
    for pos in ["2", "3"] {
        let mut events = Vec::new();
        more(&mut events, pos);
        send_all(sender, events);
        std::thread::sleep(Duration::from_millis(20)); // pacing the source, not synchronising
    }
    wait_acked(acks, "3");
}

#[test]
fn a_minimum_commit_interval_holds_transactions_together() {
    let options = BatchOptions {
        min_commit_interval: Duration::from_millis(300),
        ..LONG
    };
    let log = apply_live(options, |sender, acks| {
        one_then_two_more(sender, acks, |events, pos| tx(events, pos, &[3]));
    });
    // The first commits at once (none before it); the next waits for the interval, so it
    // takes both (without the interval each commits alone: nothing was queued behind it).
    assert_eq!(
        log.join("; "),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; write 3 #0 x3; commit 3"
    );
}

/// A chunk of a copy: its rows and the table's progress, at the stream's position.
fn chunk(events: &mut Vec<SourceEvent>, pos: &str) {
    let mut t = Vec::new();
    tx(&mut t, pos, &[3]);
    let commit = t.pop().expect("a commit");
    let progress = tidewater_core::CopyProgress::new(tidewater_core::TableId::new("s", "t"));
    t.push(SourceEvent::Progress(vec![progress]));
    t.push(commit);
    events.extend(t);
}

/// Transaction 1, chunks 2 and 3 (rows and copy progress), then transaction 4, with copy
/// commits rationed to `burst` at once, then one per 300 ms; batches full at 2 rows.
fn copy_batches(burst: u32) -> String {
    let options = BatchOptions {
        max_batch_rows: 2,
        copy_commit_interval: Duration::from_millis(300),
        copy_commit_burst: burst,
        copy_batch: None,
        ..LONG
    };
    let log = apply_live(options, |sender, acks| {
        one_then_two_more(sender, acks, chunk);
        let mut events = Vec::new();
        tx(&mut events, "4", &[3]);
        send_all(sender, events);
        wait_acked(acks, "4");
    });
    log.join("; ")
}

#[test]
fn a_copy_batch_waits_for_its_turn_whatever_its_size() {
    // No token: both chunks wait in one batch, though the first fills it; the transaction
    // after them commits as soon as it is full (without rationing each chunk commits alone
    // at `max_batch_rows`).
    assert_eq!(
        copy_batches(0),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; write 3 #0 x3; commit 3; \
         begin; write 4 #0 x3; commit 4"
    );
}

/// Transaction 1, then chunks 2, 3 and 4 arriving apart (the queue runs empty after each),
/// with `copy_batch`, batches full at 2 rows otherwise.
fn gathered_chunks(copy_batch: Option<CopyBatch>) -> String {
    let options = BatchOptions {
        max_batch_rows: 2,
        flush_interval: Duration::from_millis(50),
        copy_batch,
        ..LONG
    };
    let log = apply_live(options, |sender, acks| {
        one_then_two_more(sender, acks, chunk);
        let mut events = Vec::new();
        chunk(&mut events, "4");
        send_all(sender, events);
        wait_acked(acks, "4");
    });
    log.join("; ")
}

#[test]
fn copy_chunks_gather_into_batches_of_the_sinks_size() {
    // Chunks 2 and 3 fill the batch together (6 rows), though the queue ran empty between
    // them and each is past `max_batch_rows`; chunk 4 alone commits when the wait is over.
    let batch = CopyBatch {
        rows: 6,
        bytes: usize::MAX,
        wait: Duration::from_millis(300),
    };
    assert_eq!(
        gathered_chunks(Some(batch)),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; write 3 #0 x3; commit 3; \
         begin; write 4 #0 x3; commit 4"
    );
    // Without: each chunk is a batch of its own.
    assert_eq!(
        gathered_chunks(None),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; commit 2; \
         begin; write 3 #0 x3; commit 3; begin; write 4 #0 x3; commit 4"
    );
}

#[test]
fn copy_batches_within_the_burst_commit_at_once() {
    assert_eq!(
        copy_batches(2),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; commit 2; \
         begin; write 3 #0 x3; commit 3; begin; write 4 #0 x3; commit 4"
    );
}

#[test]
fn a_keepalive_behind_a_commit_ends_the_batch_at_once() {
    // The COMMIT sees the keepalive queued behind it, so it does not group-commit; the
    // keepalive says nothing more is pending, so the batch commits then, not after 60 s.
    let log = apply_live(LONG, |sender, acks| {
        let mut events = Vec::new();
        tx(&mut events, "1", &[3]);
        events.push(SourceEvent::Idle(Position("1+".into())));
        send_all(sender, events);
        wait_acked(acks, "1+");
    });
    // The keepalive is stored with the batch, or alone when the loop took the COMMIT before
    // the keepalive was queued (then the batch had committed at once).
    let log = log.join("; ");
    assert!(
        [
            "begin; write 1 #0 x3; record 1+ with the batch; commit 1",
            "begin; write 1 #0 x3; commit 1; record 1+ alone"
        ]
        .contains(&log.as_str()),
        "{log}"
    );
}

#[test]
fn idle_positions_outside_a_batch_are_recorded_before_acknowledged_at_most_once_a_second() {
    let log = apply_live(LONG, |sender, acks| {
        let mut events = Vec::new();
        tx(&mut events, "1", &[3]);
        send_all(sender, events);
        wait_acked(acks, "1");
        // The first is recorded at once; the next two within the interval: only the last of
        // them is recorded, when the interval has passed (not when the channel closes).
        send_all(sender, vec![SourceEvent::Idle(Position("2".into()))]);
        wait_acked(acks, "2");
        let started = std::time::Instant::now();
        send_all(
            sender,
            vec![
                SourceEvent::Idle(Position("3".into())),
                SourceEvent::Idle(Position("4".into())),
            ],
        );
        wait_acked(acks, "4");
        assert!(started.elapsed() >= apply::IDLE_ACK_INTERVAL / 2);
    });
    assert_eq!(
        log.join("; "),
        "begin; write 1 #0 x3; commit 1; record 2 alone; record 4 alone"
    );
}

/// Two transactions paced 20 ms apart, with this commit time and backlog signal.
fn two_paced(options: BatchOptions, commit_time_us: i64, backlog: Backlog) -> String {
    two_paced_keepalive(options, commit_time_us, backlog, false)
}

/// [`two_paced`], with a keepalive position after the first transaction when `keepalive`.
fn two_paced_keepalive(
    options: BatchOptions,
    commit_time_us: i64,
    backlog: Backlog,
    keepalive: bool,
) -> String {
    let log = apply_live(options, |sender, acks| {
        let mut events = Vec::new();
        tx_with(&mut events, "1", &[3], commit_time_us, backlog);
        if keepalive {
            events.push(SourceEvent::Idle(Position("1k".into())));
        }
        send_all(sender, events);
        std::thread::sleep(Duration::from_millis(20)); // pacing the source, not synchronising
        let mut events = Vec::new();
        tx_with(&mut events, "2", &[3], commit_time_us, backlog);
        send_all(sender, events);
        wait_acked(acks, "2");
    });
    log.join("; ")
}

#[test]
fn a_source_saying_behind_is_batched_even_when_its_commits_are_fresh() {
    // The source has more written past these transactions: a momentarily empty queue does
    // not end the batch, the flush interval does (by commit time alone they look current).
    let options = BatchOptions {
        flush_interval: Duration::from_millis(300),
        ..LONG
    };
    assert_eq!(
        two_paced(options, stats::now_us(), Backlog::Behind),
        "begin; write 1 #0 x3; write 2 #0 x3; commit 2"
    );
}

#[test]
fn a_keepalive_does_not_end_the_batch_of_a_source_saying_behind() {
    // A keepalive between the two transactions (a walsender sends one whenever it waits for
    // WAL while the replies lag): the source is behind, so the flush interval still ends the
    // batch, not the keepalive.
    let options = BatchOptions {
        flush_interval: Duration::from_millis(300),
        ..LONG
    };
    assert_eq!(
        two_paced_keepalive(options, stats::now_us(), Backlog::Behind, true),
        "begin; write 1 #0 x3; write 2 #0 x3; commit 2"
    );
}

#[test]
fn a_source_saying_current_commits_at_once_even_when_its_commits_are_old() {
    // Committed at the source a minute ago (the old age rule called that catching up), but
    // the source has nothing more written: each transaction commits as soon as it is alone
    // in the queue, without waiting for the 60 s flush interval.
    let old = stats::now_us() - 60_000_000;
    assert_eq!(
        two_paced(LONG, old, Backlog::Current),
        "begin; write 1 #0 x3; commit 1; begin; write 2 #0 x3; commit 2"
    );
}

/// `large_transaction = "split"`: pieces of 5 changes.
const SPLIT: BatchOptions = BatchOptions {
    split_rows: Some(5),
    ..LONG
};

#[test]
fn a_large_transaction_commits_in_pieces_with_its_progress() {
    let mut events = Vec::new();
    tx(&mut events, "1", &[2]);
    tx(&mut events, "2", &[4, 4, 4]);
    tx(&mut events, "3", &[1]);
    let mut sink = Recorder::default();
    let (r, acked) = apply_after(&mut sink, events, SPLIT, &PipelineState::default());
    r.unwrap();
    assert_eq!(
        sink.log,
        [
            "begin",
            "write 1 #0 x2",
            "write 2 #0 x4",
            "write 2 #4 x4",
            // The piece stores the complete transaction's position, and the open one's progress.
            "partial 2 after 8",
            "commit 1",
            "begin",
            "write 2 #8 x4",
            "write 3 #0 x1",
            "commit 3",
        ]
    );
    assert_eq!(acked, Some(Position("3".into())));
    // Without the option the transaction commits whole.
    let mut events = Vec::new();
    tx(&mut events, "2", &[4, 4, 4]);
    let mut sink = Recorder::default();
    apply(&mut sink, events, LONG).0.unwrap();
    assert!(!sink.log.iter().any(|l| l.starts_with("partial")));
}

/// Committed state: position 1, and the first `held` changes of transaction 2 (events of 4
/// changes, as `tx` makes them).
fn held_of_2(held: usize) -> PipelineState {
    let mut events = Vec::new();
    tx(&mut events, "2", &[4, 4]);
    let all: Vec<Change> = events
        .into_iter()
        .filter_map(|e| match e {
            SourceEvent::Changes(c) => Some(c),
            _ => None,
        })
        .flatten()
        .collect();
    let mut f = split::Fingerprint::default();
    f.add(&all[..held]);
    PipelineState {
        position: Some(Position("1".into())),
        partial: Some(PartialTx {
            position: Position("2".into()),
            changes: held as i64,
            fingerprint: f.value(),
        }),
        ..PipelineState::default()
    }
}

/// A copy's chunk at `pos`, its rows `Snapshot` changes as sources send them.
fn snapshot_chunk(pos: &str) -> Vec<SourceEvent> {
    let mut events = Vec::new();
    chunk(&mut events, pos);
    for e in &mut events {
        if let SourceEvent::Changes(c) = e {
            c.iter_mut().for_each(|c| c.kind = ChangeKind::Snapshot);
        }
    }
    events
}

#[test]
fn a_replayed_partial_transaction_continues_after_its_held_changes() {
    let mut events = snapshot_chunk("1");
    tx(&mut events, "2", &[4, 4]);
    tx(&mut events, "3", &[1]);
    let mut sink = Recorder::default();
    let (r, acked) = apply_after(&mut sink, events, SPLIT, &held_of_2(6));
    r.unwrap();
    // A copy's chunk may come first; the held six changes are dropped, the rest numbered on.
    assert_eq!(
        sink.log,
        [
            "begin",
            "write 1 #0 x3",
            "write 2 #6 x2",
            "write 3 #0 x1",
            "commit 3"
        ]
    );
    assert_eq!(acked, Some(Position("3".into())));
}

#[test]
fn a_replay_that_differs_from_the_held_changes_stops() {
    // Other changes than the held ones (the fingerprint of 5 does not match 6 changes).
    let mut other = held_of_2(6);
    other.partial.as_mut().unwrap().fingerprint ^= 1;
    // Fewer changes than held.
    let fewer = held_of_2(8);
    for (state, chunks, pos, what) in [
        (other, &[4, 4][..], "2", "with other changes"),
        (fewer, &[4, 3][..], "2", "with fewer changes"),
        (
            held_of_2(6),
            &[4][..],
            "3",
            "replayed the transaction at 3 first",
        ),
    ] {
        let mut events = Vec::new();
        tx(&mut events, pos, chunks);
        let mut sink = Recorder::default();
        let (r, acked) = apply_after(&mut sink, events, SPLIT, &state);
        let e = r.unwrap_err();
        assert!(e.message().contains(what), "{e}");
        assert!(e.fix().is_some());
        assert!(
            !sink.log.iter().any(|l| l.starts_with("commit")),
            "{:?}",
            sink.log
        );
        assert_eq!(acked, None);
    }
    // A truncate among the held changes (never split after one: the replay differs).
    let mut events = Vec::new();
    tx(&mut events, "2", &[4, 4]);
    events.insert(2, SourceEvent::Truncate(vec![table()]));
    let (r, _) = apply_after(&mut Recorder::default(), events, SPLIT, &held_of_2(6));
    assert!(r.unwrap_err().message().contains("with other changes"));
}

#[test]
fn commits_before_the_replay_record_the_held_changes_again() {
    let mut events = snapshot_chunk("1");
    tx(&mut events, "2", &[4, 4]);
    let mut sink = Recorder::default();
    let one_a_batch = BatchOptions {
        max_batch_rows: 1,
        ..SPLIT
    };
    let (r, acked) = apply_after(&mut sink, events, one_a_batch, &held_of_2(6));
    r.unwrap();
    // The chunk's commit keeps the partial transaction; the commit that completes it does not.
    assert_eq!(
        sink.log,
        [
            "begin",
            "write 1 #0 x3",
            "partial 2 after 6",
            "commit 1",
            "begin",
            "write 2 #6 x2",
            "commit 2"
        ]
    );
    assert_eq!(acked, Some(Position("2".into())));
}
