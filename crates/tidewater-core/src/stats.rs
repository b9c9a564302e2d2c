//! Counters the apply loop keeps for `status`, the demo, the logs and the metrics endpoint.
//! Cheap on the apply path: atomics per event, one short lock per batch (per-table counts)
//! and per snapshot chunk (snapshot progress).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::copy::CopyProgress;
use crate::copy_eta::CopyClocks;
use crate::histogram::Histogram;
use crate::model::{Change, ChangeKind, Position, TableId, TableSchema};
use crate::recopy::RecopyRequests;
use crate::unreplicated::Unreplicated;

/// Upper bounds of the changes-per-batch histogram.
pub static BATCH_CHANGES_BUCKETS: [f64; 8] = [
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    50_000.0,
    100_000.0,
    1_000_000.0,
];
/// Upper bounds (seconds) of the apply-duration and freshness histograms.
pub static SECONDS_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Shared between the apply thread (writer) and reporters (readers).
#[derive(Debug)]
pub struct Stats {
    pub rows_applied: AtomicU64,
    pub transactions_applied: AtomicU64,
    pub batches: AtomicU64,
    /// Total time spent in destination commits (µs), for the average commit cost.
    pub commit_us_total: AtomicU64,
    /// Source commit time of the last applied transaction (µs since epoch).
    pub last_source_commit_us: AtomicI64,
    /// When the last batch was committed at the destination (µs since epoch).
    pub last_apply_us: AtomicI64,
    /// Since when the apply loop has been working on the event it took (µs since epoch);
    /// 0 while it waits for the source. A large age means apply is stuck.
    pub busy_since_us: AtomicI64,
    /// Changes per committed batch.
    pub batch_changes: Histogram,
    /// Time spent in sink calls (writes and commit) per batch, seconds.
    pub batch_apply_seconds: Histogram,
    /// Source commit → destination commit per transaction, seconds.
    pub freshness_seconds: Histogram,
    latencies: Mutex<LatencyWindow>,
    /// Committed changes per table ("schema.table") and kind.
    tables: Mutex<BTreeMap<String, KindCounts>>,
    /// Rows of the initial snapshot written so far per table, committed or not (progress).
    snapshot_copied: Mutex<BTreeMap<String, u64>>,
    /// Copy progress per table of the chunked initial snapshot (`crate::copy`), as last
    /// written (committed or in the open batch).
    copies: Mutex<BTreeMap<String, CopyProgress>>,
    /// The tables whose copy fills a table beside their replica table
    /// (`Sink::copies_beside`), as of the last commit. Locked after `copies`.
    copies_beside: Mutex<BTreeSet<String>>,
    /// When this process first saw each copy under way, for its remaining time.
    copy_clocks: Mutex<CopyClocks>,
    /// Source position of the last committed batch.
    position: Mutex<Option<String>>,
    /// Source position up to which everything is committed at the destination: the last
    /// acknowledged position (a committed transaction, or an idle point after it).
    caught_up: Mutex<Option<String>>,
    /// Selected tables the source reports it is not replicating (handed to it in
    /// `SourceContext`): health, status and metrics read them here.
    pub unreplicated: Unreplicated,
    /// Tables the runtime asks the source to copy again (handed to it in `SourceContext`).
    pub recopy: RecopyRequests,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            rows_applied: AtomicU64::new(0),
            transactions_applied: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            commit_us_total: AtomicU64::new(0),
            last_source_commit_us: AtomicI64::new(0),
            last_apply_us: AtomicI64::new(0),
            busy_since_us: AtomicI64::new(0),
            batch_changes: Histogram::new(&BATCH_CHANGES_BUCKETS),
            batch_apply_seconds: Histogram::new(&SECONDS_BUCKETS),
            freshness_seconds: Histogram::new(&SECONDS_BUCKETS),
            latencies: Mutex::default(),
            tables: Mutex::default(),
            snapshot_copied: Mutex::default(),
            copies: Mutex::default(),
            copies_beside: Mutex::default(),
            copy_clocks: Mutex::default(),
            position: Mutex::default(),
            caught_up: Mutex::default(),
            unreplicated: Unreplicated::default(),
            recopy: RecopyRequests::default(),
        }
    }
}

/// Changes per kind (of one table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KindCounts {
    pub snapshot: u64,
    pub insert: u64,
    pub update: u64,
    pub delete: u64,
    pub truncate: u64,
}

impl KindCounts {
    pub fn add_changes(&mut self, kind: ChangeKind, n: u64) {
        match kind {
            ChangeKind::Snapshot => self.snapshot += n,
            ChangeKind::Insert => self.insert += n,
            ChangeKind::Update => self.update += n,
            ChangeKind::Delete => self.delete += n,
        }
    }

