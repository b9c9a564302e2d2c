//! Keeps the cached plans of the merge statements that read a replica fit for its size.
//!
//! DuckDB caches a prepared statement's physical plan and plans it again only when the
//! catalog changes, never for new statistics. The merge statements that join a batch's
//! staged keys with the replica ([`TableSql::replica_reads`]: the touched keys' `DELETE`,
//! the upserts' `DELETE`, the in-place `UPDATE`) build their hash join on the side DuckDB
//! estimated smaller when the statement was first prepared. Prepared while the replica was
//! small (the first chunks of a copy, a new table), the plan builds its hash table over the
//! whole replica, and goes on doing so however large the replica grows: under the snapshot
//! scenario's writer (2M rows) the touched keys' `DELETE` took 17 ms at the first merges and
//! ~96 ms at the end of the copy, growing with the table and holding DuckDB `HASH_TABLE`
//! memory in proportion, where the same statement planned anew took ~2.3 ms: it builds on the
//! staged keys and probes the replica's key index with them (docs/performance.md, "Cached
//! plans outgrown by their replica").
//!
//! So, per replica (the target a table's rows go to):
//!
//! - a batch that stages more rows than the replica holds runs those statements planned
//!   anew and keeps no plan ([`Plan::Fresh`]): DuckDB would build on the replica, which is
//!   right for that batch and wrong for the small batches after it;
//! - otherwise the cached plans serve ([`Plan::Cached`]), and they are made again once the
//!   replica has more than doubled (by at least [`MIN_GROWTH`] rows) since they were made.
//!
//! The replica's size is DuckDB's own estimate (`duckdb_tables().estimated_size`: committed
//! rows), read for all tables in one query once per [`LOOK_EVERY`] or sooner when the sink
//! has written many rows since ([`Plans::note_rows`]), so a replica that grows fast is served
//! by a plan made for a quarter of its size at worst for about a second. What this costs:
//! the query (about a millisecond) about once a second, and each statement planned again
//! once per doubling of its replica. The same sizes tell when a replica is large enough for
//! its primary key (`crate::primary_keys`). A replica that shrinks keeps
//! its plans: made for a larger replica, they build on the staged keys, which suits a smaller
//! one as well.
//!
//! [`TableSql::replica_reads`]: crate::table::TableSql::replica_reads

use std::collections::HashMap;
use std::time::{Duration, Instant};

use duckdb::Connection;
use tidewater_core::{Error, Result, TableId};
use tracing::debug;

/// Growth below this many rows never makes a plan again (small replicas plan in no time
/// either way).
pub(crate) const MIN_GROWTH: u64 = 10_000;

/// How often the replicas' sizes are read.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How a batch runs a table's replica-reading statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// From the statement cache (prepared, and cached, on their first run).
    Cached,
    /// Prepared for this batch alone.
    Fresh,
}

/// The replicas' sizes when their cached plans were made, and the sizes last read.
pub(crate) struct Plans {
    planned: HashMap<TableId, u64>,
    sizes: HashMap<TableId, u64>,
    looked: Option<Instant>,
    look_every: Duration,
    /// Rows written since the last look, and how many make the next look due.
    rows: u64,
    look_rows: u64,
    /// Looks taken.
    looks: u64,
}

impl Plans {
    /// Sizes are read again after `look_rows` rows written, or [`LOOK_EVERY`].
    pub fn new(look_rows: u64) -> Plans {
        Plans {
            look_rows: look_rows.max(1),
            ..Plans::looking_every(LOOK_EVERY)
        }
    }

    pub fn looking_every(look_every: Duration) -> Plans {
        Plans {
            planned: HashMap::new(),
            sizes: HashMap::new(),
            looked: None,
            look_every,
            rows: 0,
            look_rows: u64::MAX,
            looks: 0,
        }
    }

    /// The sink committed `rows` more rows.
    pub fn note_rows(&mut self, rows: u64) {
        self.rows = self.rows.saturating_add(rows);
    }

    /// Reads the sizes if a look is due (`looks` tells whether one was taken).
    pub fn look_if_due(&mut self, conn: &Connection) -> Result<()> {
        let due = self.rows >= self.look_rows
            || self.looked.is_none_or(|at| at.elapsed() >= self.look_every);
        if due {
            self.look(conn)?;
        }
        Ok(())
    }

    /// How many looks were taken (each one's sizes replace the last's).
    pub fn looks(&self) -> u64 {
        self.looks
    }

    /// `target`'s rows at the last look (0 if it had none).
    pub fn size(&self, target: &TableId) -> u64 {
        self.sizes.get(target).copied().unwrap_or(0)
    }

    /// How a batch staging `staged` rows of `target` runs `statements` (the statements of
    /// that table that read `target`); drops their cached plans first when `target` has
    /// outgrown them.
    pub fn plan(
        &mut self,
        conn: &Connection,
        target: &TableId,
        staged: usize,
        statements: &[&str],
    ) -> Result<Plan> {
        self.look_if_due(conn)?;
        let size = self.size(target);
        if staged as u64 > size {
            return Ok(Plan::Fresh);
        }
        match self.planned.get(target) {
            Some(&planned) if size > planned.saturating_mul(2).max(planned + MIN_GROWTH) => {
                debug!(table = %target, planned, rows = size, "planning merge statements again");
                for sql in statements {
                    conn.prepare_cached(sql)
                        .map_err(|e| Error::sink(format!("planning a merge of {target}: {e}")))?
                        .discard();
                }
            }
            Some(_) => return Ok(Plan::Cached),
            None => {}
        }
        self.planned.insert(target.clone(), size);
        Ok(Plan::Cached)
    }

