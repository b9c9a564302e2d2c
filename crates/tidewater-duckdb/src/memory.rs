//! DuckDB's `memory_limit`, and raising it when a batch needs more (`[sink] memory_limit`).
//!
//! DuckDB's own limit is 80 % of RAM, and its buffer pool keeps every block it wrote or read
//! until the limit makes it evict: a replica written (and read by `verify` or the query
//! endpoints) for long enough grows the process towards that whatever the batches need. A
//! fixed lower limit bounds it, but a batch whose memory DuckDB cannot evict (an open
//! transaction's rows, its key indexes) fails above it with "Out of Memory Error", and the
//! pipeline stops.
//!
//! `memory_limit = "auto"` (the default) starts DuckDB at [`AUTO_START`] and, when a batch
//! fails on the limit, doubles it (up to DuckDB's own default) and reports the failure as
//! retryable. Correctness rests on what a retryable sink error already means: the apply loop
//! rolls the open batch back (DuckDB's transaction: nothing of it is committed), and the
//! pipeline's next attempt resumes the source from the position the sink committed, the path
//! of a lost connection (exactly once by that stored position; the crash tests cover it). So a
//! failed batch costs its work again, never a change. A limit once raised stays raised for the
//! process. At DuckDB's default the error is final, as with a fixed limit, and carries the fix
//! (`crate::errors::with_memory_fix`).

use duckdb::Connection;
use tidewater_core::{Error, Result};
use tracing::warn;

use crate::config::{parse_size, AUTO_MEMORY_LIMIT};
use crate::errors::is_out_of_memory;
use crate::sql::exec;

/// Where `auto` starts: the 100-table drain and a 10M-row transaction fit in it, and it holds
/// the 2 KiB-row drain at 441 MiB against 747 MiB under DuckDB's default (docs/performance.md,
/// "DuckDB's memory limit: automatic").
pub const AUTO_START: u64 = 256 << 20;

/// The limit the sink runs with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Limit {
    /// DuckDB's default (80 % of RAM) or a size the config fixed.
    Fixed,
    /// `auto`: the limit now, DuckDB's default (above which it is not raised), and whether
    /// `now` is still to be set (a raise waits for the failed transaction's rollback: DuckDB
    /// refuses `SET` inside it).
    Auto { now: u64, max: u64, pending: bool },
}

/// Sets `setting` (`""`, `auto` or a size: `crate::config::check_memory_limit`) on `conn`.
pub(crate) fn apply(conn: &Connection, setting: &str) -> Result<Limit> {
    let setting = setting.trim();
    if setting.is_empty() {
        return Ok(Limit::Fixed);
    }
    if setting != AUTO_MEMORY_LIMIT {
        set(conn, &setting.replace('\'', "''"))?;
        return Ok(Limit::Fixed);
    }
    let max = duckdb_default(conn)?;
    let now = AUTO_START.min(max);
    set(conn, &mib(now))?;
    Ok(Limit::Auto {
        now,
        max,
        pending: false,
    })
}

impl Limit {
    /// `e`, made retryable with a raised limit when it is DuckDB's memory limit failing an
    /// `auto` sink below its ceiling; otherwise `e` as it is. The raise takes effect at
    /// [`Limit::settle`], once the failed batch is rolled back.
    pub(crate) fn on_error(&mut self, e: Error) -> Error {
        let Limit::Auto { now, max, pending } = self else {
            return e;
        };
        if !is_out_of_memory(&e) || e.fix().is_some() {
            return e;
        }
        if *now >= *max {
            return e.with_fix(
                "sink.memory_limit = \"auto\" already raised DuckDB's limit to its default, 80 % \
                 of RAM: set sink.primary_key = false (the replicas' key indexes are what DuckDB \
                 cannot evict), or apply.large_transaction = \"split\" for a huge source \
                 transaction; then `tidewater run` resumes from the last committed batch",
            );
        }
        let raised = now.saturating_mul(2).min(*max);
        warn!(from = %mib(*now), to = %mib(raised), "a batch needed more memory than DuckDB's limit: raised it (sink.memory_limit = \"auto\"); the batch is applied again from the last committed position");
        let message = format!(
            "{}; DuckDB's memory_limit was {} and is now {}",
            e.message(),
            mib(*now),
            mib(raised)
        );
        *now = raised;
        *pending = true;
        Error::sink_retryable(message)
    }