    pub fn add(&mut self, o: &KindCounts) {
        self.snapshot += o.snapshot;
        self.insert += o.insert;
        self.update += o.update;
        self.delete += o.delete;
        self.truncate += o.truncate;
    }

    /// (kind label, count) for every kind, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("snapshot", self.snapshot),
            ("insert", self.insert),
            ("update", self.update),
            ("delete", self.delete),
            ("truncate", self.truncate),
        ]
    }
}

/// What one batch did per table; built by the apply loop, folded into `Stats` at commit.
#[derive(Debug, Default)]
pub struct BatchTally {
    tables: HashMap<TableId, KindCounts>,
}

impl BatchTally {
    /// Counts a chunk of changes (one map update per run of same-table, same-kind changes)
    /// and publishes snapshot progress right away: the snapshot is one long transaction.
    pub fn changes(&mut self, changes: &[Change], stats: &Stats) {
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take_while(|c| Arc::ptr_eq(&c.table, &first.table) && c.kind == first.kind)
                .count();
            let n = run as u64;
            self.tables
                .entry(first.table.id.clone())
                .or_default()
                .add_changes(first.kind, n);
            if first.kind == ChangeKind::Snapshot {
                stats.add_snapshot_copied(&first.table.id, n);
            }
            rest = &rest[run..];
        }
    }

    /// How many tables the batch has touched so far.
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    pub fn truncate(&mut self, tables: &[Arc<TableSchema>]) {
        for t in tables {
            self.tables.entry(t.id.clone()).or_default().truncate += 1;
        }
    }
}

/// Source-commit → destination-commit latencies since the last `take_latencies`, in ms.
#[derive(Debug, Default)]
struct LatencyWindow {
    samples_ms: Vec<u32>,
}

/// p50/p99/max of a latency window, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: u32,
    pub p99_ms: u32,
    pub max_ms: u32,
}

