//! The row-change workloads: an exact number of row changes, as a mix of
//! inserts, updates and deletes in transactions of various sizes (one large
//! transaction per table included), spread over one or more tables.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Width {
    /// id, int, short text, numeric, timestamp (~60 bytes).
    Narrow,
    /// The same plus a 2 KiB text column.
    Wide,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

/// One source transaction: a single statement changing rows `first..=last` of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub table: usize,
    pub op: Op,
    pub first: u64,
    pub last: u64,
}

impl Txn {
    pub fn rows(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Share of a table's changes, and rows per transaction (0: the whole share in one transaction).
/// Phases run in this order; the first absorbs rounding, so inserts always cover the deletes.
pub const MIX: [(Op, f64, u64); 8] = [
    (Op::Insert, 0.40, 0),
    (Op::Insert, 0.10, 100),
    (Op::Insert, 0.05, 1),
    (Op::Update, 0.20, 1000),
    (Op::Update, 0.08, 10),
    (Op::Update, 0.02, 1),
    (Op::Delete, 0.10, 1000),
    (Op::Delete, 0.05, 10),
];

/// The mix in words, for BENCHMARKS.md.
pub fn describe_mix() -> String {
    MIX.iter()
        .map(|(op, share, size)| {
            let size = match size {
                0 => "in one transaction".to_string(),
                1 => "in single-row transactions".to_string(),
                n => format!("in {n}-row transactions"),
            };
            format!(
                "{:.0}% {} {size}",
                share * 100.0,
                format!("{op:?}").to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Exactly `changes` row changes spread evenly over `tables` tables, each
/// table's transactions in [`MIX`] order, interleaved round-robin across tables.
pub fn mixed(changes: u64, tables: usize) -> Vec<Txn> {
    let tables = tables.max(1);
    let per_table: Vec<Vec<Txn>> = (0..tables)
        .map(|t| {
            let n = changes / tables as u64 + u64::from((t as u64) < changes % tables as u64);
            table_plan(t, n)
        })
        .collect();
    interleave(per_table)
}

/// One transaction inserting `rows` rows into table 0.
pub fn single_insert(rows: u64) -> Vec<Txn> {
    vec![Txn {
        table: 0,
        op: Op::Insert,
        first: 1,
        last: rows,
    }]
}

fn table_plan(table: usize, changes: u64) -> Vec<Txn> {
    let mut counts: Vec<u64> = MIX
        .iter()
        .map(|(_, share, _)| (share * changes as f64) as u64)
        .collect();
    counts[0] = changes - counts[1..].iter().sum::<u64>();
    let (mut inserted, mut update_at, mut delete_at) = (0u64, 1u64, 1u64);
    let mut txns = Vec::new();
    for ((op, _, size), mut left) in MIX.iter().zip(counts) {
        while left > 0 {
            let mut rows = if *size == 0 { left } else { left.min(*size) };
            let first = match op {
                Op::Insert => inserted + 1,
                Op::Delete => delete_at,
                Op::Update => {
                    if update_at > inserted {
                        update_at = 1;
                    }
                    rows = rows.min(inserted - update_at + 1);
                    update_at
                }
            };
            let last = first + rows - 1;
            match op {
                Op::Insert => inserted = last,
                Op::Update => update_at = last + 1,
                Op::Delete => delete_at = last + 1,
            }
            txns.push(Txn {
                table,
                op: *op,
                first,
                last,
            });
            left -= rows;
        }
    }
    txns
}

fn interleave(per_table: Vec<Vec<Txn>>) -> Vec<Txn> {
    let mut iters: Vec<_> = per_table.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

pub fn table_name(index: usize) -> String {
    format!("t{index}")
}

pub fn total_changes(txns: &[Txn]) -> u64 {
    txns.iter().map(Txn::rows).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Replays a plan on sets of live ids: every change must hit exactly its rows.
    fn check(txns: &[Txn], tables: usize) {
        let mut live = vec![BTreeSet::new(); tables];
        for t in txns {
            for id in t.first..=t.last {
                let set = &mut live[t.table];
                match t.op {
                    Op::Insert => assert!(set.insert(id), "{t:?} inserts a live id"),
                    Op::Update => assert!(set.contains(&id), "{t:?} updates a missing id"),
                    Op::Delete => assert!(set.remove(&id), "{t:?} deletes a missing id"),
                }
            }
        }
    }

    #[test]
    fn plans_have_exactly_the_changes_asked_for_and_hit_live_rows() {
        for (changes, tables) in [
            (1_000_000, 1),
            (200_000, 100),
            (2_000, 3),
            (10, 1),
            (7, 10),
            (1, 1),
        ] {
            let txns = mixed(changes, tables);
            assert_eq!(total_changes(&txns), changes, "{changes} over {tables}");
            check(&txns, tables);
        }
    }

    #[test]
    fn the_mix_has_one_large_transaction_and_many_small_ones() {
        let txns = mixed(1_000_000, 1);
        assert_eq!(txns.iter().map(Txn::rows).max(), Some(400_000));
        assert!(txns.iter().filter(|t| t.rows() == 1).count() > 50_000);
        for op in [Op::Insert, Op::Update, Op::Delete] {
            assert!(txns.iter().any(|t| t.op == op));
        }
        assert!((MIX.iter().map(|m| m.1).sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
