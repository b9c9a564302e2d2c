//! What continuous verification (`[verify] interval`) has found, for the places that show
//! it: `/metrics` (`tidewater_verify_differences{table}` of the last completed pass, its time,
//! pass counts), `/health` (degraded while the last pass found differences), `tidewater
//! status`, `/status` and the status page (the last pass: when, clean or not, per-table
//! differences with example keys).
//!
//! Health semantics follow `crate::degraded`: differences make `/health` answer 200 with a
//! body starting `degraded:`, not 503. The process cannot fix the replica by restarting, and
//! the other tables are correct; with `repair = true` the differing tables are copied again
//! and the next clean pass ends the degradation.

use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tidewater_core::stats::now_us;
use tidewater_core::time::format_utc_micros;

use crate::config::ContinuousVerify;
use crate::verify_report::{TableReport, VerifyReport};

/// Example keys kept per table and kind of difference.
pub const MAX_EXAMPLES: usize = 5;

/// The state of continuous verification (a cheap handle: clones share it).
#[derive(Debug, Clone, Default)]
pub struct Passes(Arc<Mutex<Option<PassesView>>>);

/// Continuous verification as `/status` shows it (`live.verify`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PassesView {
    pub interval_seconds: u64,
    pub max_rows_per_second: u64,
    pub repair: bool,
    /// When the pass that runs now started (none runs: `None`).
    pub running_since: Option<String>,
    pub passes_equal: u64,
    pub passes_different: u64,
    /// Passes that ended with an error (the source unreachable, ...): see `last_error`.
    pub passes_failed: u64,
    /// Tables asked to be copied again by repair, over all passes.
    pub tables_repaired: u64,
    pub last: Option<LastPass>,
    pub last_error: Option<String>,
}

/// The last completed pass.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LastPass {
    pub finished_at: String,
    pub finished_us: i64,
    pub seconds: f64,
    pub rows: u64,
    pub source_position: String,
    /// Missing + extra + differing rows (and tables that could not be compared), all tables.
    pub differences: u64,
    pub tables: Vec<TableReport>,
    /// Tables this pass asked to copy again (`repair = true`).
    pub repairing: Vec<String>,
}

impl LastPass {
    pub fn new(report: &VerifyReport, repairing: Vec<String>) -> LastPass {
        let finished_us = now_us();
        LastPass {
            finished_at: format_utc_micros(finished_us),
            finished_us,
            seconds: report.seconds,
            rows: report.rows,
            source_position: report.source_position.clone(),
            differences: report.differences(),
            tables: report.tables.clone(),
            repairing,
        }
    }

    fn differing(&self) -> impl Iterator<Item = &TableReport> + '_ {
        self.tables.iter().filter(|t| t.differences() > 0)
    }
}

impl Passes {
    fn lock(&self) -> MutexGuard<'_, Option<PassesView>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Continuous verification is on, with these settings.
    pub fn enable(&self, settings: &ContinuousVerify) {
        *self.lock() = Some(PassesView {
            interval_seconds: settings.interval.as_secs(),
            max_rows_per_second: settings.max_rows_per_second,
            repair: settings.repair,
            ..PassesView::default()
        });
    }

    fn update(&self, f: impl FnOnce(&mut PassesView)) {
        if let Some(v) = self.lock().as_mut() {
            f(v)
        }
    }

    pub fn started(&self) {
        self.update(|v| v.running_since = Some(format_utc_micros(now_us())));
    }

    pub fn completed(&self, pass: LastPass) {
        self.update(|v| {
            v.running_since = None;
            if pass.differences == 0 {
                v.passes_equal += 1;
            } else {
                v.passes_different += 1;
            }
            v.tables_repaired += pass.repairing.len() as u64;
            v.last = Some(pass);
        });
    }

    pub fn failed(&self, error: String) {
        self.update(|v| {
            v.running_since = None;
            v.passes_failed += 1;
            v.last_error = Some(error);
        });
    }

    /// `None` while continuous verification is off.
    pub fn view(&self) -> Option<PassesView> {
        self.lock().clone()
    }