    /// Sets a raised limit; called outside any transaction (before a batch begins).
    pub(crate) fn settle(&mut self, conn: &Connection) -> Result<()> {
        if let Limit::Auto { now, pending, .. } = self {
            if *pending {
                set(conn, &mib(*now))?;
                *pending = false;
            }
        }
        Ok(())
    }
}

fn set(conn: &Connection, size: &str) -> Result<()> {
    exec(
        conn,
        &format!("SET memory_limit = '{size}'"),
        &"setting DuckDB's memory_limit",
    )
}

fn mib(bytes: u64) -> String {
    format!("{}MiB", (bytes >> 20).max(1))
}

/// DuckDB's limit before any is set (80 % of RAM), as bytes.
fn duckdb_default(conn: &Connection) -> Result<u64> {
    let text = crate::sql::current_setting(conn, "memory_limit")?;
    parse_size(&text)
        .ok_or_else(|| Error::sink(format!("DuckDB's memory_limit {text:?} is not a size")))
}

#[cfg(test)]
mod tests {
    use super::{apply, Limit, AUTO_START};
    use duckdb::Connection;
    use tidewater_core::{Error, ErrorKind};

    /// A statement DuckDB cannot run in less than ~80 MB: a list of 10M integers is one value,
    /// which it neither spills nor evicts.
    fn needs_80mb(conn: &Connection) -> tidewater_core::Result<()> {
        crate::sql::exec(
            conn,
            "CREATE OR REPLACE TEMP TABLE big AS SELECT list(range) AS l FROM range(10000000)",
            &"building a large value",
        )
    }

    #[test]
    fn auto_starts_low_and_doubles_on_out_of_memory_up_to_duckdbs_default() {
        let conn = Connection::open_in_memory().unwrap();
        let default = super::duckdb_default(&conn).unwrap();
        let mut limit = apply(&conn, "auto").unwrap();
        assert_eq!(
            limit,
            Limit::Auto {
                now: AUTO_START.min(default),
                max: default,
                pending: false,
            }
        );
        // Start far below what the statement needs, as a large batch would find 256MB.
        limit = Limit::Auto {
            now: 8 << 20,
            max: default,
            pending: false,
        };
        super::set(&conn, "8MiB").unwrap();
        let mut failures = Vec::new();
        loop {
            limit.settle(&conn).unwrap();
            match needs_80mb(&conn) {
                Ok(()) => break,
                Err(e) => {
                    let e = limit.on_error(e);
                    assert_eq!(e.kind, ErrorKind::SinkRetryable, "{}", e.message());
                    failures.push(e.message().to_string());
                    assert!(failures.len() < 8, "{failures:?}");
                }
            }
        }
        assert!(!failures.is_empty(), "8MiB was enough");
        assert!(
            failures[0].contains("memory_limit was 8MiB and is now 16MiB"),
            "{}",
            failures[0]
        );
        let Limit::Auto { now, .. } = limit else {
            unreachable!()
        };
        assert_eq!(now, (8 << 20) << failures.len());
        let set = crate::sql::current_setting(&conn, "memory_limit").unwrap();
        assert_eq!(
            crate::config::parse_size(&set).map(|b| b >> 20),
            Some(now >> 20)
        );
    }

