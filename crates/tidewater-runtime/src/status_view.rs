//! The facts `tidewater status`, `GET /status`, the status page and the status file all show:
//! what the replica holds (`report`, read through the sink's `Replica`, the same whether or
//! not `run` runs) and,
//! while `run` runs, what that process is doing (`live`).

use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};
use tidewater_core::replica::StatusReport;
use tidewater_core::stats::{now_us, KindCounts};
use tidewater_core::time::format_utc_micros;

use crate::degraded::NotReplicated;
use crate::monitor::{Monitor, RecentError};
use crate::verify_passes::PassesView;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// The DuckDB file.
    pub replica: String,
    pub running: bool,
    /// The running process, if any.
    pub pid: Option<u32>,
    pub published_at_us: i64,
    /// Source commit → replica commit of the last transaction this process applied.
    pub last_lag_ms: i64,
    /// The replica's committed state (`_tidewater` schema and row counts).
    pub report: StatusReport,
    pub live: Option<LiveStatus>,
    /// A remote replica (`remote`): read from the warehouse, not from a process or file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveStatus {
    pub phase: String,
    pub phase_since: String,
    pub healthy: bool,
    pub health: String,
    /// The HTTP endpoint (`/status`, `/metrics`, `/query`, ...).
    pub http: Option<String>,
    /// The PostgreSQL wire-protocol endpoint (`[sql] listen`), for psql and BI tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    pub started_at: String,
    pub source_type: String,
    /// Position of the last batch this process committed.
    pub position: Option<String>,
    pub transactions: u64,
    pub changes: u64,
    pub batches: u64,
    pub restarts: u64,
    pub errors: u64,
    pub last_apply: Option<String>,
    pub tables: Vec<LiveTable>,
    pub recent_errors: Vec<RecentError>,
    /// Selected tables the source cannot replicate, with why: health is `degraded`.
    #[serde(default)]
    pub not_replicated: Vec<NotReplicated>,
    /// Continuous verification (`[verify]`), when on: the last pass and the pass counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<PassesView>,
    /// The replica equals the source at a transaction boundary: no chunked copy is under way
    /// (every table copied, and the stream past the last chunk's horizon).
    #[serde(default = "yes")]
    pub consistent: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveTable {
    pub table: String,
    /// Changes this process committed, per kind.
    pub changes: KindCounts,
    /// Initial-snapshot rows written so far (committed or in the open snapshot).
    pub snapshot_rows_copied: u64,
    /// The source's estimate of the table's rows, when it has one.
    pub snapshot_rows_estimate: Option<u64>,
    /// The table's chunked copy (`tidewater_core::copy`): rows and chunks copied (committed
    /// or in the open batch), done, consistent. `None`: not copied in chunks.
    #[serde(default)]
    pub copy: Option<tidewater_core::CopyProgress>,
    /// The time the copy under way has left, at the rate this process has copied it and the
    /// source's row estimate (`tidewater_core::copy_eta`); absent while not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_eta_seconds: Option<f64>,
}

impl StatusView {
    /// The replica of a stopped pipeline.
    pub fn stopped(replica: &std::path::Path, report: StatusReport) -> StatusView {
        StatusView {
            replica: replica.display().to_string(),
            running: false,
            pid: None,
            published_at_us: now_us(),
            last_lag_ms: 0,
            report,
            live: None,
            remote: false,
        }
    }

    /// A remote replica (BigQuery), read from its dataset: whether a `run` elsewhere writes
    /// it is not known here.
    pub fn remote(name: &str, report: StatusReport) -> StatusView {
        StatusView {
            replica: name.to_string(),
            last_lag_ms: report.last_lag_ms.unwrap_or(0),
            remote: true,
            ..StatusView::stopped(std::path::Path::new(name), report)
        }
    }

