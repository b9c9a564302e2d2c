//! The apply loop: turns the source's event stream into sink batches.
//!
//! A batch holds one or more whole source transactions and commits in one destination
//! transaction with the position of its last transaction. It commits at a transaction
//! boundary when no further event is waiting and the source is not behind (its own backlog
//! signal, [`Backlog`] on the transaction; a source that cannot tell is judged by the
//! transaction's commit time), when `flush_interval` has passed since its first complete
//! transaction, or when it holds `max_batch_rows` changes or `max_batch_bytes` of values
//! (estimated by [`change_bytes`]) or has touched `max_batch_tables` tables; a batch holding
//! a copy's chunks follows the sink's [`CopyBatch`] or copy commit rationing instead. Only
//! after the commit is the position published on `acks` (the source then tells the server it
//! may discard WAL).
//!
//! Atomicity does not depend on any of these decisions: they only choose *when* a batch
//! commits, always at a transaction boundary (or before a transaction that has written
//! nothing yet, `OpenBatch::may_split`), so every destination commit holds whole source
//! transactions in source order together with the position of the last one. Whether the
//! backlog signal is right or wrong changes latency and commit sizes, never what is stored.
//!
//! Nothing is published on `acks` that the sink has not stored: a transaction's position
//! is stored by its batch's commit, and an idle position (`SourceEvent::Idle`) by
//! [`Sink::record_ack`] first (with the batch it follows, or alone, at most once per
//! [`IDLE_ACK_INTERVAL`]). So whatever the source server holds as confirmed by this replica is
//! at most the sink's `acknowledged` position, and the position guard can tell a server that
//! is past it (changes discarded that the replica never stored) from one that is not.

use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::event::{Backlog, SourceEvent, TxInfo};
use crate::model::{Change, Position, Value};
use crate::sink::{PipelineState, Sink};
use crate::split::{self, Fingerprint, PartialTx, Replay};
use crate::stats::{now_us, BatchTally, Stats};

pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 100;
pub const DEFAULT_MAX_BATCH_ROWS: usize = 50_000;
/// 16 MiB: narrow rows reach `max_batch_rows` first; 2 KiB rows commit every ~8000 changes,
/// which keeps what DuckDB holds for the open transaction small (docs/performance.md).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// A source ends a `Changes` event at this many bytes ([`change_bytes`]) as well as at its
/// row count, so the events queued between source and apply loop hold a bounded amount of
/// memory however wide the rows are.
pub const MAX_EVENT_BYTES: usize = 512 << 10;
/// Estimated bytes per value and per change besides the values' text (the `Value` and
/// `Change` structs, the row vectors).
const VALUE_OVERHEAD: usize = 32;
const CHANGE_OVERHEAD: usize = 96;
/// For a source without a backlog signal ([`Backlog::Unknown`]): a transaction committed at
/// the source longer ago than this means the stream is catching up on a backlog (one second:
/// MariaDB's binlog carries commit times in whole seconds).
const CATCHING_UP_US: i64 = 1_000_000;
/// An idle position outside a batch is stored (a small destination commit) and acknowledged
/// at most this often: a busy source whose replicated tables are quiet sends many.
pub const IDLE_ACK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    pub flush_interval: Duration,
    pub max_batch_rows: usize,
    /// A batch commits at the next transaction boundary once its changes hold this many
    /// bytes ([`change_bytes`]).
    pub max_batch_bytes: usize,
    /// A batch commits at the next transaction boundary once it has touched this many tables
    /// (`usize::MAX`: no bound). For a sink whose open transaction holds memory per table it
    /// writes to (DuckDB: each keyed table's transaction-local key index, megabytes even for
    /// one row), so a batch spread over hundreds of tables stays bounded.
    pub max_batch_tables: usize,
    /// Commits start at least this long after the previous one started (unless the batch
    /// fills up): a sink with a per-commit quota (BigQuery's DML jobs) commits no more often
    /// than this, while a quiet source's transaction still commits at once. Zero for sinks
    /// without one.
    pub min_commit_interval: Duration,
    /// Commits of batches holding copy progress (chunks of a copy: `crate::copy`) are rationed
    /// by a token bucket: `copy_commit_burst` of them may follow one another at the usual
    /// pace, then one per `copy_commit_interval`; a batch waiting for its turn takes every
    /// chunk that arrives, whatever `max_batch_rows` and `max_batch_bytes`. For a sink whose
    /// every commit of copied rows costs a job under a daily quota (BigQuery's load jobs,
    /// 1,500 per table a day) and whose batches hold no rows in memory: a small copy commits
    /// as fast as any batch, a long one in few large commits. Zero: chunks batch like any
    /// transaction.
    pub copy_commit_interval: Duration,
    pub copy_commit_burst: u32,
    /// Batches holding copy progress gather chunks up to a size instead (see [`CopyBatch`]);
    /// `None`: chunks batch like any transaction.
    pub copy_batch: Option<CopyBatch>,
    /// `[apply] large_transaction = "split"`: a stream transaction is committed in pieces of
    /// this many changes (see `crate::split`). `None`: every transaction commits whole.
    pub split_rows: Option<usize>,
}

