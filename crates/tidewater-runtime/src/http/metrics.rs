//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use tidewater_core::histogram::HistogramSnapshot;
use tidewater_core::replica::SinkMetrics;
use tidewater_core::stats::now_us;

use crate::monitor::{Monitor, Phase};

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(o: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    header(o, name, "histogram", help);
    for (bound, count) in &h.buckets {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(o, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
}

/// The sink's own metrics (BigQuery: the bytes its jobs processed).
fn sink_metrics(o: &mut String, metrics: &dyn SinkMetrics) {
    for metric in metrics.metrics() {
        let kind = if metric.counter { "counter" } else { "gauge" };
        header(o, metric.name, kind, metric.help);
        for (labels, value) in metric.samples {
            match labels {
                Some((name, v)) => {
                    let _ = writeln!(o, "{}{{{name}=\"{}\"}} {value}", metric.name, label(&v));
                }
                None => {
                    let _ = writeln!(o, "{} {value}", metric.name);
                }
            }
        }
    }
}

pub fn render(m: &Monitor) -> String {
    let s = &m.stats;
    let mut o = String::with_capacity(4096);
    let (phase, _) = m.phase();
    let health = m.health();

    header(
        &mut o,
        "tidewater_up",
        "gauge",
        "1 while streaming and not stalled (what /health reports).",
    );
    let _ = writeln!(o, "tidewater_up {}", u8::from(health.ok));
    header(
        &mut o,
        "tidewater_phase",
        "gauge",
        "The pipeline's phase: 1 for the current one.",
    );
    for p in [
        Phase::Starting,
        Phase::Snapshot,
        Phase::Streaming,
        Phase::Retrying,
        Phase::Stopping,
    ] {
        let _ = writeln!(
            o,
            "tidewater_phase{{phase=\"{}\"}} {}",
            p.as_str(),
            u8::from(p == phase)
        );
    }

    header(
        &mut o,
        "tidewater_changes_applied_total",
        "counter",
        "Changes committed to the replica by this process, per table and kind.",
    );
    for (table, counts) in s.table_counts() {
        for (kind, n) in counts.by_kind() {
            let _ = writeln!(
                o,
                "tidewater_changes_applied_total{{table=\"{}\",kind=\"{kind}\"}} {n}",
                label(&table)
            );
        }
    }
    header(
        &mut o,
        "tidewater_transactions_applied_total",
        "counter",
        "Source transactions committed to the replica by this process.",
    );
    let _ = writeln!(
        o,
        "tidewater_transactions_applied_total {}",
        s.transactions_applied.load(Relaxed)
    );
    header(
        &mut o,
        "tidewater_batches_total",
        "counter",
        "Replica commits (each holds one or more whole source transactions).",
    );
    let _ = writeln!(o, "tidewater_batches_total {}", s.batches.load(Relaxed));
    histogram(
        &mut o,
        "tidewater_batch_changes",
        "Changes per committed batch.",
        &s.batch_changes.snapshot(),
    );
    histogram(
        &mut o,
        "tidewater_batch_apply_seconds",
        "Time spent writing and committing one batch in DuckDB.",
        &s.batch_apply_seconds.snapshot(),
    );
    histogram(
        &mut o,
        "tidewater_freshness_seconds",
        "Source commit to replica commit, per transaction.",
        &s.freshness_seconds.snapshot(),
    );
    header(
        &mut o,
        "tidewater_commit_seconds_total",
        "counter",
        "Time spent in DuckDB commits.",
    );
    let _ = writeln!(
        o,
        "tidewater_commit_seconds_total {}",
        s.commit_us_total.load(Relaxed) as f64 / 1e6
    );

    let applied = s.last_apply_us.load(Relaxed);
    let committed = s.last_source_commit_us.load(Relaxed);
    if applied != 0 {
        header(
            &mut o,
            "tidewater_replica_lag_seconds",
            "gauge",
            "Source commit to replica commit of the last applied transaction.",
        );
        let _ = writeln!(
            o,
            "tidewater_replica_lag_seconds {}",
            (applied - committed).max(0) as f64 / 1e6
        );
        header(
            &mut o,
            "tidewater_last_apply_timestamp_seconds",
            "gauge",
            "When the last batch was committed (Unix time).",
        );
        let _ = writeln!(
            o,
            "tidewater_last_apply_timestamp_seconds {}",
            applied as f64 / 1e6
        );
        header(
            &mut o,
            "tidewater_seconds_since_last_apply",
            "gauge",
            "Time since the last batch was committed.",
        );
        let _ = writeln!(
            o,
            "tidewater_seconds_since_last_apply {}",
            (now_us() - applied).max(0) as f64 / 1e6
        );
    }

    let copied = s.snapshot_copied();
    let estimates = m.estimates();
    header(
        &mut o,
        "tidewater_snapshot_rows_copied",
        "gauge",
        "Rows of the initial snapshot written so far, per table (this process).",
    );
    for (table, n) in &copied {
        let _ = writeln!(
            o,
            "tidewater_snapshot_rows_copied{{table=\"{}\"}} {n}",
            label(table)
        );
    }
    header(
        &mut o,
        "tidewater_snapshot_rows_estimate",
        "gauge",
        "The source's row estimate per table when the snapshot started.",
    );
    for (table, n) in &estimates {
        let _ = writeln!(
            o,
            "tidewater_snapshot_rows_estimate{{table=\"{}\"}} {n}",
            label(table)
        );
    }

    let copies = s.copy_progress();
    for (name, kind, help) in [
        (
            "tidewater_copy_rows",
            "gauge",
            "Rows copied per table by the chunked initial snapshot (committed with its chunks).",
        ),
        (
            "tidewater_copy_chunks",
            "gauge",
            "Chunks copied per table by the chunked initial snapshot.",
        ),
        (
            "tidewater_copy_done",
            "gauge",
            "1 when every row of the table has been copied.",
        ),
    ] {
        header(&mut o, name, kind, help);
        for c in &copies {
            let v = match name {
                "tidewater_copy_rows" => c.rows,
                "tidewater_copy_chunks" => c.chunks,
                _ => u64::from(c.done),
            };
            let _ = writeln!(o, "{name}{{table=\"{}\"}} {v}", label(&c.table.to_string()));
        }
    }
    header(
        &mut o,
        "tidewater_copy_eta_seconds",
        "gauge",
        "Seconds the table's copy under way has left, at the rate this process has copied it and the source's row estimate (absent while not known).",
    );
    let report = m.cached_report();
    for c in &copies {
        if let Some(eta) = m.copy_eta(c, report.as_deref()) {
            let _ = writeln!(
                o,
                "tidewater_copy_eta_seconds{{table=\"{}\"}} {:.0}",
                label(&c.table.to_string()),
                eta.as_secs_f64()
            );
        }
    }
    header(
        &mut o,
        "tidewater_replica_consistent",
        "gauge",
        "1 when the replica equals the source at a transaction boundary: it has a committed position and no copy is under way (0 until that is known, at the start).",
    );
    let _ = writeln!(
        o,
        "tidewater_replica_consistent {}",
        u8::from(m.consistent())
    );

    let position = s
        .position()
        .or_else(|| report.as_ref().and_then(|r| r.position.clone()));
    if let Some(p) = position {
        header(
            &mut o,
            "tidewater_source_position_info",
            "gauge",
            "The source position the replica is committed at (LSN, GTID set or file:pos).",
        );
        let _ = writeln!(
            o,
            "tidewater_source_position_info{{source_type=\"{}\",position=\"{}\"}} 1",
            label(&m.source_type),
            label(&p)
        );
    }
    if let Some(r) = &report {
        header(
            &mut o,
            "tidewater_replica_rows",
            "gauge",
            "Rows in each replica table (collected every few seconds).",
        );
        for t in &r.tables {
            let _ = writeln!(
                o,
                "tidewater_replica_rows{{table=\"{}\"}} {}",
                label(&t.table),
                t.rows
            );
        }
    }

    crate::degraded::render_metric(&mut o, &s.unreplicated);
    crate::verify_passes::render_metrics(&mut o, &m.verify_passes, label);
    if let Some(metrics) = m.sink_metrics() {
        sink_metrics(&mut o, metrics.as_ref());
    }
    header(
        &mut o,
        "tidewater_errors_total",
        "counter",
        "Errors that interrupted the pipeline (retried or fatal).",
    );
    let _ = writeln!(o, "tidewater_errors_total {}", m.errors_total.load(Relaxed));
    header(
        &mut o,
        "tidewater_restarts_total",
        "counter",
        "Times the pipeline resumed from the committed position after an error.",
    );
    let _ = writeln!(o, "tidewater_restarts_total {}", m.restarts.load(Relaxed));
    header(
        &mut o,
        "tidewater_start_time_seconds",
        "gauge",
        "When this process started (Unix time).",
    );
    let _ = writeln!(
        o,
        "tidewater_start_time_seconds {}",
        m.started_us as f64 / 1e6
    );
    o
}
