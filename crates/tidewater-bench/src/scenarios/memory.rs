//! Memory (issue 6, item 5; issue 15): peak RSS of tidewater draining one large
//! single-transaction insert, and of its chunked initial snapshot of a large table, for
//! growing sizes.

use super::drain::{drain, Drain};
use super::snapshot;
use crate::error::Result;
use crate::report::{Figure, Target};
use crate::runner::Apply;
use crate::source::Kind;
use crate::workload::{self, Width};
use crate::Bench;

const SCENARIO: &str = "Memory";
const LIMIT_MIB: f64 = 300.0;
/// "Flat": the largest transaction may cost at most this much more than the smallest.
const FLAT: f64 = 1.25;

pub const METHOD: &str = "a PostgreSQL table of N rows (the `snapshot` scenario's table) is copied by a fresh \
    tidewater (the chunked initial snapshot, with `_log`), and its peak resident memory is read from `VmHWM` in \
    `/proc/<pid>/status` (the whole process life, start and DuckDB included) once the replica is consistent. \
    Then, for the same sizes, one `INSERT … SELECT generate_series(1, N)` transaction into a narrow table (bigint \
    key, int, text, numeric, timestamptz) is written while tidewater is stopped; then tidewater drains it and \
    its peak resident memory is read once the slot confirms the transaction. Flatness is the peak of the \
    largest size over the peak of the smallest. No baseline: the targets are absolute.";

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut peaks = Vec::new();
    for &rows in &bench.opts.sizes.memory_rows {
        let (id, db) = bench.db(Kind::Postgres, "memsnap")?;
        let load = snapshot::fill(&db, rows)?;
        let c = snapshot::copy(bench, &db, id, "copy", &Apply::default(), rows, None)?;
        peaks.push((rows, c.peak_rss_mib));
        figures.push(
            Figure::new(
                SCENARIO,
                &format!("peak RSS of the initial snapshot of a {rows}-row table"),
                "MiB",
                c.peak_rss_mib,
            )
            .target(Target::AtMost { max: LIMIT_MIB })
            .detail(format!(
                "{}; {:.0} rows/s; written at the source in {load:.1} s",
                c.describe(),
                rows as f64 / c.seconds
            )),
        );
        db.drop_database()?;
    }
    figures.extend(growth("snapshot peak RSS growth", &peaks));
    let mut peaks = Vec::new();
    for &rows in &bench.opts.sizes.memory_rows {
        let d = drain_one(bench, rows, Apply::default())?;
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
    figures.extend(growth("peak RSS growth", &peaks));
    // The largest again, committed in pieces (`large_transaction = "split"`, opt-in), with
    // DuckDB's buffer pool bounded: what grows with the table otherwise is its cache of
    // written blocks (docs/performance.md, "Memory"), and a limit that low fails the
    // transaction committed whole.
    if let Some(&rows) = bench.opts.sizes.memory_rows.last() {
        let split_rows = split_rows_for(rows);
        let d = drain_one(
            bench,
            rows,
            Apply {
                split_rows: Some(split_rows),
                memory_limit: Some(SPLIT_MEMORY_LIMIT),
                ..Apply::default()
            },
        )?;
        figures.push(
            Figure::new(
                SCENARIO,
                &format!(
                    "peak RSS draining one {rows}-row transaction, large_transaction = \"split\" \
                     ({split_rows} rows a piece), memory_limit = \"{SPLIT_MEMORY_LIMIT}\""
                ),
                "MiB",
                d.peak_rss_mib,
            )
            .target(Target::AtMost { max: LIMIT_MIB })
            .detail(format!("{}; {:.0} rows/s", d.describe(), d.rate())),
        );
    }
    Ok(figures)
}

/// DuckDB's `memory_limit` for the split transaction's row.
const SPLIT_MEMORY_LIMIT: &str = "160MB";

/// The default `split_rows` (1,000,000), or a tenth of a smaller transaction (`--quick`).
fn split_rows_for(rows: u64) -> usize {
    const DEFAULT_SPLIT_ROWS: u64 = 1_000_000;
    DEFAULT_SPLIT_ROWS.min((rows / 10).max(1000)) as usize
}

fn drain_one(bench: &Bench, rows: u64, apply: Apply) -> Result<super::drain::Drained> {
    drain(
        bench,
        Drain {
            label: "memory",
            kind: Kind::Postgres,
            tables: 1,
            width: Width::Narrow,
            txns: workload::single_insert(rows),
            baselines: false,
            verify: false,
            apply,
        },
    )
}

/// The peak of the largest size over the peak of the smallest (none for a single size).
fn growth(measure: &str, peaks: &[(u64, f64)]) -> Option<Figure> {
    let (&(small, low), &(large, high)) = (peaks.first()?, peaks.last()?);
    (large > small).then(|| {
        Figure::new(
            SCENARIO,
            &format!("{measure}, {small} → {large} rows"),
            "×",
            high / low,
        )
        .target(Target::AtMost { max: FLAT })
    })
}