    /// The running process: `report` as last collected from the replica.
    pub fn live(monitor: &Monitor, report: StatusReport) -> StatusView {
        let stats = &monitor.stats;
        let applied = stats.last_apply_us.load(Relaxed);
        let committed = stats.last_source_commit_us.load(Relaxed);
        let (phase, since) = monitor.phase();
        let health = monitor.health();
        let counts = stats.table_counts();
        let copied = stats.snapshot_copied();
        let estimates = monitor.estimates();
        let copies = stats.copy_progress();
        // From the report when it can be (the same committed state as its totals); the
        // counters only before the replica is open.
        let (transactions, changes) = monitor.this_run(&report).unwrap_or((
            stats.transactions_applied.load(Relaxed),
            stats.rows_applied.load(Relaxed),
        ));
        let mut names: Vec<&String> = report.tables.iter().map(|t| &t.table).collect();
        names.extend(counts.keys().chain(copied.keys()).chain(estimates.keys()));
        let copy_names: Vec<String> = copies.iter().map(|c| c.table.to_string()).collect();
        names.extend(copy_names.iter());
        names.sort();
        names.dedup();
        let tables = names
            .into_iter()
            .map(|t| {
                let copy = copies.iter().find(|c| c.table.to_string() == *t).cloned();
                let eta = copy
                    .as_ref()
                    .and_then(|c| monitor.copy_eta(c, Some(&report)));
                LiveTable {
                    table: t.clone(),
                    changes: counts.get(t).copied().unwrap_or_default(),
                    snapshot_rows_copied: copied.get(t).copied().unwrap_or(0),
                    snapshot_rows_estimate: estimates.get(t).copied(),
                    copy,
                    copy_eta_seconds: eta.map(|d| d.as_secs_f64()),
                }
            })
            .collect();
        let live = LiveStatus {
            phase: phase.as_str().into(),
            phase_since: format_utc_micros(since),
            healthy: health.ok,
            health: health.reason,
            http: monitor.http_addr().map(|a| a.to_string()),
            sql: monitor.sql_addr().map(|a| a.to_string()),
            started_at: format_utc_micros(monitor.started_us),
            source_type: monitor.source_type.clone(),
            position: stats.position(),
            transactions,
            changes,
            batches: stats.batches.load(Relaxed),
            restarts: monitor.restarts.load(Relaxed),
            errors: monitor.errors_total.load(Relaxed),
            last_apply: (applied != 0).then(|| format_utc_micros(applied)),
            tables,
            recent_errors: monitor.recent_errors(),
            not_replicated: crate::degraded::list(&stats.unreplicated),
            consistent: monitor.consistent(),
            verify: monitor.verify_passes.view(),
        };
        StatusView {
            replica: monitor.db_path.display().to_string(),
            running: true,
            pid: Some(std::process::id()),
            published_at_us: now_us(),
            last_lag_ms: if applied == 0 {
                0
            } else {
                (applied - committed) / 1000
            },
            report,
            live: Some(live),
            remote: false,
        }
    }

