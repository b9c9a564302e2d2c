//! Declares a replica's `PRIMARY KEY` once the replica is large enough to need it.
//!
//! A DuckDB `PRIMARY KEY` is an ART index held in memory. It lets a batch's keyed `DELETE` and
//! `UPDATE` find their rows by lookups instead of scanning the key column, and it refuses a
//! duplicate key. But each one costs a few MiB however small its table (the index's node
//! allocators, and the transaction-local index of every table a batch writes): a drain over
//! 100 small keyed tables held 319 MiB in `ART_INDEX` and peaked at 627 MiB, against 293 MiB
//! with no keys declared, which also drained 1.3× as fast (docs/performance.md, "Primary keys
//! once a replica is large"). Below `[sink] primary_key_rows` (100,000 by default) a scan of
//! the key column, with the staged keys as a filter, costs about as much as the lookups.
//!
//! So with `primary_key = true` and `primary_key_rows > 0`, a replica is created without its
//! key, and the sink declares it (`ALTER TABLE … ADD PRIMARY KEY`, which DuckDB builds from
//! the rows in a few milliseconds per 100,000) at the start of the first batch after DuckDB
//! counts the table's committed rows at the threshold or more (`crate::plans` reads those
//! counts). At the start, before the batch writes anything: DuckDB builds the index from
//! the committed rows and overlooks the transaction's own changes to the table (measured,
//! DuckDB 1.5.6: a row inserted earlier in the same transaction could be inserted again
//! after the key was declared). The end state is the table created with the key: the same
//! constraint, so the same `ALTER`s work on it (a `CREATE UNIQUE INDEX` would refuse `DROP COLUMN`, type changes
//! and renames). Replicas that already have a key are left alone. Exact: the statements
//! that apply a batch leave each key at one row with or without the index (every staged key
//! is deleted before its last image is inserted), so declaring it changes how rows are
//! found, not which; and it is declared inside the batch, so it commits with it or not at
//! all. A duplicate key at that moment (a replica already wrong) fails the batch with
//! DuckDB's error instead of going on.

use std::collections::{HashMap, HashSet};

use duckdb::Connection;
use tidewater_core::{Error, Result, TableId};
use tracing::info;

use crate::plans::Plans;
use crate::sql::{exec, qualified};
use crate::staged::TableState;

/// Which replicas are known to have their key declared, and past which size the others get it.
pub(crate) struct PrimaryKeys {
    /// `None`: keys are declared at creation, or never (`primary_key = false`).
    rows: Option<u64>,
    /// Replicas (targets) known to have a `PRIMARY KEY`.
    declared: HashSet<TableId>,
    /// The last look of `Plans` acted on.
    seen: u64,
}

impl PrimaryKeys {
    pub fn new(primary_key: bool, rows: u64) -> PrimaryKeys {
        PrimaryKeys {
            rows: (primary_key && rows > 0).then_some(rows),
            declared: HashSet::new(),
            seen: 0,
        }
    }

    /// Rows written after which the replicas' sizes are read again: a quarter of the
    /// threshold, so a replica gets its key by 1.25 times the threshold at most (or a second
    /// after it reached it).
    pub fn look_rows(&self) -> u64 {
        self.rows.map_or(50_000, |rows| (rows / 4).clamp(1, 50_000))
    }

    /// A table's statements changed (its replica may have been created anew): look again.
    pub fn forget(&mut self, target: &TableId) {
        self.declared.remove(target);
    }

    /// Tables prepared anew, or a batch rolled back (with any key it declared): look again.
    pub fn forget_all(&mut self) {
        self.declared.clear();
        self.seen = 0;
    }

    /// Declares the key of every keyed replica that `plans`' last look found at the
    /// threshold or above and that has none; whether any was declared (the statement cache
    /// then holds plans made without it). Right after a batch's `BEGIN`, before it writes.
    pub fn declare_due(
        &mut self,
        conn: &Connection,
        plans: &mut Plans,
        tables: &HashMap<TableId, TableState>,
    ) -> Result<bool> {
        let Some(rows) = self.rows else {
            return Ok(false);
        };
        plans.look_if_due(conn)?;
        if plans.looks() == self.seen {
            return Ok(false);
        }
        self.seen = plans.looks();
        let mut declared = false;
        for t in tables.values() {
            let (schema, target) = (&t.sql.schema, &t.sql.replica);
            if !schema.has_key() || self.declared.contains(target) || plans.size(target) < rows {
                continue;
            }
            if !has_primary_key(conn, target)? {
                let sql = format!(
                    "ALTER TABLE {} ADD PRIMARY KEY ({})",
                    qualified(target),
                    t.sql.key_columns()
                );
                let what = format_args!("declaring the primary key of {target}");
                exec(conn, &sql, &what).map_err(|e| {
                    e.with_fix(format!(
                        "if DuckDB names a duplicate key, the replica of {} holds two rows of \
                         one key and differs from the source: copy the table again with \
                         `tidewater resnapshot --tables {}` (and your --config)",
                        schema.id, schema.id
                    ))
                })?;
                info!(table = %target, rows = plans.size(target), "declared the replica's primary key: it is large enough to need its key index");
                declared = true;
            }
            self.declared.insert(target.clone());
        }
        Ok(declared)
    }
}

fn has_primary_key(conn: &Connection, target: &TableId) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() \
         AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [&target.schema, &target.name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| Error::sink(format!("reading the constraints of {target}: {e}")))
}