const MAX_SAMPLES: usize = 100_000;

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Stats {
    /// Records one applied transaction committed at the destination at `applied_us`.
    pub fn record_transaction(&self, source_commit_us: i64, applied_us: i64) {
        self.transactions_applied.fetch_add(1, Relaxed);
        self.freshness_seconds
            .observe((applied_us - source_commit_us).max(0) as f64 / 1e6);
        let lag_ms = ((applied_us - source_commit_us).max(0) / 1000).min(u32::MAX as i64) as u32;
        let mut w = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if w.samples_ms.len() < MAX_SAMPLES {
            w.samples_ms.push(lag_ms);
        }
    }

    /// Folds a committed batch in: per-table counts, batch histograms and the position.
    pub fn record_batch(
        &self,
        tally: BatchTally,
        changes: u64,
        apply_time: Duration,
        position: &Position,
    ) {
        self.batch_changes.observe(changes as f64);
        self.batch_apply_seconds.observe(apply_time.as_secs_f64());
        {
            let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
            for (id, counts) in tally.tables {
                tables.entry(id.to_string()).or_default().add(&counts);
            }
        }
        *self.position.lock().unwrap_or_else(|e| e.into_inner()) = Some(position.0.clone());
    }

    fn add_snapshot_copied(&self, table: &TableId, n: u64) {
        let mut m = self
            .snapshot_copied
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry(table.to_string()).or_default() += n;
    }

    /// A batch was abandoned: snapshot rows that were not committed were not copied.
    pub fn abandon_uncommitted_snapshot(&self) {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = self
            .snapshot_copied
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (table, copied) in m.iter_mut() {
            *copied = tables.get(table).map_or(0, |c| c.snapshot);
        }
    }

    /// Records copy progress of the chunked initial snapshot (at start: what the sink holds;
    /// then as each chunk is written).
    pub fn set_copy_progress(&self, progress: &[CopyProgress]) {
        self.set_copy_state(progress, None);
    }

    /// Records copy progress and, when given, the tables whose copy fills a table beside
    /// their replica table (`Sink::copies_beside`), in one step: a reader never sees a copy
    /// that began, or was swapped in, with only half of that recorded.
    pub fn set_copy_state(&self, progress: &[CopyProgress], beside: Option<&[TableId]>) {
        let now = std::time::Instant::now();
        let mut m = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        let mut clocks = self.copy_clocks.lock().unwrap_or_else(|e| e.into_inner());
        for p in progress {
            m.insert(p.table.to_string(), p.clone());
            clocks.observe(p, now);
        }
        if let Some(beside) = beside {
            let mut b = self.copies_beside.lock().unwrap_or_else(|e| e.into_inner());
            *b = beside.iter().map(|t| t.to_string()).collect();
        }
    }

    /// The tables whose copy is under way (not consistent yet), and whether each of them
    /// fills a table beside its replica table, which keeps its rows meanwhile.
    pub fn copies_under_way(&self) -> Vec<(String, bool)> {
        let m = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        let b = self.copies_beside.lock().unwrap_or_else(|e| e.into_inner());
        m.values()
            .filter(|p| !p.consistent)
            .map(|p| {
                let t = p.table.to_string();
                let beside = b.contains(&t);
                (t, beside)
            })
            .collect()
    }

    /// The time `progress`'s copy has left, at the rate this process has copied it, given
    /// the source's row estimate (`crate::copy_eta`).
    pub fn copy_eta(&self, progress: &CopyProgress, estimate: Option<u64>) -> Option<Duration> {
        let clocks = self.copy_clocks.lock().unwrap_or_else(|e| e.into_inner());
        clocks.eta(progress, estimate, std::time::Instant::now())
    }

    /// Copy progress per table of the chunked initial snapshot (empty: no chunked copy).
    pub fn copy_progress(&self) -> Vec<CopyProgress> {
        let m = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        m.values().cloned().collect()
    }

    /// Committed changes per table and kind.
    pub fn table_counts(&self) -> BTreeMap<String, KindCounts> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Initial-snapshot rows written so far per table (committed or in the open batch).
    pub fn snapshot_copied(&self) -> BTreeMap<String, u64> {
        self.snapshot_copied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every source change up to `position` is committed at the destination (set with each
    /// acknowledgement of the apply loop).
    pub fn set_caught_up(&self, position: &Position) {
        *self.caught_up.lock().unwrap_or_else(|e| e.into_inner()) = Some(position.0.clone());
    }

    /// The last position set by `set_caught_up`: `verify` waits for it to pass its snapshot.
    pub fn caught_up(&self) -> Option<String> {
        self.caught_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The replica's committed position when this process resumes it, before its own first
    /// batch.
    pub fn set_resumed_at(&self, position: &Position) {
        *self.position.lock().unwrap_or_else(|e| e.into_inner()) = Some(position.0.clone());
    }

    /// Source position of the last committed batch (or of the replica this process resumed;
    /// `None`: nothing committed yet, not even the start of an initial copy).
    pub fn position(&self) -> Option<String> {
        self.position
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Returns and resets the latency window.
    pub fn take_latencies(&self) -> LatencySummary {
        let mut samples = {
            let mut w = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut w.samples_ms)
        };
        summarize(&mut samples)
    }
}

pub fn summarize(samples: &mut [u32]) -> LatencySummary {
    if samples.is_empty() {
        return LatencySummary::default();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    LatencySummary {
        count: samples.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// The log line every source writes when it has read its initial snapshot.
pub fn log_snapshot_read(rows: u64, started: std::time::Instant) {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        rows,
        seconds = format!("{secs:.1}"),
        rows_per_sec = (rows as f64 / secs.max(1e-9)) as u64,
        "initial snapshot read"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut v: Vec<u32> = (1..=100).collect();
        let s = summarize(&mut v);
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (100, 51, 99, 100));
        assert_eq!(summarize(&mut []).count, 0);
    }

    #[test]
    fn tally_counts_runs_per_table_and_kind() {
        let table = |name: &str| {
            Arc::new(TableSchema {
                id: TableId::new("public", name),
                columns: Vec::new(),
                key: Vec::new(),
            })
        };
        let (a, b) = (table("a"), table("b"));
        let change = |t: &Arc<TableSchema>, kind| Change {
            table: t.clone(),
            kind,
            row: Vec::new(),
            old: None,
        };
        let stats = Stats::default();
        let mut tally = BatchTally::default();
        tally.changes(
            &[
                change(&a, ChangeKind::Snapshot),
                change(&a, ChangeKind::Snapshot),
                change(&b, ChangeKind::Insert),
                change(&a, ChangeKind::Update),
            ],
            &stats,
        );
        tally.truncate(std::slice::from_ref(&b));
        assert_eq!(stats.snapshot_copied()["public.a"], 2);
        stats.record_batch(tally, 5, Duration::from_millis(3), &Position("0/1".into()));
        let counts = stats.table_counts();
        assert_eq!(
            (counts["public.a"].snapshot, counts["public.a"].update),
            (2, 1)
        );
        assert_eq!(
            (counts["public.b"].insert, counts["public.b"].truncate),
            (1, 1)
        );
        assert_eq!(stats.position().as_deref(), Some("0/1"));
        assert_eq!(stats.batch_changes.snapshot().count, 1);
    }
}
