//! What a running `tidewater run` knows about itself beyond the apply counters: the
//! pipeline's phase, recent errors, restarts, snapshot row estimates, and the sink's read
//! side (`tidewater_core::Replica`) for `/status`, `/query`, the SQL endpoint and verify.
//! Shared by the pipeline, the HTTP endpoint, the status file and the progress display.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidewater_core::replica::{Replica, SinkMetrics, StatusReport};
use tidewater_core::stats::{now_us, Stats};
use tidewater_core::time::format_utc_micros;
use tidewater_core::{Error, Result};

use crate::config::Config;
use crate::verify_passes::Passes;

/// Apply busy on one step (a DuckDB write or commit) for longer than this is a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(60);
const RECENT_ERRORS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting to the source and opening the replica.
    Starting,
    /// Copying the initial snapshot (not yet committed).
    Snapshot,
    /// Applying the change stream.
    Streaming,
    /// Waiting to resume after a retryable error.
    Retrying,
    /// Shutting down.
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Snapshot => "snapshot",
            Phase::Streaming => "streaming",
            Phase::Retrying => "retrying",
            Phase::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecentError {
    pub at: String,
    pub message: String,
}

/// `/health`: ok only while streaming and not stalled; otherwise the reason. The reason of
/// an ok pipeline starts with `degraded:` when a selected table is not replicated, or the
/// last continuous verification pass found differences.
#[derive(Debug, Clone)]
pub struct Health {
    pub ok: bool,
    pub reason: String,
}

pub struct Monitor {
    pub stats: Arc<Stats>,
    pub source_type: String,
    pub db_path: PathBuf,
    pub started_us: i64,
    phase: Mutex<(Phase, i64)>,
    errors: Mutex<VecDeque<RecentError>>,
    pub errors_total: AtomicU64,
    pub restarts: AtomicU64,
    /// Source row estimates per table ("schema.table") for snapshot progress.
    estimates: Mutex<BTreeMap<String, u64>>,
    /// The running sink's read side (status, `/query`, the SQL endpoint), once it is open.
    replica: Mutex<Option<Arc<dyn Replica>>>,
    report: Mutex<Option<CachedReport>>,
    http_addr: OnceLock<SocketAddr>,
    /// The PostgreSQL wire-protocol endpoint, when `[sql] listen` is set.
    sql_addr: OnceLock<SocketAddr>,
    /// The configuration `run` was started with: `POST /verify` reads the source with it.
    config: OnceLock<Arc<Config>>,
    /// The replica's (transactions, changes) totals when this process opened it: "this run"
    /// is a report's totals minus these, so both figures of one status come from the same
    /// committed state and always agree.
    totals_at_open: OnceLock<(i64, i64)>,
    /// What continuous verification (`[verify]`) found; off until enabled.
    pub verify_passes: Passes,
    /// What the sink counts about itself (BigQuery: bytes processed), for `/metrics`.
    sink_metrics: OnceLock<Arc<dyn SinkMetrics>>,
}