/// How a sink wants the chunks of a copy batched: a batch that holds copy progress takes
/// every transaction that arrives until it holds `rows` changes or `bytes` of values, or
/// `wait` has passed since its first complete transaction; it neither commits when the queue
/// runs empty (the source reads the next chunk meanwhile) nor at `max_batch_rows` /
/// `max_batch_bytes`. For DuckDB: a transaction that appends a whole row group to a table
/// writes it straight into the database file, where smaller ones go through the write-ahead
/// log and are written again, compressed, by the next checkpoint (and held in memory until
/// then). Streamed transactions in such a batch wait for it: at most `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyBatch {
    pub rows: usize,
    pub bytes: usize,
    pub wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            flush_interval: Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS),
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_tables: usize::MAX,
            min_commit_interval: Duration::ZERO,
            copy_commit_interval: Duration::ZERO,
            copy_commit_burst: 0,
            copy_batch: None,
            split_rows: None,
        }
    }
}

/// Acknowledgement published after each destination commit: everything up to `position`
/// is durable at the destination.
pub type AckSender = watch::Sender<Option<Position>>;
pub type AckReceiver = watch::Receiver<Option<Position>>;

/// A cheap estimate of the memory a change takes in flight and in the destination's open
/// transaction: its values' bytes plus a fixed overhead per value and per change. Not exact
/// (the sink's own representation differs); it bounds batches and events by size.
pub fn change_bytes(change: &Change) -> usize {
    fn values(values: &[Value]) -> usize {
        values
            .iter()
            .map(|v| match v {
                Value::Text(b) => VALUE_OVERHEAD + b.len(),
                Value::Null | Value::Unchanged => VALUE_OVERHEAD,
            })
            .sum()
    }
    CHANGE_OVERHEAD + values(&change.row) + change.old.as_deref().map_or(0, values)
}

/// The batch being built inside an open destination transaction.
#[derive(Default)]
struct OpenBatch {
    open: bool,
    /// The source transaction whose changes are arriving (None between transactions).
    tx: Option<TxInfo>,
    next_sequence: i64,
    /// The open source transaction has written (changes or a truncate) into the batch.
    tx_wrote: bool,
    rows: usize,
    /// Estimated bytes of the batch's changes ([`change_bytes`]).
    bytes: usize,
    /// Complete transactions in the batch: (position, source commit time).
    committed: Vec<(Position, i64)>,
    /// A keepalive position received after the last complete transaction.
    idle: Option<Position>,
    /// The source was behind at the last complete transaction: a keepalive then does not end
    /// the batch (see `SourceEvent::Idle` in `handle`).
    behind: bool,
    deadline: Option<Instant>,
    /// Changes per table and kind, for the metrics.
    tally: BatchTally,
    /// Time spent inside sink calls for this batch.
    apply_time: Duration,
    /// When its first transaction was complete.
    first_complete: Option<Instant>,
    /// Copy progress written in the batch: published to the stats only once it commits, so
    /// that `/metrics`, `/health` and the phase never call a table copied (or the replica
    /// consistent) before its rows are visible.
    progress: Vec<crate::copy::CopyProgress>,
    /// Whether the open transaction may be committed in pieces (`crate::split`): decided by
    /// its first changes, and `false` once it wrote a truncate or copy progress.
    splittable: Option<bool>,
    /// Changes of the open transaction written in this batch.
    piece_rows: usize,
    /// Of all the open transaction's changes so far, when it may be split.
    fingerprint: Fingerprint,
    /// The open transaction is the replay of a partial one: its held changes are dropped.
    replaying: bool,
}

