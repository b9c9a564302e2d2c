//! Streaming apply (issue 6, items 1 and 2): a mixed backlog drained into
//! DuckDB, then verified equal, beside the source's own change reader.

use super::drain::{drain, Drain};
use crate::error::Result;
use crate::report::{Figure, Target};
use crate::runner::Apply;
use crate::source::Kind;
use crate::workload::{self, Width};
use crate::Bench;

pub fn run(bench: &Bench, kind: Kind) -> Result<Vec<Figure>> {
    let n = bench.opts.sizes.stream_changes;
    let d = drain(
        bench,
        Drain {
            label: "stream",
            kind,
            tables: 1,
            width: Width::Narrow,
            txns: workload::mixed(n, 1),
            baselines: true,
            verify: true,
            apply: Apply::default(),
        },
    )?;
    let scenario = match kind {
        Kind::Postgres => "PostgreSQL streaming apply",
        Kind::MariaDb => "MariaDB streaming apply",
    };
    let (tool, rate) = d.baseline_rate(0).expect("a baseline was measured");
    let mut figures = vec![Figure::new(
        scenario,
        "backlog drained into DuckDB",
        "changes/s",
        d.rate(),
    )
    .baseline(tool, rate)
    .target(Target::RatioAtLeast { min: 0.7 })
    .detail(d.describe())];
    if let Some((tool, rate)) = d.baseline_rate(1) {
        let figure = match kind {
            Kind::Postgres => Figure::new(
                scenario,
                "same, against the server-side decode ceiling",
                "changes/s",
                d.rate(),
            )
            .target(Target::RatioAtLeast { min: 0.6 }),
            Kind::MariaDb => Figure::new(
                scenario,
                "same, against decoded binlog text (reference only)",
                "changes/s",
                d.rate(),
            ),
        };
        figures.push(figure.baseline(tool, rate));
    }
    if let Some(v) = &d.verify {
        figures.push(
            Figure::new(
                scenario,
                "`tidewater verify` of the drained replica (equal)",
                "rows/s",
                v.rows as f64 / v.tidewater_seconds,
            )
            .baseline(&v.baseline_tool, v.rows as f64 / v.baseline_seconds)
            .detail(format!(
                "{} rows compared in {:.2} s, replica stopped",
                v.rows, v.tidewater_seconds
            )),
        );
    }
    Ok(figures)
}

pub fn method(kind: Kind) -> String {
    let reader = match kind {
        Kind::Postgres => {
            "`pg_recvlogical --start -o proto_version=1 -o publication_names=… --endpos=<end LSN> -f /dev/null` \
             on a copy of tidewater's slot (`pg_copy_logical_replication_slot`, made while tidewater was stopped), \
             so both read exactly the same changes; a second row compares with the server-side decode ceiling, \
             `SELECT count(*) FROM pg_logical_slot_get_binary_changes(<copy>, <end LSN>, NULL, 'proto_version', '1', \
             'publication_names', …)` on another copy of the slot (the same WAL decoding and pgoutput in a backend, \
             no client or network; issue 17 asks for ≥ 0.6× of it); tidewater is caught up when its slot's \
             `confirmed_flush_lsn` reaches the end LSN (it confirms only what DuckDB committed)"
        }
        Kind::MariaDb => {
            "`mariadb-binlog --read-from-remote-server --raw --to-last-log` from the binlog file started \
             (`FLUSH BINARY LOGS`) right before the workload, so it reads the same changes; decoding them to \
             text with `--base64-output=decode-rows -v` to /dev/null is a second, reference-only row; tidewater is \
             caught up when the position on its `/metrics` reaches `@@gtid_binlog_pos`"
        }
    };
    format!(
        "tidewater is started once to snapshot the empty table, stopped, then the workload is written: {} \
         (one statement per transaction). Baseline: {reader}. tidewater's time runs from its process start \
         to the commit time of its last batch (`tidewater_last_apply_timestamp_seconds`). Then `tidewater \
         verify` must find the replica equal; its speed is shown beside the source's client reading the \
         table in key order.",
        workload::describe_mix()
    )
}
