//! Degraded: the pipeline streams, but a selected table is not replicated (the source lists
//! it in `Stats::unreplicated` with the reason, see `tidewater_core::unreplicated`). This is
//! what `/health`, `status`, `/status`, the status page and `/metrics` say about it.
//!
//! Health semantics: a degraded pipeline answers `/health` with **200** and a body that
//! starts with `degraded:`, and `tidewater_up` stays 1. A 503 would have an orchestrator's
//! liveness probe restart the process, which cannot fix a missing privilege and interrupts
//! the tables that do replicate (the source retries the refused table on its own every poll),
//! and a readiness probe take a replica that serves correct data for its other tables out of
//! service. Alert on `tidewater_tables_not_replicated > 0` (or the body) instead. The same
//! holds while tables are copied again beside replica tables that keep their rows
//! (`Monitor::health`, "copying again").

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use tidewater_core::Unreplicated;

/// A selected table that is not replicated, and why (with the fix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReplicated {
    pub table: String,
    pub reason: String,
}

pub fn list(u: &Unreplicated) -> Vec<NotReplicated> {
    u.list()
        .into_iter()
        .map(|(t, reason)| NotReplicated {
            table: t.to_string(),
            reason,
        })
        .collect()
}

/// The `/health` reason of a streaming pipeline, prefixed with what is not replicated when
/// something is (`None`: nothing is, the pipeline is fully healthy).
pub fn health_reason(u: &Unreplicated, streaming: &str) -> Option<String> {
    let tables = list(u);
    if tables.is_empty() {
        return None;
    }
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{} ({})", t.table, t.reason))
        .collect();
    Some(format!(
        "degraded: {} selected table{} not replicated: {}; {streaming}",
        tables.len(),
        if tables.len() == 1 { " is" } else { "s are" },
        names.join("; ")
    ))
}

/// `tidewater status` lines: one per table not replicated.
pub fn render_text(o: &mut String, tables: &[NotReplicated]) {
    for t in tables {
        let _ = writeln!(o, "NOT REPLICATED:      {}: {}", t.table, t.reason);
    }
}

/// The status page's section (nothing when every selected table replicates).
pub fn render_html(o: &mut String, tables: &[NotReplicated], esc: impl Fn(&str) -> String) {
    if tables.is_empty() {
        return;
    }
    o.push_str(
        "<h2>selected tables not replicated</h2><table id=\"not-replicated\">\
         <tr><th>table</th><th>why (and the fix)</th></tr>",
    );
    for t in tables {
        let name = esc(&t.table);
        let _ = write!(
            o,
            "<tr data-table=\"{name}\"><td>{name}</td><td class=\"reason\">{}</td></tr>",
            esc(&t.reason)
        );
    }
    o.push_str("</table>");
}

/// The `/metrics` gauge.
pub fn render_metric(o: &mut String, u: &Unreplicated) {
    let _ = writeln!(
        o,
        "# HELP tidewater_tables_not_replicated Selected tables the source cannot replicate \
         (the reasons are in /status and on the status page); /health says degraded while > 0.\n\
         # TYPE tidewater_tables_not_replicated gauge\ntidewater_tables_not_replicated {}",
        u.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::TableId;

    #[test]
    fn health_names_each_table_and_its_reason() {
        let u = Unreplicated::default();
        assert_eq!(health_reason(&u, "streaming"), None);
        u.set(&TableId::new("public", "a"), "not owned");
        assert_eq!(
            health_reason(&u, "streaming").unwrap(),
            "degraded: 1 selected table is not replicated: public.a (not owned); streaming"
        );
        let mut o = String::new();
        render_metric(&mut o, &u);
        assert!(o.ends_with("tidewater_tables_not_replicated 1\n"), "{o}");
    }
}