impl OpenBatch {
    /// The open transaction writes sink state (`what`: copy progress, table layouts): it must
    /// be inside a transaction, and is not split after (a replay would write it again).
    fn writes_state(&mut self, what: &str) -> Result<()> {
        if self.tx.is_none() {
            return Err(Error::source_fatal(format!(
                "source sent {what} outside a transaction"
            )));
        }
        self.tx_wrote = true;
        self.splittable = Some(false);
        Ok(())
    }

    /// The batch can be committed before the open source transaction: it holds complete
    /// transactions, and the open one has written nothing yet.
    fn may_split(&self) -> bool {
        !self.tx_wrote && !self.committed.is_empty()
    }
}

/// Whether the source is behind at this transaction: its own signal, or for a source without
/// one, a commit older than [`CATCHING_UP_US`].
fn behind(backlog: Backlog, commit_time_us: i64) -> bool {
    match backlog {
        Backlog::Behind => true,
        Backlog::Current => false,
        Backlog::Unknown => now_us() - commit_time_us > CATCHING_UP_US,
    }
}

/// The loop's fixed inputs.
struct Loop<'a, S: Sink + ?Sized> {
    sink: &'a mut S,
    events: &'a mut mpsc::Receiver<SourceEvent>,
    acks: &'a AckSender,
    options: BatchOptions,
    stats: &'a Stats,
    rt: &'a Handle,
    /// When the last destination commit started.
    last_commit_at: Option<Instant>,
    /// An idle position received outside a batch, not stored and acknowledged yet.
    idle: Option<Position>,
    /// When an idle position was last stored outside a batch.
    idle_recorded_at: Option<Instant>,
    /// The copy commits' token bucket (`BatchOptions::copy_commit_interval`): tokens at
    /// `copy_tokens.1`.
    copy_tokens: (f64, Instant),
    /// The last stored position, with its transaction's source commit time when known (a
    /// piece of a split transaction commits it again).
    stored: Option<(Position, Option<i64>)>,
    /// A partial transaction the destination holds the start of, until the source replays it.
    replay: Option<Replay>,
}

/// Runs until the source closes its channel (then commits what is complete) or an error.
/// Blocks the calling thread; `rt` drives the channel and the flush timer. `committed` is
/// what the sink's `state` returned at start.
pub fn run_apply<S: Sink + ?Sized>(
    sink: &mut S,
    events: &mut mpsc::Receiver<SourceEvent>,
    acks: &AckSender,
    options: BatchOptions,
    stats: &Stats,
    rt: &Handle,
    committed: &PipelineState,
) -> Result<()> {
    if options.split_rows.is_some() && !sink.splits_transactions() {
        return Err(Error::config(
            "this destination commits every transaction whole: large_transaction = \"split\" \
             is not available for it",
        ));
    }
    // Timers are created outside `block_on`: they need the runtime's context.
    let _context = rt.enter();
    let mut l = Loop {
        sink,
        events,
        acks,
        options,
        stats,
        rt,
        last_commit_at: None,
        idle: None,
        idle_recorded_at: None,
        copy_tokens: (f64::from(options.copy_commit_burst), Instant::now()),
        stored: committed.position.clone().map(|p| (p, None)),
        replay: committed.partial.clone().map(Replay::new),
    };
    let mut b = OpenBatch::default();
    let result = l.apply_events(&mut b);
    stats
        .busy_since_us
        .store(0, std::sync::atomic::Ordering::Relaxed);
    if b.open {
        // Either an error, or the source ended in the middle of a transaction: nothing partial
        // may be committed.
        stats.abandon_uncommitted_snapshot();
        let rolled_back = l.sink.rollback();
        // The error that stopped the batch is the one to report, not a failed cleanup.
        if let (Err(_), Err(r)) = (&result, &rolled_back) {
            tracing::warn!(error = %r, "rolling back the failed batch");
            return result;
        }
        rolled_back?;
    }
    result
}