    /// The sink's batch steps pass DuckDB's memory failures through the limit: a batch too
    /// large for it fails retryable, and applied again after the apply loop's rollback (as the
    /// pipeline's next attempt does) it lands once, at a raised limit.
    #[test]
    fn a_sink_batch_over_the_limit_is_retried_at_a_raised_one_and_lands_once() {
        use std::sync::Arc;
        use tidewater_core::{
            Change, ChangeKind, Column, ColumnType, Position, Sink, TableId, TableSchema, TxInfo,
            Value,
        };
        let dir = tempfile::tempdir().unwrap();
        let options = crate::DuckDbOptions::new(dir.path().join("r.duckdb"), "default", "test");
        let mut sink = crate::DuckDbSink::open(options).unwrap();
        let col = |n: &str, ty| Column {
            name: n.into(),
            ty,
            nullable: true,
            source_type: String::new(),
        };
        let table = Arc::new(TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![col("id", ColumnType::Int64), col("v", ColumnType::Text)],
            key: vec![0],
        });
        sink.prepare(std::slice::from_ref(&table)).unwrap();
        let max = match sink.memory_limit_mut() {
            Limit::Auto { max, .. } => *max,
            Limit::Fixed => panic!("auto is the default"),
        };
        *sink.memory_limit_mut() = Limit::Auto {
            now: 4 << 20,
            max,
            pending: false,
        };
        super::set(sink.connection(), "4MiB").unwrap();
        let rows = 200_000;
        let tx = TxInfo {
            position: Position("0/1".into()),
            commit_time_us: 0,
            backlog: tidewater_core::Backlog::Unknown,
        };
        let mut retries = 0;
        loop {
            let changes: Vec<Change> = (0..rows)
                .map(|i| Change {
                    table: table.clone(),
                    kind: ChangeKind::Insert,
                    row: vec![
                        Value::text(&i.to_string()),
                        Value::text(&format!("row {i}")),
                    ],
                    old: None,
                })
                .collect();
            let applied = sink
                .begin()
                .and_then(|()| sink.write(&tx, 0, changes))
                .and_then(|()| sink.commit(&tx.position, 0));
            match applied {
                Ok(()) => break,
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::SinkRetryable, "{}", e.message());
                    sink.rollback().unwrap();
                    retries += 1;
                    assert!(retries < 10, "{}", e.message());
                }
            }
        }
        assert!(retries > 0, "4MiB held the whole batch");
        let count =
            |sql: &str| -> i64 { sink.connection().query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM s.t"), rows);
        assert_eq!(count("SELECT count(DISTINCT id) FROM s.t"), rows);
        assert_eq!(count("SELECT count(*) FROM s.t_log"), rows);
        let Limit::Auto { now, .. } = *sink.memory_limit_mut() else {
            unreachable!()
        };
        assert_eq!(now, (4 << 20) << retries);
    }

    #[test]
    fn a_fixed_limit_and_other_errors_stay_as_they_are() {
        let conn = Connection::open_in_memory().unwrap();
        let mut fixed = apply(&conn, "8MiB").unwrap();
        assert_eq!(fixed, Limit::Fixed);
        let e = needs_80mb(&conn).expect_err("8MiB is too little");
        let e = fixed.on_error(e);
        assert_eq!(e.kind, ErrorKind::Sink, "{}", e.message());

        let unchanged = Limit::Auto {
            now: 8 << 20,
            max: 1 << 30,
            pending: false,
        };
        let mut auto = unchanged.clone();
        let e = auto.on_error(Error::sink("Constraint Error: duplicate key"));
        assert_eq!(e.kind, ErrorKind::Sink);
        assert_eq!(auto, unchanged);
        let mut ceiling = Limit::Auto {
            now: 1 << 30,
            max: 1 << 30,
            pending: false,
        };
        let oom = Error::sink("Out of Memory Error: could not allocate block");
        let e = ceiling.on_error(oom);
        assert_eq!(e.kind, ErrorKind::Sink);
        assert!(
            e.fix().is_some_and(|f| f.contains("already raised")),
            "{:?}",
            e.fix()
        );
    }
}