    /// The text `tidewater status` prints.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let r = &self.report;
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        match (&self.live, self.pid) {
            (Some(l), Some(pid)) => {
                let age = (now_us() - self.published_at_us).max(0) / 1_000_000;
                let _ = writeln!(
                    o,
                    "replica: {} (held by running tidewater pid {pid}; status as of {age}s ago)",
                    self.replica
                );
                let _ = writeln!(
                    o,
                    "phase:               {} since {}",
                    l.phase, l.phase_since
                );
                let health = match (l.healthy, l.health.starts_with("degraded:")) {
                    (false, _) => "NOT OK: ",
                    (true, true) => "", // says so itself
                    (true, false) => "ok: ",
                };
                let _ = writeln!(o, "health:              {health}{}", l.health);
                crate::degraded::render_text(&mut o, &l.not_replicated);
                if let Some(v) = &l.verify {
                    crate::verify_passes::render_text(&mut o, v);
                }
                if let Some(http) = &l.http {
                    let _ = writeln!(o, "http:                http://{http}/");
                }
                if let Some(sql) = l
                    .sql
                    .as_deref()
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                {
                    let _ = writeln!(
                        o,
                        "sql:                 psql -h {} -p {}",
                        sql.ip(),
                        sql.port()
                    );
                }
            }
            _ if self.remote => {
                let _ = writeln!(o, "replica: {}", self.replica);
            }
            _ => {
                let _ = writeln!(o, "replica: {} (not running)", self.replica);
            }
        }
        let _ = writeln!(o, "position:            {}", or_dash(&r.position));
        let _ = writeln!(o, "last source commit:  {}", or_dash(&r.last_source_commit));
        let _ = writeln!(o, "last apply:          {}", or_dash(&r.last_apply));
        if let Some((position, changes)) = &r.partial {
            let _ = writeln!(
                o,
                "split transaction:   {position}: {changes} changes applied, the rest to follow"
            );
        }
        if self.live.is_some() || r.last_lag_ms.is_some() {
            let _ = writeln!(o, "last lag:            {} ms", self.last_lag_ms);
        }
        if let Some(checkpointed) = r.checkpointed {
            let _ = writeln!(
                o,
                "file:                {}",
                checkpoint_text(checkpointed, r.wal_bytes)
            );
        }
        let _ = writeln!(o, "transactions:        {}", r.transactions_applied);
        let _ = writeln!(o, "changes:             {}", r.changes_applied);
        if let Some(l) = &self.live {
            let _ = writeln!(
                o,
                "this run:            {} transactions, {} changes, {} batches, {} restarts, {} errors (since {})",
                l.transactions, l.changes, l.batches, l.restarts, l.errors, l.started_at
            );
        }
        let snapshot = self.live.as_ref().is_some_and(|l| l.phase == "snapshot");
        let _ = write!(
            o,
            "{:<40} {:>12} {:>12} {:>7}",
            "table", "rows", "changes", "schema"
        );
        o.push_str(if snapshot { "  snapshot\n" } else { "\n" });
        for t in &r.tables {
            let _ = write!(
                o,
                "{:<40} {:>12} {:>12} {:>7}",
                t.table, t.rows, t.changes_applied, t.schema_version
            );
            let lt = self
                .live
                .as_ref()
                .and_then(|l| l.tables.iter().find(|x| x.table == t.table));
            match lt.filter(|_| snapshot) {
                Some(lt) => {
                    let _ = writeln!(o, "  {}", snapshot_progress(lt));
                }
                None => o.push('\n'),
            }
        }
        if let Some(l) = self.live.as_ref().filter(|l| !l.consistent) {
            let _ = writeln!(
                o,
                "consistent:          no: a copy is under way (the initial one, or tables copied again; rows are copied in chunks while streaming)"
            );
            for t in &l.tables {
                if let Some(c) = &t.copy {
                    let state = match (c.done, c.consistent) {
                        (_, true) => "consistent",
                        (true, false) => "copied; consistent once the stream passes its last chunk",
                        (false, _) => "copying",
                    };
                    let _ = writeln!(
                        o,
                        "  copy {:<34} {:>12} rows {:>8} chunks  {state}{}",
                        t.table,
                        c.rows,
                        c.chunks,
                        time_left(t)
                    );
                }
            }
        }
        if let Some(l) = &self.live {
            for e in l.recent_errors.iter().take(5) {
                let _ = writeln!(o, "error at {}: {}", e.at, e.message);
            }
        }
        o
    }
}

/// "12,345 of ~50,000 rows (24%)" or "12,345 rows".
pub fn snapshot_progress(t: &LiveTable) -> String {
    match t.snapshot_rows_estimate.filter(|&e| e > 0) {
        Some(e) => format!(
            "{} of ~{} rows ({}%)",
            t.snapshot_rows_copied,
            e,
            (t.snapshot_rows_copied * 100 / e).min(100)
        ),
        None => format!("{} rows", t.snapshot_rows_copied),
    }
}

/// ", ~1m 5s left" while the table's copy has a known remaining time, else nothing.
pub fn time_left(t: &LiveTable) -> String {
    let Some(secs) = t.copy_eta_seconds else {
        return String::new();
    };
    let secs = secs.round() as u64;
    let text = match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    };
    format!(", ~{text} left")
}

/// Whether the DuckDB file alone is complete, and what to do when it is not.
fn checkpoint_text(checkpointed: bool, wal_bytes: u64) -> String {
    if checkpointed {
        "checkpointed (the .duckdb file alone holds every commit)".into()
    } else {
        format!(
            "not checkpointed: {} KiB of commits are only in the .wal file next to it (copy or \
             move the two together; a clean stop checkpoints)",
            wal_bytes.div_ceil(1024)
        )
    }
}
