//! A live re-check against a real DuckDB file written by the sink: the replica is compared as
//! of the round's source snapshot, read from the change log (`compare/as_of.rs`), so keys that
//! changed after the snapshot are not reported while real differences still are. The same
//! re-check without the as-of step reports every key changed since, which is what the live
//! `verify` did before.

use tidewater_core::replica::{Comparison, Pass, Replica, TableReport};
use tidewater_core::{ChangeKind, Position, Sink, TxInfo, Value};
use tidewater_duckdb::DuckDbReplica;

use crate::change_log::{batch, change, keyed, open};

fn rows(rows: &[(&str, &str)]) -> Vec<Vec<Value>> {
    rows.iter()
        .map(|(id, v)| vec![Value::text(id), Value::text(v)])
        .collect()
}

/// A PostgreSQL position as the log stores it.
fn lsn(p: &str) -> u64 {
    let (hi, lo) = p.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// One re-check round of table 0 at a source snapshot `at` whose rows are `source`; with
/// `as_of`, between `recheck_base` (before the sink applies `later`) and the comparison.
fn recheck(
    c: &mut dyn Comparison,
    as_of: bool,
    at: &str,
    source: &[(&str, &str)],
    later: impl FnOnce(),
) -> TableReport {
    let based = as_of && c.recheck_base(0, "default").unwrap();
    assert_eq!(based, as_of, "the table has a usable change log");
    later();
    if based {
        let cutoff = c
            .recheck_later(0)
            .unwrap()
            .iter()
            .take_while(|(_, p)| lsn(p) <= lsn(at))
            .last()
            .map_or(i64::MIN, |(ordinal, _)| *ordinal);
        c.recheck_as_of(0, cutoff).unwrap();
    }
    let total = c.recheck_prepare(0).unwrap();
    c.start(0, Pass::Recheck).unwrap();
    let keys: Vec<String> = c
        .recheck_keys(0, 1, total)
        .unwrap()
        .iter()
        .map(|k| k[0].as_str().unwrap().to_string())
        .collect();
    let found: Vec<(&str, &str)> = source
        .iter()
        .filter(|(id, _)| keys.iter().any(|k| k == id))
        .copied()
        .collect();
    c.rows(&rows(&found)).unwrap();
    c.recheck_batch(1, total).unwrap();
    c.recheck_done(0).unwrap();
    c.result(0, 10).unwrap()
}

/// Keys changed after the round's snapshot in every way the log records (an update, a delete,
/// a delete then insert, a key moved away, an insert then update, a `TRUNCATE`), beside two
/// real differences; `tamper` changes a replica row behind the sink's back (its log says
/// otherwise).
fn round(as_of: bool, truncate: bool, tamper: bool) -> TableReport {
    use ChangeKind::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    let t = keyed("t");
    let mut sink = open(&path, "postgres");
    sink.prepare(std::slice::from_ref(&t)).unwrap();
    let snapshot: Vec<_> = (1..=6)
        .map(|id| change(&t, Snapshot, &[&id.to_string(), "a"], None))
        .collect();
    batch(&mut sink, vec![("0/100", snapshot)]);

    let replica = DuckDbReplica::beside_sink(sink.connection(), "default").unwrap();
    let mut c = replica.comparison().unwrap();
    assert_eq!(c.add_table(t.clone()).unwrap(), 0);
    // The first pass: every key differs (the source had other values then).
    c.start(0, Pass::First).unwrap();
    let first: Vec<(String, &str)> = (1..=7).map(|id| (id.to_string(), "zz")).collect();
    let first: Vec<(&str, &str)> = first.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    c.rows(&rows(&first)).unwrap();
    c.finish().unwrap();
    assert_eq!(c.differences(0).unwrap(), 7);

    // The source snapshot of the round is at 0/250: it holds 0/200, not 0/300.
    let at_snapshot = [
        ("1", "b"),
        ("2", "a"),
        ("4", "a"),
        ("5", "q"),     // a real difference: the replica has 'a'
        ("6", "wrong"), // a real difference, on a key that changed after the snapshot too
        ("7", "i"),
    ];
    recheck(c.as_mut(), as_of, "00000000/00000250", &at_snapshot, || {
        batch(
            &mut sink,
            vec![(
                "0/200",
                vec![
                    change(&t, Update, &["1", "b"], None),
                    change(&t, Delete, &["3", ""], None),
                    change(&t, Insert, &["7", "i"], None),
                ],
            )],
        );
        sink.begin().unwrap();
        let after = vec![
            change(&t, Update, &["1", "c"], None),
            change(&t, Delete, &["2", ""], None),
            change(&t, Insert, &["3", "n"], None),
            change(&t, Update, &["40", "a"], Some(&["4"])),
            change(&t, Update, &["6", "c"], None),
            change(&t, Update, &["7", "j"], None),
        ];
        let tx = TxInfo {
            position: Position("0/300".into()),
            commit_time_us: 3,
            backlog: tidewater_core::Backlog::Unknown,
        };
        sink.write(&tx, 0, after).unwrap();
        if truncate {
            sink.truncate(&tx, std::slice::from_ref(&t)).unwrap();
        }
        sink.commit(&tx.position, 0).unwrap();
        if tamper {
            sink.connection()
                .execute_batch("UPDATE s.t SET v = 'tampered' WHERE id = 1")
                .unwrap();
        }
    })
}

/// Missing, extra and differing keys, and which.
#[track_caller]
fn assert_found(r: &TableReport, counts: (u64, u64, u64), differing: &[&str]) {
    assert_eq!(
        (r.missing, r.extra, r.differing),
        counts,
        "{:?}",
        r.examples
    );
    assert_eq!(r.examples.differing, differing);
}

#[test]
fn live_recheck_compares_the_replica_as_of_the_snapshot() {
    assert_found(&round(true, false, false), (0, 0, 2), &["id=5", "id=6"]);
    // A TRUNCATE after the snapshot: every key reads as the base held it.
    assert_found(&round(true, true, false), (0, 0, 2), &["id=5", "id=6"]);
    // The log stands in for the replica only where they agree: a replica row that is not its
    // key's last log row is a difference.
    let all = ["id=1", "id=5", "id=6"];
    assert_found(&round(true, false, true), (0, 0, 3), &all);
}

#[test]
fn without_the_as_of_step_every_key_changed_since_is_reported() {
    let r = round(false, false, false);
    assert_found(&r, (2, 1, 4), &["id=1", "id=5", "id=6", "id=7"]);
    assert_eq!(r.examples.missing, ["id=2", "id=4"]);
    assert_eq!(r.examples.extra, ["id=3"]);
}
