//! The set-based statements that move one table's staged changes into its change log and
//! replica, chosen by what the changes need (`staged::Shape`), the cheapest that applies
//! them exactly.

use duckdb::Connection;
use tidewater_core::{Result, TableId};

use crate::sql::run_cached;
use crate::staged::{Shape, TableState};

/// Applies the staged changes of table `t`; the number of statements run.
pub(crate) fn apply_staged(conn: &Connection, t: &TableState) -> Result<u64> {
    const DELETE: &str = "applying deletes/updates to replica";
    const INSERT: &str = "applying changes to replica";
    let (id, sql) = (&t.sql.schema.id, &t.sql);
    let mut statements = 0;
    let log: Vec<(&String, &str)> = sql
        .insert_log
        .iter()
        .map(|l| (l, "appending to the change log of"))
        .collect();
    run_steps(conn, log, id, &mut statements)?;
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
        // Exactness: the UPDATE sets only rows whose key is staged, each to its key's one
        // staged image. Any other count than the staged rows means a staged key had no row,
        // or two (a replica without a primary key): never so in a replica equal to the
        // source. Then the delete and insert run as well, and they leave every staged key at
        // its one image whatever the UPDATE did.
        let update = vec![(update, "updating replica")];
        if run_steps(conn, update, id, &mut statements)? == t.staged {
            return Ok(statements);
        }
    }
    run_steps(conn, replace, id, &mut statements)?;
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