impl<S: Sink + ?Sized> Loop<'_, S> {
    fn apply_events(&mut self, b: &mut OpenBatch) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            if !b.open && self.events.is_empty() {
                // Between batches with nothing to do: the sink's housekeeping (a DuckDB
                // checkpoint) runs here rather than inside a commit.
                self.stats.busy_since_us.store(now_us(), Relaxed);
                self.sink.idle()?;
            }
            self.stats.busy_since_us.store(0, Relaxed);
            let deadline = if b.tx.is_none() { b.deadline } else { None };
            let deadline = match (deadline, self.idle_due(b)) {
                (Some(d), Some(i)) => Some(d.min(i)),
                (d, i) => d.or(i),
            };
            let event = match deadline {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    match self
                        .rt
                        .block_on(tokio::time::timeout_at(at, self.events.recv()))
                    {
                        Ok(ev) => ev,
                        Err(_elapsed) => {
                            if b.deadline.is_some_and(|d| d <= Instant::now()) {
                                self.commit_batch(b)?;
                            }
                            self.ack_idle(b)?;
                            continue;
                        }
                    }
                }
                None => self.rt.block_on(self.events.recv()),
            };
            self.stats.busy_since_us.store(now_us(), Relaxed);
            let Some(event) = event else {
                if b.tx.is_none() && !b.committed.is_empty() {
                    self.commit_batch(b)?;
                }
                return Ok(());
            };
            self.apply_event(b, event)?;
        }
    }

    fn apply_event(&mut self, b: &mut OpenBatch, event: SourceEvent) -> Result<()> {
        match event {
            SourceEvent::Begin(tx) => {
                if b.tx.is_some() {
                    return Err(Error::source_fatal(
                        "source sent BEGIN inside a transaction",
                    ));
                }
                if !b.open {
                    self.sink.begin()?;
                    b.open = true;
                }
                self.sink.begin_tx(&tx)?;
                b.next_sequence = 0;
                b.tx_wrote = false;
                b.splittable = None;
                b.piece_rows = 0;
                b.fingerprint = Fingerprint::default();
                b.replaying = false;
                if let Some(r) = &self.replay {
                    if &tx.position == r.position() {
                        // The rest of a split transaction: numbered after what is held.
                        b.replaying = true;
                        b.next_sequence = r.held();
                        b.fingerprint = r.fingerprint();
                    }
                }
                b.tx = Some(tx);
            }
            SourceEvent::Changes(mut changes) => {
                if b.tx.is_none() {
                    return Err(Error::source_fatal(
                        "source sent changes outside a transaction",
                    ));
                }
                if !self.replayed(b, &mut changes)? {
                    return Ok(());
                }
                if b.may_split() && self.sink.changes_schema(&changes) {
                    self.split_batch(b)?;
                }
                b.tx_wrote = true;
                let splits = self.options.split_rows.is_some()
                    && *b
                        .splittable
                        .get_or_insert_with(|| split::splittable(&changes));
                if splits {
                    b.fingerprint.add(&changes);
                }
                let tx = b.tx.as_ref().expect("checked above");
                let n = changes.len();
                b.bytes += changes.iter().map(change_bytes).sum::<usize>();
                b.tally.changes(&changes, self.stats);
                let started = Instant::now();
                self.sink.write(tx, b.next_sequence, changes).map_err(|e| {
                    e.context(format_args!("applying the transaction at {}", tx.position))
                })?;
                b.apply_time += started.elapsed();
                b.next_sequence += n as i64;
                b.rows += n;
                b.piece_rows += n;
                if splits
                    && self
                        .options
                        .split_rows
                        .is_some_and(|max| b.piece_rows >= max)
                {
                    self.commit_piece(b)?;
                }
            }
            SourceEvent::Truncate(tables) => {
                if b.may_split() && self.sink.truncate_changes_schema(&tables) {
                    // A re-copy of a table whose definition changed starts with its truncate.
                    self.split_batch(b)?;
                }
                b.tx_wrote = true;
                if b.replaying {
                    // The held changes never include a truncate (a transaction is not split
                    // after one): the replay differs.
                    let r = self.replay.as_ref().expect("replaying");
                    return Err(r.other_changes());
                }
                // A replay would apply a held truncate again: no pieces after one.
                b.splittable = Some(false);
                let tx = b.tx.as_ref().ok_or_else(|| {
                    Error::source_fatal("source sent TRUNCATE outside a transaction")
                })?;
                b.tally.truncate(&tables);
                let started = Instant::now();
                self.sink.truncate(tx, &tables).map_err(|e| {
                    e.context(format_args!("applying the transaction at {}", tx.position))
                })?;
                b.apply_time += started.elapsed();
                b.rows += 1;
            }
            SourceEvent::Progress(progress) => {
                b.writes_state("copy progress")?;
                self.sink.write_progress(&progress)?;
                b.progress.extend(progress);
            }
            SourceEvent::Layouts(layouts) => {
                b.writes_state("table layouts")?;
                self.sink.write_layouts(&layouts)?;
            }
            SourceEvent::Commit => {
                if b.replaying {
                    let r = self.replay.as_ref().expect("replaying");
                    return Err(r.ended_early());
                }
                let tx = b.tx.take().ok_or_else(|| {
                    Error::source_fatal("source sent COMMIT outside a transaction")
                })?;
                let commit_time_us = tx.commit_time_us;
                b.committed.push((tx.position, commit_time_us));
                b.idle = None;
                // Group commit: while the source is current, the batch commits as soon as
                // nothing more is queued (a transaction waits at most for the commit in
                // progress), and the transactions that queue up meanwhile form the next batch.
                // While the source is behind, the batch takes whatever arrives for up to
                // `flush_interval`, `max_batch_rows`, `max_batch_bytes` or `max_batch_tables`,
                // amortising each commit's fixed cost. The source says which; one that cannot
                // tell is judged by the commit's age.
                let catching_up = behind(tx.backlog, commit_time_us);
                b.behind = catching_up;
                let now = Instant::now();
                let gathering = self.gathers_copy(b);
                let group_commit = !catching_up && self.events.is_empty() && !gathering;
                let first = *b.first_complete.get_or_insert(now);
                let mut deadline = match self.options.copy_batch {
                    Some(c) if gathering => first + c.wait,
                    _ => *b
                        .deadline
                        .get_or_insert(first + self.options.flush_interval),
                };
                b.deadline = Some(deadline);
                // A sink with a commit quota: no commit before `min_commit_interval` has passed
                // since the last one started; a group commit waits until then.
                let earliest = self.earliest_commit(b);
                if let Some(e) = earliest {
                    deadline = if group_commit { e } else { deadline.max(e) };
                    b.deadline = Some(deadline);
                }
                let full = match self.options.copy_batch {
                    Some(_) if !b.progress.is_empty() => !gathering,
                    _ => {
                        b.rows >= self.options.max_batch_rows
                            || b.bytes >= self.options.max_batch_bytes
                            || b.tally.tables() >= self.options.max_batch_tables
                    }
                };
                if (full && !self.copy_batch(b))
                    || now >= deadline
                    || (group_commit && earliest.is_none())
                {
                    self.commit_batch(b)?;
                }
            }
            SourceEvent::Idle(position) => {
                if b.open {
                    b.idle = Some(position);
                    // The source says nothing more is pending: a complete batch is a group
                    // commit now (the COMMIT before this keepalive saw it queued). Not while
                    // the source is behind: a keepalive read late says only that nothing was
                    // pending when the server sent it (a PostgreSQL walsender sends one each
                    // time it waits for WAL while the reply lags), and committing on it would
                    // cut the batches that amortise each commit while catching up. The flush
                    // interval ends such a batch, with this position.
                    if b.tx.is_none()
                        && !b.committed.is_empty()
                        && !b.behind
                        && self.events.is_empty()
                        && !self.gathers_copy(b)
                    {
                        match self.earliest_commit(b) {
                            None => self.commit_batch(b)?,
                            Some(e) => b.deadline = Some(b.deadline.map_or(e, |d| d.min(e))),
                        }
                    }
                } else {
                    self.stats.set_caught_up(&position);
                    self.idle = Some(position);
                    self.ack_idle(b)?;
                }
            }
        }
        Ok(())
    }

    /// A schema change opens its own destination transaction, after the complete transactions
    /// before it (DuckDB cannot alter a table whose rows the open transaction already
    /// rewrote). Called when `may_split`.
    fn split_batch(&mut self, b: &mut OpenBatch) -> Result<()> {
        let tx = b.tx.take();
        self.commit_batch(b)?;
        self.sink.begin()?;
        b.open = true;
        b.tx = tx;
        Ok(())
    }

    /// When the pending idle position may be stored: [`IDLE_ACK_INTERVAL`] after the last
    /// one (`None`: nothing pending, or a batch is open and will carry it).
    fn idle_due(&self, b: &OpenBatch) -> Option<Instant> {
        if b.open || self.idle.is_none() {
            return None;
        }
        Some(
            self.idle_recorded_at
                .map_or_else(Instant::now, |at| at + IDLE_ACK_INTERVAL),
        )
    }

    /// Stores the pending idle position and acknowledges it, when it is due.
    fn ack_idle(&mut self, b: &OpenBatch) -> Result<()> {
        if self.idle_due(b).is_none_or(|due| due > Instant::now()) {
            return Ok(());
        }
        let Some(position) = self.idle.take() else {
            return Ok(());
        };
        self.sink.record_ack(&position)?;
        self.idle_recorded_at = Some(Instant::now());
        self.acks.send_replace(Some(position));
        Ok(())
    }

    /// Whether batch `b` holds a copy's chunks and the sink wants those committed at
    /// `copy_commit_interval`.
    fn copy_batch(&self, b: &OpenBatch) -> bool {
        !b.progress.is_empty() && !self.options.copy_commit_interval.is_zero()
    }

    /// Whether batch `b` holds a copy's chunks and gathers more (`BatchOptions::copy_batch`).
    fn gathers_copy(&self, b: &OpenBatch) -> bool {
        match self.options.copy_batch {
            Some(c) => !b.progress.is_empty() && b.rows < c.rows && b.bytes < c.bytes,
            None => false,
        }
    }

    /// The copy commits' tokens now: one more per `copy_commit_interval`, at most
    /// `copy_commit_burst`.
    fn copy_tokens_now(&self) -> f64 {
        let (tokens, at) = self.copy_tokens;
        let interval = self.options.copy_commit_interval.as_secs_f64();
        let refilled = tokens + at.elapsed().as_secs_f64() / interval;
        refilled.min(f64::from(self.options.copy_commit_burst))
    }

    /// When batch `b` may commit, if that is still ahead: `min_commit_interval` after the
    /// last commit started, and for a copy batch not before the bucket holds a token.
    fn earliest_commit(&self, b: &OpenBatch) -> Option<Instant> {
        let now = Instant::now();
        let mut earliest = self
            .last_commit_at
            .map(|at| at + self.options.min_commit_interval);
        if self.copy_batch(b) {
            let missing = 1.0 - self.copy_tokens_now();
            if missing > 0.0 {
                let wait = self.options.copy_commit_interval.mul_f64(missing);
                earliest = Some(earliest.map_or(now + wait, |e| e.max(now + wait)));
            }
        }
        earliest.filter(|&e| e > now)
    }

    /// The replay of a partial transaction drops the changes the destination holds (see
    /// `crate::split`). Returns whether changes are left to apply.
    fn replayed(&mut self, b: &mut OpenBatch, changes: &mut Vec<Change>) -> Result<bool> {
        let Some(r) = self.replay.as_mut() else {
            return Ok(true);
        };
        if !b.replaying {
            // A copy's chunk may come first (it carries the stream's position); a stream
            // transaction may not.
            if split::splittable(changes) {
                let position = &b.tx.as_ref().expect("inside a transaction").position;
                return Err(r.other_first(position));
            }
            return Ok(true);
        }
        if r.skip(changes)? {
            self.replay = None;
            b.replaying = false;
            // Held changes count as written: the transaction continues the held piece.
            b.splittable = Some(true);
        }
        Ok(!changes.is_empty())
    }

    /// Commits the open batch inside its open transaction, which has written `split_rows`
    /// changes into it: the batch's complete transactions with their position, and the open
    /// one's progress (`crate::split`). The transaction continues in a new batch.
    fn commit_piece(&mut self, b: &mut OpenBatch) -> Result<()> {
        let tx = b.tx.take().expect("inside a transaction");
        let (next_sequence, fingerprint) = (b.next_sequence, b.fingerprint);
        let (position, time) = match (b.committed.last(), &self.stored) {
            (Some((p, t)), _) => (p.clone(), *t),
            (None, Some((p, t))) => (p.clone(), t.unwrap_or(tx.commit_time_us)),
            (None, None) => {
                return Err(Error::sink(
                    "internal: a transaction to split before any position was stored",
                ))
            }
        };
        self.sink.record_partial(&PartialTx {
            position: tx.position.clone(),
            changes: next_sequence,
            fingerprint: fingerprint.value(),
        })?;
        tracing::debug!(transaction = %tx.position, changes = next_sequence, "committing a piece of a large transaction (large_transaction = \"split\")");
        self.commit_at(b, position, time)?;
        self.sink.begin()?;
        b.open = true;
        b.tx = Some(tx);
        b.next_sequence = next_sequence;
        b.tx_wrote = true;
        b.splittable = Some(true);
        b.fingerprint = fingerprint;
        Ok(())
    }

    fn commit_batch(&mut self, b: &mut OpenBatch) -> Result<()> {
        let Some((last, last_time)) = b.committed.last().cloned() else {
            return Ok(());
        };
        self.commit_at(b, last, last_time)
    }

    /// Commits the open batch with `last`, the position of its last complete transaction (or
    /// the stored one, for a piece of a transaction without complete ones before it).
    fn commit_at(&mut self, b: &mut OpenBatch, last: Position, last_time: i64) -> Result<()> {
        if let Some(r) = &self.replay {
            // Transactions committed before the partial one's replay (a copy's chunk): what
            // the destination holds of it stays recorded.
            self.sink.record_partial(r.partial())?;
        }
        let started = Instant::now();
        if self.copy_batch(b) {
            self.copy_tokens = (self.copy_tokens_now() - 1.0, started);
        }
        let (sink, acks, stats) = (&mut *self.sink, self.acks, self.stats);
        self.last_commit_at = Some(started);
        // An idle position outside the batch is older than its transactions: superseded.
        self.idle = None;
        if let Some(idle) = &b.idle {
            sink.record_ack(idle)?;
        }
        sink.commit(&last, last_time)?;
        let cost = started.elapsed();
        b.apply_time += cost;
        let cost_us = cost.as_micros() as u64;
        stats
            .commit_us_total
            .fetch_add(cost_us, std::sync::atomic::Ordering::Relaxed);
        let applied = now_us();
        for (_, commit_time) in &b.committed {
            stats.record_transaction(*commit_time, applied);
        }
        stats
            .rows_applied
            .fetch_add(b.rows as u64, std::sync::atomic::Ordering::Relaxed);
        stats
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .last_source_commit_us
            .store(last_time, std::sync::atomic::Ordering::Relaxed);
        stats
            .last_apply_us
            .store(applied, std::sync::atomic::Ordering::Relaxed);
        let ack = b.idle.take().unwrap_or(last.clone());
        self.stored = Some((last.clone(), Some(last_time)));
        let done = std::mem::take(b);
        // A copy table begins and is swapped in only by a commit that holds copy progress.
        let beside = (!done.progress.is_empty()).then(|| sink.copies_beside());
        stats.set_copy_state(&done.progress, beside.as_deref());
        stats.record_batch(done.tally, done.rows as u64, done.apply_time, &last);
        stats.set_caught_up(&ack);
        acks.send_replace(Some(ack));
        Ok(())
    }
}