/// A collected report, when, and the replica generation it saw.
type CachedReport = (Instant, (u64, i64), Arc<StatusReport>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// The monitor of `config`'s pipeline: its source type, and its replica file if the
    /// sink keeps one.
    pub fn for_config(stats: Arc<Stats>, config: &Config) -> Monitor {
        let file = config.sink.local_file().unwrap_or(std::path::Path::new(""));
        Monitor::new(stats, config.source.kind(), file.to_path_buf())
    }

    pub fn new(stats: Arc<Stats>, source_type: &str, db_path: PathBuf) -> Monitor {
        Monitor {
            stats,
            source_type: source_type.to_string(),
            db_path,
            started_us: now_us(),
            phase: Mutex::new((Phase::Starting, now_us())),
            errors: Mutex::default(),
            errors_total: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            estimates: Mutex::default(),
            replica: Mutex::default(),
            report: Mutex::default(),
            http_addr: OnceLock::new(),
            sql_addr: OnceLock::new(),
            config: OnceLock::new(),
            totals_at_open: OnceLock::new(),
            verify_passes: Passes::default(),
            sink_metrics: OnceLock::new(),
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        let mut p = lock(&self.phase);
        if p.0 != phase {
            *p = (phase, now_us());
        }
    }

    /// The phase and since when (µs since epoch). Streaming while a chunked initial copy is
    /// under way (`tidewater_core::copy`) is still the snapshot phase: the replica is not
    /// transaction-consistent yet.
    pub fn phase(&self) -> (Phase, i64) {
        let p = *lock(&self.phase);
        if p.0 == Phase::Streaming && self.stats.copy_progress().iter().any(|c| !c.consistent) {
            return (Phase::Snapshot, p.1);
        }
        p
    }

    /// Whether the replica equals the source at a transaction boundary: it has a committed
    /// position (an initial snapshot's first commit, or the one this process resumed) and no
    /// table's copy is under way. Before the sink's state is read, and on a new replica until
    /// its copy's first commit (which lists every table as not yet copied), it is not known to
    /// be, so it is not.
    pub fn consistent(&self) -> bool {
        self.stats.position().is_some() && self.stats.copy_progress().iter().all(|c| c.consistent)
    }

    pub fn record_error(&self, e: &Error) {
        self.errors_total.fetch_add(1, Relaxed);
        let mut errors = lock(&self.errors);
        if errors.len() == RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(RecentError {
            at: format_utc_micros(now_us()),
            message: tidewater_core::redact::redact(&e.to_string()),
        });
    }

    /// Most recent first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        lock(&self.errors).iter().rev().cloned().collect()
    }

    pub fn set_estimates(&self, estimates: BTreeMap<String, u64>) {
        *lock(&self.estimates) = estimates;
    }

    pub fn estimates(&self) -> BTreeMap<String, u64> {
        lock(&self.estimates).clone()
    }

    /// The time a copy under way has left (`tidewater_core::copy_eta`). The rows expected are
    /// the source's estimate from the start, or else the rows the replica table holds
    /// (`report`): a table copied again into a copy table keeps its old rows until the swap,
    /// about the source's count; a table that holds only what was copied so far gives none.
    pub fn copy_eta(
        &self,
        copy: &tidewater_core::CopyProgress,
        report: Option<&StatusReport>,
    ) -> Option<std::time::Duration> {
        if copy.done {
            return None;
        }
        let table = copy.table.to_string();
        let estimate = lock(&self.estimates).get(&table).copied().or_else(|| {
            let t = report?.tables.iter().find(|t| t.table == table)?;
            u64::try_from(t.rows).ok()
        });
        self.stats.copy_eta(copy, estimate)
    }

    pub fn set_http_addr(&self, addr: SocketAddr) {
        let _ = self.http_addr.set(addr);
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr.get().copied()
    }

    pub fn set_sql_addr(&self, addr: SocketAddr) {
        let _ = self.sql_addr.set(addr);
    }

    pub fn sql_addr(&self) -> Option<SocketAddr> {
        self.sql_addr.get().copied()
    }

    pub fn set_config(&self, config: Config) {
        let _ = self.config.set(Arc::new(config));
    }

    pub fn config(&self) -> Option<Arc<Config>> {
        self.config.get().cloned()
    }

    /// Where `/metrics` reads what the sink counts about itself.
    pub fn set_sink_metrics(&self, metrics: Arc<dyn SinkMetrics>) {
        let _ = self.sink_metrics.set(metrics);
    }

    pub fn sink_metrics(&self) -> Option<&Arc<dyn SinkMetrics>> {
        self.sink_metrics.get()
    }

    /// Installs the running sink's read side (it reads without access to files and the
    /// environment outside the replica: a `/query` must not read `/etc/...` as this
    /// process's user), and notes its totals as the base of "this run".
    pub fn set_replica(&self, replica: Arc<dyn Replica>) -> Result<()> {
        let at_open = replica.status()?;
        let _ = self
            .totals_at_open
            .set((at_open.transactions_applied, at_open.changes_applied));
        *lock(&self.replica) = Some(replica);
        Ok(())
    }

    /// The running sink's read side, or None before it is open.
    pub fn replica(&self) -> Option<Arc<dyn Replica>> {
        lock(&self.replica).clone()
    }

    /// Changes whenever what `Replica::status` sees may have changed: a batch was committed, or the
    /// phase changed (tables are created before anything is committed).
    fn generation(&self) -> (u64, i64) {
        (self.stats.batches.load(Relaxed), self.phase().1)
    }

    /// The replica's committed state, collected at most `max_age` ago and since the last
    /// commit. Blocking.
    pub fn report(&self, max_age: Duration) -> Result<Arc<StatusReport>> {
        let generation = self.generation();
        if let Some((at, seen, r)) = lock(&self.report).as_ref() {
            if at.elapsed() <= max_age && *seen == generation {
                return Ok(r.clone());
            }
        }
        let replica = self
            .replica()
            .ok_or_else(|| Error::sink("the replica is not open yet"))?;
        let report = Arc::new(replica.status()?);
        *lock(&self.report) = Some((Instant::now(), generation, report.clone()));
        Ok(report)
    }

    /// The (transactions, changes) this process committed, as of `report`.
    pub fn this_run(&self, report: &StatusReport) -> Option<(u64, u64)> {
        let (transactions, changes) = *self.totals_at_open.get()?;
        let since = |total: i64, base: i64| u64::try_from(total - base).ok();
        Some((
            since(report.transactions_applied, transactions)?,
            since(report.changes_applied, changes)?,
        ))
    }

    /// The last collected report, however old, without touching the database.
    pub fn cached_report(&self) -> Option<Arc<StatusReport>> {
        lock(&self.report).as_ref().map(|(_, _, r)| r.clone())
    }

    pub fn health(&self) -> Health {
        let (phase, _) = self.phase();
        let not_ok = |reason: String| Health { ok: false, reason };
        match phase {
            Phase::Starting => not_ok("starting: connecting to the source".into()),
            Phase::Snapshot => {
                if let Some(copying) = self.copying_beside() {
                    return self.streaming_health(Some(copying));
                }
                let copied: u64 = self.stats.snapshot_copied().values().sum();
                not_ok(format!(
                    "copy in progress (the initial snapshot, or tables copied again): {copied} rows copied; the replica is incomplete until it is transaction-consistent"
                ))
            }
            Phase::Retrying => {
                let last = self.recent_errors().into_iter().next();
                not_ok(format!(
                    "retrying after an error: {}",
                    last.map(|e| e.message).unwrap_or_default()
                ))
            }
            Phase::Stopping => not_ok("stopping".into()),
            Phase::Streaming => self.streaming_health(None),
        }
    }

    /// Streaming while tables are copied again, every one of them into a table beside its
    /// replica table (`Sink::copies_beside`): the replica tables are whole (stale while
    /// copied, never half-copied), so the pipeline is degraded, not down (the reasons in
    /// `crate::degraded`); the reason to say so. `None` during the initial snapshot, or while
    /// a table holds only the rows copied so far (its first copy, or a sink that empties it).
    fn copying_beside(&self) -> Option<String> {
        if lock(&self.phase).0 != Phase::Streaming {
            return None;
        }
        let under_way = self.stats.copies_under_way();
        if under_way.is_empty() || under_way.iter().any(|(_, beside)| !beside) {
            return None;
        }
        let tables: Vec<&str> = under_way.iter().map(|(t, _)| t.as_str()).collect();
        let one = tables.len() == 1;
        Some(format!(
            "degraded: copying again: {}; {} the rows {} had when the copy began until the \
             copy is transaction-consistent and replaces {}",
            tables.join(", "),
            if one {
                "its replica table keeps"
            } else {
                "their replica tables keep"
            },
            if one { "it" } else { "they" },
            if one { "it" } else { "them" },
        ))
    }

    /// Health while streaming: ok unless apply is stalled; the reason names what degrades it
    /// (`copying`: tables copied again beside their replica tables).
    fn streaming_health(&self, copying: Option<String>) -> Health {
        let busy = self.stats.busy_since_us.load(Relaxed);
        let busy_for = Duration::from_micros((now_us() - busy).max(0) as u64);
        if busy != 0 && busy_for > STALL_AFTER {
            return Health {
                ok: false,
                reason: format!(
                    "stalled: applying one step has taken {} s (more than {} s)",
                    busy_for.as_secs(),
                    STALL_AFTER.as_secs()
                ),
            };
        }
        let last = self.stats.last_apply_us.load(Relaxed);
        let reason = if last == 0 {
            "streaming; nothing applied by this process yet".to_string()
        } else {
            format!(
                "streaming; last batch applied {} s ago",
                (now_us() - last).max(0) / 1_000_000
            )
        };
        let reason = match copying {
            Some(copying) => format!("{copying}; {reason}"),
            None => reason,
        };
        // Streaming, but a selected table is left out: still ok (see `degraded`).
        let reason =
            crate::degraded::health_reason(&self.stats.unreplicated, &reason).unwrap_or(reason);
        // ... or the last verification found differences.
        let reason = self.verify_passes.health_reason(&reason).unwrap_or(reason);
        Health { ok: true, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::copy::CopyProgress;
    use tidewater_core::{Position, TableId};

    #[test]
    fn consistent_only_with_a_committed_position_and_no_copy_under_way() {
        let stats = Arc::new(Stats::default());
        let m = Monitor::new(stats.clone(), "postgres", PathBuf::new());
        // Just started: the replica's state is not read yet.
        assert!(!m.consistent());
        let mut copy = CopyProgress::new(TableId::new("public", "t"));
        stats.set_copy_progress(std::slice::from_ref(&copy));
        stats.set_resumed_at(&Position("0/1".into()));
        assert!(!m.consistent(), "a copy is under way");
        copy.done = true;
        copy.consistent = true;
        stats.set_copy_progress(&[copy]);
        assert!(m.consistent());
    }

    #[test]
    fn copies_beside_their_replica_tables_degrade_health_and_other_copies_fail_it() {
        let stats = Arc::new(Stats::default());
        let m = Monitor::new(stats.clone(), "postgres", PathBuf::new());
        m.set_phase(Phase::Streaming);
        stats.set_resumed_at(&Position("0/1".into()));
        let (a, b) = (TableId::new("s", "a"), TableId::new("s", "b"));
        let consistent = |t: &TableId| CopyProgress {
            done: true,
            consistent: true,
            ..CopyProgress::new(t.clone())
        };
        stats.set_copy_state(&[consistent(&a), consistent(&b)], Some(&[]));
        assert!(m.health().ok);
        assert!(!m.health().reason.starts_with("degraded:"));
        // `a` is copied again beside its replica table.
        stats.set_copy_state(
            &[CopyProgress::new(a.clone())],
            Some(std::slice::from_ref(&a)),
        );
        let h = m.health();
        assert!(h.ok, "{}", h.reason);
        assert!(
            h.reason
                .starts_with("degraded: copying again: s.a; its replica table keeps"),
            "{}",
            h.reason
        );
        // `b` is copied into its own replica table: half-copied, so not ok.
        stats.set_copy_state(
            &[CopyProgress::new(b.clone())],
            Some(std::slice::from_ref(&a)),
        );
        let h = m.health();
        assert!(
            !h.ok && h.reason.starts_with("copy in progress"),
            "{}",
            h.reason
        );
        // Both consistent again (the swap): fully healthy.
        stats.set_copy_state(&[consistent(&a), consistent(&b)], Some(&[]));
        let h = m.health();
        assert!(h.ok && !h.reason.starts_with("degraded:"), "{}", h.reason);
        // The initial snapshot is never degraded, whatever the sink says.
        m.set_phase(Phase::Snapshot);
        stats.set_copy_state(
            &[CopyProgress::new(a.clone())],
            Some(std::slice::from_ref(&a)),
        );
        assert!(!m.health().ok);
    }
}
