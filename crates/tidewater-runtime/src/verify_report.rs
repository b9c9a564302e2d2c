//! What `verify` found: per table the rows compared and the differences with example keys.
//! The same report comes from a local comparison and from `POST /verify` (as JSON).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The source position of the first comparison's snapshot.
    pub source_position: String,
    /// The replica's committed position when the comparison started.
    pub replica_position: Option<String>,
    /// Comparison rounds: 1, plus one per re-check of the keys that differed (while `run`
    /// applies changes, a key can differ only because it changed after the snapshot).
    pub rounds: u32,
    /// The comparison ran inside the running `tidewater run` (the replica was moving).
    pub live: bool,
    /// The replica is remote (BigQuery): compared from this process, by its stored position,
    /// while a `run` elsewhere may be moving it.
    #[serde(default)]
    pub remote: bool,
    pub tables: Vec<TableReport>,
    /// Source rows read in the first round, over all tables.
    pub rows: u64,
    pub seconds: f64,
    pub notes: Vec<String>,
}

pub use tidewater_core::replica::{Examples, TableReport};

impl VerifyReport {
    pub fn differences(&self) -> u64 {
        self.tables.iter().map(TableReport::differences).sum()
    }

    pub fn tables_differing(&self) -> usize {
        self.tables.iter().filter(|t| t.differences() > 0).count()
    }

    pub fn rows_per_sec(&self) -> u64 {
        (self.rows as f64 / self.seconds.max(1e-6)) as u64
    }

    /// The text `tidewater verify` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let replica = self.replica_position.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "source snapshot at {}; replica at {replica}{}",
            self.source_position,
            if self.live {
                " (live, while run applies changes)"
            } else if self.remote {
                " (its stored position)"
            } else {
                " (not running)"
            }
        );
        let width = self
            .tables
            .iter()
            .map(|t| t.table.len() + 10)
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "{:<width$} {:>12} {:>10} {:>10} {:>10}",
            "table", "rows", "missing", "extra", "differing"
        );
        for t in &self.tables {
            let name = if t.keyed {
                t.table.clone()
            } else {
                format!("{} (no key)", t.table)
            };
            let differing = if t.keyed {
                t.differing.to_string()
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{name:<width$} {:>12} {:>10} {:>10} {:>10}",
                t.rows, t.missing, t.extra, differing
            );
            if let Some(p) = &t.problem {
                let _ = writeln!(out, "  not compared: {p}");
            }
            for (kind, keys, n) in [
                ("missing", &t.examples.missing, t.missing),
                ("extra", &t.examples.extra, t.extra),
                ("differing", &t.examples.differing, t.differing),
            ] {
                if keys.is_empty() {
                    continue;
                }
                let more = n.saturating_sub(keys.len() as u64);
                let tail = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "  {:<10} {}{tail}",
                    format!("{kind}:"),
                    keys.join("; ")
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let verdict = match self.differences() {
            0 => "equal".to_string(),
            d => format!(
                "DIFFERENT: {d} difference{} in {} table{}",
                if d == 1 { "" } else { "s" },
                self.tables_differing(),
                if self.tables_differing() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        };
        let _ = writeln!(
            out,
            "verified {} table{}, {} rows in {:.1} s ({} rows/s, {} round{}): {verdict}",
            self.tables.len(),
            if self.tables.len() == 1 { "" } else { "s" },
            self.rows,
            self.seconds,
            self.rows_per_sec(),
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_examples_and_verdict() {
        let report = VerifyReport {
            source_position: "0/10".into(),
            replica_position: Some("0/12".into()),
            rounds: 2,
            live: false,
            remote: false,
            rows: 1000,
            seconds: 0.5,
            tables: vec![
                TableReport {
                    table: "public.items".into(),
                    keyed: true,
                    rows: 990,
                    missing: 3,
                    examples: Examples {
                        missing: vec!["id=1".into(), "id=2".into()],
                        ..Examples::default()
                    },
                    ..TableReport::default()
                },
                TableReport {
                    table: "public.notes".into(),
                    rows: 10,
                    ..TableReport::default()
                },
            ],
            notes: vec![],
        };
        let text = report.render();
        assert!(text.contains("public.notes (no key)"), "{text}");
        assert!(
            text.contains("missing:   id=1; id=2 (and 1 more)"),
            "{text}"
        );
        assert!(
            text.contains(
                "1000 rows in 0.5 s (2000 rows/s, 2 rounds): DIFFERENT: 3 differences in 1 table"
            ),
            "{text}"
        );
        assert_eq!(report.differences(), 3);
    }
}
