//! Memory (issue 6, item 5): peak RSS of tidewater draining one large
//! single-transaction insert, for growing sizes.

use super::drain::{drain, Drain};
use crate::error::Result;
use crate::report::{Figure, Target};
use crate::source::Kind;
use crate::workload::{self, Width};
use crate::Bench;

const SCENARIO: &str = "Memory";
const LIMIT_MIB: f64 = 300.0;
/// "Flat": the largest transaction may cost at most this much more than the smallest.
const FLAT: f64 = 1.25;

pub const METHOD: &str = "one `INSERT … SELECT generate_series(1, N)` transaction into a narrow table (bigint \
    key, int, text, numeric, timestamptz) is written while tidewater is stopped; then tidewater drains it and \
    its peak resident memory is read from `VmHWM` in `/proc/<pid>/status` (the whole process life, start and \
    DuckDB included) once the slot confirms the transaction. Flatness is the peak of the largest transaction \
    over the peak of the smallest. No baseline: the targets are absolute.";

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut peaks = Vec::new();
    for &rows in &bench.opts.sizes.memory_rows {
        let d = drain(
            bench,
            Drain {
                label: "memory",
                kind: Kind::Postgres,
                tables: 1,
                width: Width::Narrow,
                txns: workload::single_insert(rows),
                baselines: false,
                verify: false,
            },
        )?;
        peaks.push((rows, d.peak_rss_mib));
        figures.push(
            Figure::new(
                SCENARIO,
                &format!("peak RSS draining one {rows}-row transaction"),
                "MiB",
                d.peak_rss_mib,
            )
            .target(Target::AtMost { max: LIMIT_MIB })
            .detail(format!("{}; {:.0} rows/s", d.describe(), d.rate())),
        );
    }
    if let (Some(&(small, low)), Some(&(large, high))) = (peaks.first(), peaks.last()) {
        if large > small {
            figures.push(
                Figure::new(
                    SCENARIO,
                    &format!("peak RSS growth, {small} → {large} rows"),
                    "×",
                    high / low,
                )
                .target(Target::AtMost { max: FLAT }),
            );
        }
    }
    Ok(figures)
}
