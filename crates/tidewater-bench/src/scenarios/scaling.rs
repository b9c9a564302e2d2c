//! Scaling (issue 6, item 6): drain throughput as the changes spread over
//! more tables, and with ~2 KiB rows, each beside `pg_recvlogical`.

use super::drain::{drain, Drain};
use crate::error::Result;
use crate::report::{Figure, Target};
use crate::runner::Apply;
use crate::source::Kind;
use crate::workload::{self, Width};
use crate::Bench;

const SCENARIO: &str = "PostgreSQL scaling";

pub const METHOD: &str = "the streaming measurement of `pg-stream` (same mix, same baseline: `pg_recvlogical` on \
    a copy of tidewater's slot), with the changes spread evenly over 1, 10 and 100 tables of narrow rows \
    (each table gets its share of the mix, transactions interleaved round-robin), and once over one table \
    whose rows carry an extra 2 KiB text column (`repeat(md5(id), 64)`).";

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let sizes = &bench.opts.sizes;
    let n = sizes.scaling_changes;
    let mut runs: Vec<(usize, Width)> = sizes
        .scaling_tables
        .iter()
        .map(|&t| (t, Width::Narrow))
        .collect();
    runs.push((1, Width::Wide));
    let mut figures = Vec::new();
    for (tables, width) in runs {
        let d = drain(
            bench,
            Drain {
                label: "scaling",
                kind: Kind::Postgres,
                tables,
                width,
                txns: workload::mixed(n, tables),
                baselines: true,
                verify: false,
                apply: Apply::default(),
            },
        )?;
        let rows = match width {
            Width::Narrow => "narrow rows",
            Width::Wide => "2 KiB rows",
        };
        let (tool, rate) = d.baseline_rate(0).expect("a baseline was measured");
        figures.push(
            Figure::new(
                SCENARIO,
                &format!("{tables} table(s), {rows}"),
                "changes/s",
                d.rate(),
            )
            .baseline(tool, rate)
            .target(Target::RatioAtLeast { min: 0.7 })
            .detail(d.describe()),
        );
    }
    Ok(figures)
}