    /// The `/health` reason, degraded when the last completed pass found differences (`None`:
    /// it did not, `reason` stands). `reason` may be degraded already (a table not replicated).
    pub fn health_reason(&self, reason: &str) -> Option<String> {
        let view = self.view()?;
        let last = view.last.as_ref().filter(|l| l.differences > 0)?;
        let tables: Vec<String> = last
            .differing()
            .map(|t| format!("{} ({})", t.table, counts(t)))
            .collect();
        let then = if last.repairing.is_empty() {
            "set [verify] repair = true, or re-snapshot"
        } else {
            "repair is copying them again"
        };
        let rest = reason.strip_prefix("degraded: ").unwrap_or(reason);
        Some(format!(
            "degraded: the verification finished at {} found {} difference{} in {}: {then}; {rest}",
            last.finished_at,
            last.differences,
            plural(last.differences),
            tables.join(", ")
        ))
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// "1 missing, 0 extra, 2 differing" (or why the table was not compared).
fn counts(t: &TableReport) -> String {
    match &t.problem {
        Some(p) => format!("not compared: {p}"),
        None => format!(
            "{} missing, {} extra, {} differing",
            t.missing, t.extra, t.differing
        ),
    }
}

/// "missing: id=5; differing: id=7; id=8" (the example keys of a table).
fn examples(t: &TableReport) -> String {
    let e = &t.examples;
    [
        ("missing", &e.missing),
        ("extra", &e.extra),
        ("differing", &e.differing),
    ]
    .iter()
    .filter(|(_, keys)| !keys.is_empty())
    .map(|(kind, keys)| format!("{kind}: {}", keys.join("; ")))
    .collect::<Vec<_>>()
    .join("; ")
}

/// One line saying how the last pass went.
fn summary(v: &PassesView) -> String {
    let mut s = format!(
        "every {} s at most {} rows/s, repair {}; passes: {} equal, {} different, {} failed",
        v.interval_seconds,
        v.max_rows_per_second,
        if v.repair { "on" } else { "off" },
        v.passes_equal,
        v.passes_different,
        v.passes_failed
    );
    if let Some(since) = &v.running_since {
        let _ = write!(s, "; a pass runs since {since}");
    }
    s
}

fn last_line(l: &LastPass) -> String {
    let verdict = match l.differences {
        0 => "equal".to_string(),
        d => format!("DIFFERENT: {d} difference{}", plural(d)),
    };
    format!(
        "finished {} ({} rows in {:.1} s, source at {}): {verdict}",
        l.finished_at, l.rows, l.seconds, l.source_position
    )
}

/// `tidewater status` lines.
pub fn render_text(o: &mut String, v: &PassesView) {
    let _ = writeln!(o, "verify:              {}", summary(v));
    match &v.last {
        Some(l) => {
            let _ = writeln!(o, "last verify:         {}", last_line(l));
            for t in l.differing() {
                let _ = writeln!(o, "  {}: {}; {}", t.table, counts(t), examples(t));
            }
            if !l.repairing.is_empty() {
                let _ = writeln!(o, "  repair: copying again {}", l.repairing.join(", "));
            }
        }
        None => {
            let _ = writeln!(o, "last verify:         none completed yet");
        }
    }
    if let Some(e) = &v.last_error {
        let _ = writeln!(o, "last verify error:   {e}");
    }
}

/// The status page's section.
pub fn render_html(o: &mut String, v: &PassesView, esc: impl Fn(&str) -> String) {
    let _ = write!(
        o,
        "<h2>continuous verification</h2><p id=\"verify-summary\">{}</p>",
        esc(&summary(v))
    );
    let Some(l) = &v.last else {
        o.push_str("<p id=\"verify-last\">no pass completed yet</p>");
        return;
    };
    let class = if l.differences == 0 { "ok" } else { "warn" };
    let _ = write!(
        o,
        "<p id=\"verify-last\" class=\"{class}-text\">{}</p>",
        esc(&last_line(l))
    );
    if l.differences > 0 {
        o.push_str(
            "<table id=\"verify-differences\"><tr><th>table</th><th>missing</th><th>extra</th>\
             <th>differing</th><th>example keys</th></tr>",
        );
        for t in l.differing() {
            let name = esc(&t.table);
            let _ = write!(
                o,
                "<tr data-table=\"{name}\"><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                t.missing,
                t.extra,
                t.differing,
                esc(&match &t.problem {
                    Some(p) => format!("not compared: {p}"),
                    None => examples(t),
                })
            );
        }
        o.push_str("</table>");
    }
    if let Some(e) = &v.last_error {
        let _ = write!(o, "<p id=\"verify-error\">last failed pass: {}</p>", esc(e));
    }
}

/// The `/metrics` series (nothing while continuous verification is off).
pub fn render_metrics(o: &mut String, passes: &Passes, label: impl Fn(&str) -> String) {
    let Some(v) = passes.view() else {
        return;
    };
    let _ = writeln!(
        o,
        "# HELP tidewater_verify_passes_total Continuous verification passes by result \
         (equal, different, failed).\n# TYPE tidewater_verify_passes_total counter"
    );
    for (result, n) in [
        ("equal", v.passes_equal),
        ("different", v.passes_different),
        ("failed", v.passes_failed),
    ] {
        let _ = writeln!(
            o,
            "tidewater_verify_passes_total{{result=\"{result}\"}} {n}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP tidewater_verify_tables_repaired_total Tables continuous verification asked to \
         copy again (repair = true).\n# TYPE tidewater_verify_tables_repaired_total counter\n\
         tidewater_verify_tables_repaired_total {}",
        v.tables_repaired
    );
    let Some(l) = &v.last else {
        return;
    };
    let _ = writeln!(
        o,
        "# HELP tidewater_verify_last_completed_timestamp_seconds When the last completed \
         verification pass finished (Unix time).\n\
         # TYPE tidewater_verify_last_completed_timestamp_seconds gauge\n\
         tidewater_verify_last_completed_timestamp_seconds {}",
        l.finished_us as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "# HELP tidewater_verify_differences Rows missing, extra or differing in the replica \
         (1 for a table that could not be compared) per table, found by the last completed \
         verification pass; /health says degraded while any is > 0.\n\
         # TYPE tidewater_verify_differences gauge"
    );
    for t in &l.tables {
        let _ = writeln!(
            o,
            "tidewater_verify_differences{{table=\"{}\"}} {}",
            label(&t.table),
            t.differences()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(differing: u64) -> VerifyReport {
        VerifyReport {
            source_position: "0/1".into(),
            tables: vec![TableReport {
                table: "public.items".into(),
                keyed: true,
                rows: 10,
                differing,
                examples: crate::verify_report::Examples {
                    differing: (0..differing).map(|i| format!("id={i}")).collect(),
                    ..Default::default()
                },
                ..Default::default()
            }],
            rows: 10,
            ..Default::default()
        }
    }

    #[test]
    fn a_pass_with_differences_degrades_health_until_a_clean_one() {
        let p = Passes::default();
        p.completed(LastPass::new(&report(1), vec![]));
        assert!(p.view().is_none(), "off: nothing recorded");
        p.enable(&ContinuousVerify {
            interval: Duration::from_secs(60),
            max_rows_per_second: 100,
            repair: true,
        });
        p.completed(LastPass::new(&report(2), vec!["public.items".into()]));
        let h = p.health_reason("degraded: 1 table; streaming").unwrap();
        assert!(
            h.starts_with("degraded: the verification finished at ")
                && h.contains(
                    "found 2 differences in public.items (0 missing, 0 extra, 2 differing)"
                )
                && h.ends_with("repair is copying them again; 1 table; streaming"),
            "{h}"
        );
        let mut m = String::new();
        p_metrics(&p, &mut m);
        assert!(
            m.contains("tidewater_verify_differences{table=\"public.items\"} 2\n"),
            "{m}"
        );
        assert!(
            m.contains("tidewater_verify_passes_total{result=\"different\"} 1\n"),
            "{m}"
        );
        let mut t = String::new();
        render_text(&mut t, &p.view().unwrap());
        assert!(
            t.contains("  public.items: 0 missing, 0 extra, 2 differing; differing: id=0; id=1"),
            "{t}"
        );

        p.completed(LastPass::new(&report(0), vec![]));
        assert_eq!(p.health_reason("streaming"), None);
        let mut m = String::new();
        p_metrics(&p, &mut m);
        assert!(
            m.contains("tidewater_verify_differences{table=\"public.items\"} 0\n"),
            "{m}"
        );
        assert!(
            m.contains("tidewater_verify_tables_repaired_total 1\n"),
            "{m}"
        );
    }

    fn p_metrics(p: &Passes, o: &mut String) {
        render_metrics(o, p, |s| s.to_string());
    }
}
