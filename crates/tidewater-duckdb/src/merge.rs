//! The set-based statements that move one table's staged changes into its change log and
//! replica, chosen by what the changes need (`staged::Shape`), the cheapest that applies
//! them exactly.

use duckdb::Connection;
use tidewater_core::{Result, TableId};

use crate::sql::run_cached;
use crate::staged::{Shape, TableState};

/// Applies the staged changes of table `t`; the number of statements run.
pub(crate) fn apply_staged(conn: &Connection, t: &TableState) -> Result<u64> {
    let id = &t.sql.schema.id;
    let mut statements = 0;
    const DELETE: &str = "applying deletes/updates to replica";
    const INSERT: &str = "applying changes to replica";
    let sql = &t.sql;
    let mut steps: Vec<(&String, &str)> = sql
        .insert_log
        .iter()
        .map(|l| (l, "appending to the change log of"))
        .collect();
    match (t.shape, &sql.delete_once) {
        (Shape::InsertsOnly, _) => steps.push((&sql.insert_all, "inserting into replica")),
        (Shape::KeysOnce, Some(delete)) => {
            steps.extend([(delete, DELETE), (&sql.insert_once, INSERT)])
        }
        (Shape::RepeatedKeys, Some(delete)) => {
            steps.extend([(delete, DELETE), (&sql.insert_last, INSERT)])
        }
        _ => {
            steps.extend(sql.delete_touched.iter().map(|d| (d, DELETE)));
            steps.push((&sql.insert_live, INSERT));
        }
    }
    if let (Shape::KeysOnce, true, false, Some(update)) =
        (t.shape, t.only_updates, t.lenient, &sql.update_once)
    {
        // In place. Exactness: the UPDATE sets only rows whose key is staged, each to its
        // key's one staged image. Fewer rows than staged means a staged key had no row (never
        // so in a replica equal to the source): then the delete and insert run as well, and
        // they leave every staged key at its image whatever the UPDATE did.
        let fallback = steps.split_off(steps.len() - 2);
        steps.push((update, "updating replica"));
        if run_steps(conn, steps, id, &mut statements)? < t.staged {
            run_steps(conn, fallback, id, &mut statements)?;
        }
    } else {
        run_steps(conn, steps, id, &mut statements)?;
    }
    Ok(statements)
}

/// Runs a table's merge statements in order; the rows the last one changed.
fn run_steps(
    conn: &Connection,
    steps: Vec<(&String, &str)>,
    id: &TableId,
    statements: &mut u64,
) -> Result<usize> {
    *statements += steps.len() as u64;
    let mut rows = 0;
    for (statement, what) in steps {
        rows = run_cached(conn, statement, &format_args!("{what} {id}"))?;
    }
    Ok(rows)
}
