//! The set-based statements that move one table's staged changes into its change log and
//! replica, chosen by what the changes need (`staged::Shape`), the cheapest that applies
//! them exactly.

use duckdb::Connection;
use tidewater_core::{Result, TableId};

use crate::in_place::InPlace;
use crate::plans::{Plan, Plans};
use crate::sql::{run_cached, run_fresh, timed};
use crate::staged::{Shape, TableState};

/// Applies the staged changes of table `t`; the number of statements run.
pub(crate) fn apply_staged(conn: &Connection, t: &TableState, plans: &mut Plans) -> Result<u64> {
    const DELETE: &str = "applying deletes/updates to replica";
    const INSERT: &str = "applying changes to replica";
    let (id, sql) = (&t.sql.schema.id, &t.sql);
    let mut statements = 0;
    // Only the statements that read the replica depend on its size; inserts alone read none.
    let reads = sql.replica_reads();
    let plan = match t.shape {
        Shape::InsertsOnly => Plan::Cached,
        _ => plans.plan(conn, &sql.replica, t.staged, &reads)?,
    };
    let run = Steps {
        conn,
        id,
        fresh: (plan == Plan::Fresh).then_some(reads),
    };
    let log: Vec<(&String, &str)> = sql
        .insert_log
        .iter()
        .map(|l| (l, "appending to the change log of"))
        .collect();
    run.steps(log, &mut statements)?;
    // The statements that leave each staged key at its last image, whatever the replica held.
    let replace: Vec<(&String, &str)> = match (t.shape, &sql.delete_once) {
        (Shape::InsertsOnly, _) => vec![(&sql.insert_all, "inserting into replica")],
        (Shape::KeysOnce, Some(delete)) => vec![(delete, DELETE), (&sql.insert_once, INSERT)],
        (Shape::RepeatedKeys, Some(delete)) => vec![(delete, DELETE), (&sql.insert_last, INSERT)],
        _ => {
            let mut steps: Vec<(&String, &str)> =
                sql.delete_touched.iter().map(|d| (d, DELETE)).collect();
            steps.push((&sql.insert_live, INSERT));
            steps
        }
    };
    let in_place = match (t.shape, t.only_updates, t.lenient) {
        (Shape::KeysOnce, true, false) => sql.update_once.as_ref(),
        _ => None,
    };
    if let Some(update) = in_place {
        // Exactness: the statements set only rows whose key is staged, each to its key's one
        // staged image (`crate::in_place`). Any other count than the staged rows means a
        // staged key had no row, or two (a replica without a primary key): never so in a
        // replica equal to the source. Then the delete and insert run as well, and they
        // leave every staged key at its one image whatever an UPDATE did.
        if run.in_place(update, t, &mut statements)? {
            return Ok(statements);
        }
    }
    run.steps(replace, &mut statements)?;
    Ok(statements)
}

/// How a table's merge statements run in this batch.
struct Steps<'a> {
    conn: &'a Connection,
    id: &'a TableId,
    /// The statements to plan for this batch alone (`crate::plans`), if any.
    fresh: Option<Vec<&'a str>>,
}

impl Steps<'_> {
    /// Sets the staged updates of `t` in place; false (nothing or only some columns set) when
    /// the replica does not hold exactly one row per staged key.
    fn in_place(&self, update: &InPlace, t: &TableState, statements: &mut u64) -> Result<bool> {
        const UPDATE: &str = "updating replica";
        let staged = t.staged;
        if !t.long_strings {
            return Ok(self.steps(vec![(&update.set_all, UPDATE)], statements)? == staged);
        }
        let changed = match &update.check {
            Some(check) => {
                *statements += 1;
                let (rows, changed) = self.check(check, update.set_changed.len())?;
                if rows != staged {
                    return Ok(false);
                }
                changed
            }
            None => Vec::new(),
        };
        if let Some(fixed) = &update.set_fixed {
            let rows = self.steps(vec![(fixed, UPDATE)], statements)?;
            if update.check.is_none() && rows != staged {
                return Ok(false);
            }
        }
        let changed = update.set_changed.iter().zip(changed).filter(|(_, c)| *c);
        self.steps(changed.map(|(sql, _)| (sql, UPDATE)).collect(), statements)?;
        Ok(true)
    }

    /// Runs `InPlace::check`: the staged keys' rows in the replica, and per variable-width
    /// column whether any of them differs from its staged value.
    fn check(&self, sql: &str, columns: usize) -> Result<(usize, Vec<bool>)> {
        let what = format_args!("comparing staged updates with the replica of {}", self.id);
        let fresh = matches!(&self.fresh, Some(f) if f.contains(&sql));
        let read = |row: &duckdb::Row| -> duckdb::Result<(usize, Vec<bool>)> {
            let rows: i64 = row.get(0)?;
            let changed = (1..=columns)
                .map(|i| row.get(i))
                .collect::<duckdb::Result<_>>()?;
            Ok((rows as usize, changed))
        };
        let query = || {
            if fresh {
                self.conn.prepare(sql)?.query_row([], read)
            } else {
                self.conn.prepare_cached(sql)?.query_row([], read)
            }
        };
        timed(&what, query)
    }

    /// Runs merge statements in order; the rows the last one changed.
    fn steps(&self, steps: Vec<(&String, &str)>, statements: &mut u64) -> Result<usize> {
        *statements += steps.len() as u64;
        let mut rows = 0;
        for (statement, what) in steps {
            let what = format_args!("{what} {}", self.id);
            rows = match &self.fresh {
                Some(fresh) if fresh.contains(&statement.as_str()) => {
                    run_fresh(self.conn, statement, &what)?
                }
                _ => run_cached(self.conn, statement, &what)?,
            };
        }
        Ok(rows)
    }
}