    /// The statement cache was emptied: the next plans are made anew.
    pub fn forget(&mut self) {
        self.planned.clear();
    }

    fn look(&mut self, conn: &Connection) -> Result<()> {
        let err = |e: duckdb::Error| Error::sink(format!("reading the replicas' sizes: {e}"));
        let mut stmt = conn
            .prepare_cached(
                "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() \
                 WHERE database_name = current_database() AND NOT temporary",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                let id = TableId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?);
                Ok((id, r.get::<_, Option<i64>>(2)?.unwrap_or(0).max(0) as u64))
            })
            .map_err(err)?;
        self.sizes.clear();
        for row in rows {
            let (id, size) = row.map_err(err)?;
            self.sizes.insert(id, size);
        }
        self.looked = Some(Instant::now());
        self.rows = 0;
        self.looks += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELETE: &str = "DELETE FROM main.r WHERE k IN \
        (SELECT k FROM (SELECT k FROM s UNION ALL SELECT k + 1 FROM s))";

    /// The rows DuckDB's last profiled statement built its hash join on (the join's right
    /// child, its build side).
    fn build_side_rows(profile: &std::path::Path) -> u64 {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(profile).unwrap()).unwrap();
        fn find(node: &serde_json::Value) -> Option<&serde_json::Value> {
            if node["operator_type"]
                .as_str()
                .is_some_and(|t| t.contains("JOIN"))
            {
                return Some(node);
            }
            node["children"].as_array()?.iter().find_map(find)
        }
        let join = find(&json).expect("a join in the plan");
        let build = &join["children"][1];
        fn rows_in(node: &serde_json::Value) -> u64 {
            let own = node["operator_cardinality"].as_u64().unwrap_or(0);
            let children = node["children"]
                .as_array()
                .map_or(0, |c| c.iter().map(rows_in).max().unwrap_or(0));
            own.max(children)
        }
        rows_in(build)
    }

    fn run(conn: &Connection, plans: &mut Plans, staged: usize) -> Plan {
        let target = TableId::new("main", "r");
        let plan = plans.plan(conn, &target, staged, &[DELETE]).unwrap();
        match plan {
            Plan::Cached => conn.prepare_cached(DELETE).unwrap().execute([]).unwrap(),
            Plan::Fresh => conn.prepare(DELETE).unwrap().execute([]).unwrap(),
        };
        plan
    }

    /// A plan cached while the replica was small builds on the whole replica after it grew
    /// (DuckDB does not plan it again); planned again, it builds on the staged keys.
    #[test]
    fn a_replica_that_outgrew_its_cached_plan_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile.json");
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "SET threads = 1; \
             CREATE TABLE r (k INTEGER PRIMARY KEY, v VARCHAR); \
             INSERT INTO r SELECT range, 'v' FROM range(0, 40000, 100); \
             CREATE TEMP TABLE s (k INTEGER); \
             INSERT INTO s SELECT range FROM range(0, 600, 2); \
             SET enable_profiling = 'json'; SET profiling_output = '{}'",
            profile.display()
        ))
        .unwrap();
        let mut plans = Plans::looking_every(Duration::ZERO);
        // 300 staged keys (600 with the UNION's second half) against a 400-row replica.
        assert_eq!(run(&conn, &mut plans, 300), Plan::Cached);
        assert!(build_side_rows(&profile) <= 400);

        conn.execute_batch(
            "INSERT INTO r SELECT range, 'v' FROM range(1000000) WHERE range % 100 <> 0; \
             DELETE FROM s; INSERT INTO s SELECT range FROM range(0, 600, 2)",
        )
        .unwrap();
        // The stale plan, run as it was cached: its hash table holds the whole replica.
        conn.prepare_cached(DELETE).unwrap().execute([]).unwrap();
        assert!(
            build_side_rows(&profile) > 900_000,
            "the premise: DuckDB kept the plan"
        );

        conn.execute_batch("DELETE FROM s; INSERT INTO s SELECT range FROM range(1, 601, 2)")
            .unwrap();
        assert_eq!(run(&conn, &mut plans, 300), Plan::Cached);
        let rows = build_side_rows(&profile);
        assert!(rows <= 600, "built on {rows} rows");
    }

    /// A batch staging more rows than the replica holds gets a plan of its own, and the
    /// smaller batches after it keep theirs.
    #[test]
    fn a_batch_larger_than_its_replica_is_planned_for_itself() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE r (k INTEGER PRIMARY KEY); INSERT INTO r SELECT range FROM range(100); \
             CREATE TEMP TABLE s (k INTEGER)",
        )
        .unwrap();
        let mut plans = Plans::looking_every(Duration::ZERO);
        assert_eq!(run(&conn, &mut plans, 5000), Plan::Fresh);
        assert_eq!(run(&conn, &mut plans, 50), Plan::Cached);
    }
}
