//! Rows handed to DuckDB by a cached `INSERT … SELECT` from a table function of our own,
//! instead of an Appender.
//!
//! Why: in DuckDB 1.5 every Appender flush is a query. `Appender::FlushInternal` builds
//! `INSERT INTO t (cols) FROM __duckdb_internal_appended_data` and parses, binds, plans and
//! runs it, and creating the Appender looks the table and its columns up again. A batch at
//! the source's peak appends a few rows to each of about ten tables (every touched table's
//! `_log`, the staging tables, the inserted tables' replicas), so it paid that planning ten
//! times per commit, more than the executions cost (docs/performance.md). Here each target
//! (table, columns, Arrow types) gets one statement, `INSERT INTO t (cols) SELECT * FROM
//! tidewater_feed(<slot>, <token>)`, prepared once and kept in the connection's statement
//! cache; a batch only executes it.
//!
//! How: a slot per statement holds the Arrow schema its rows have (fixed: rows of other
//! types get another slot and statement), and, while the statement runs, the one record
//! batch to insert. The table function's bind declares the slot's columns (DuckDB binds at
//! prepare, and again whenever the catalog changed); its first scan call takes the batch
//! out of the slot, and each call hands DuckDB one vector of it (the same Arrow→DuckDB
//! conversion the Appender uses, so values and implicit casts to the table's types are as
//! before).
//!
//! Correctness: a slot's batch is placed right before its statement runs on this
//! connection and removed right after, whether the statement consumed it or failed first,
//! so a statement reads exactly the rows placed for it, once; one with no rows placed is an
//! error, never an empty insert. Slot numbers are unique in the process, and a connection
//! is used by one thread at a time. The function is in the database's catalog, so the
//! query endpoint's connections (clones of the sink's) see it too; a query that scanned a
//! slot while the sink's statement ran would take its rows (the sink's statement would then
//! fail for want of them). So each slot has a random token that only the sink's statement
//! text holds, and the function refuses a call without it.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{
    record_batch_to_duckdb_data_chunk, to_duckdb_logical_type_for_field, BindInfo, InitInfo,
    TableFunctionInfo, VTab,
};
use duckdb::Connection;
use tidewater_core::{Error, Result};

/// The table function's name on a sink's connection.
const FUNCTION: &str = "tidewater_feed";

/// Every feed's slots, process-wide (the function reaches them through its slot number
/// alone): slot numbers are never reused, so feeds of several sinks do not meet.
#[derive(Default)]
struct Slots {
    /// Each slot's schema and token.
    schemas: HashMap<usize, (SchemaRef, i64)>,
    placed: HashMap<usize, RecordBatch>,
}

static SLOTS: Mutex<Option<Slots>> = Mutex::new(None);
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

fn with_slots<T>(f: impl FnOnce(&mut Slots) -> T) -> T {
    // A panic while holding the lock leaves only plain maps behind: still consistent.
    let mut slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
    f(slots.get_or_insert_with(Slots::default))
}

/// The feed of one connection: the statement of each target and the slot it reads.
pub struct Feed {
    statements: HashMap<String, (usize, String)>,
}

impl Feed {
    /// Registers the table function on `conn`'s database, unless a connection of the same
    /// database did already (a clone of the sink's connection finds it there: registering
    /// again would replace the catalog entry the sink's cached statements are bound to).
    pub fn register(conn: &Connection) -> Result<Feed> {
        let registered = |e: duckdb::Error| Error::sink(format!("registering {FUNCTION}: {e}"));
        let present: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM duckdb_functions() WHERE function_name = ?",
                [FUNCTION],
                |r| r.get(0),
            )
            .map_err(registered)?;
        if !present {
            conn.register_table_function::<FeedScan>(FUNCTION)
                .map_err(registered)?;
        }
        Ok(Feed {
            statements: HashMap::new(),
        })
    }

    /// Inserts `batch` into `target` (qualified SQL name): into the columns `columns`
    /// (quoted, in the batch's order) or, when `None`, into all columns in table order.
    /// Returns the rows inserted.
    pub fn insert(
        &mut self,
        conn: &Connection,
        target: &str,
        columns: Option<&str>,
        batch: RecordBatch,
        what: &dyn std::fmt::Display,
    ) -> Result<usize> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let (slot, sql) = self.statement(target, columns, batch.schema());
        with_slots(|s| s.placed.insert(slot, batch));
        let started = std::time::Instant::now();
        let result = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute([]));
        with_slots(|s| s.placed.remove(&slot));
        tracing::trace!(micros = started.elapsed().as_micros() as u64, "{what}");
        result.map_err(|e| Error::sink(format!("{what}: {e}")))
    }

    fn statement(
        &mut self,
        target: &str,
        columns: Option<&str>,
        schema: SchemaRef,
    ) -> (usize, String) {
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{:?}", f.data_type()))
            .collect();
        let key = format!("{target} ({}) {}", columns.unwrap_or("*"), types.join(","));
        if let Some(found) = self.statements.get(&key) {
            return found.clone();
        }
        let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        // A randomly keyed hash of nothing: a random number, without a dependency for it.
        let token = RandomState::new().build_hasher().finish() as i64;
        with_slots(|s| s.schemas.insert(slot, (schema, token)));
        let into = columns.map_or(String::new(), |c| format!(" ({c})"));
        let sql = format!("INSERT INTO {target}{into} SELECT * FROM {FUNCTION}({slot}, {token})");
        self.statements.insert(key, (slot, sql.clone()));
        (slot, sql)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        with_slots(|s| {
            for (slot, _) in self.statements.values() {
                s.schemas.remove(slot);
            }
        });
    }
}

struct FeedScan;

struct Bound {
    slot: usize,
}

/// The rows of one execution, taken from the slot at its first scan call, and how many
/// were handed over.
#[derive(Default)]
struct Scan(Mutex<Option<(RecordBatch, usize)>>);

impl VTab for FeedScan {
    type BindData = Bound;
    type InitData = Scan;

    fn bind(bind: &BindInfo) -> std::result::Result<Bound, Box<dyn std::error::Error>> {
        let slot = usize::try_from(bind.get_parameter(0).to_int64())?;
        let token = bind.get_parameter(1).to_int64();
        let schema = with_slots(|s| match s.schemas.get(&slot) {
            Some((schema, t)) if *t == token => Some(schema.clone()),
            _ => None,
        })
        .ok_or_else(|| format!("{FUNCTION} is tidewater's own, for its inserts only"))?;
        for field in schema.fields() {
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        Ok(Bound { slot })
    }

    fn init(_: &InitInfo) -> std::result::Result<Scan, Box<dyn std::error::Error>> {
        Ok(Scan::default())
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut scan = func
            .get_init_data()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if scan.is_none() {
            let slot = func.get_bind_data().slot;
            let batch = with_slots(|s| s.placed.remove(&slot)).ok_or_else(|| {
                format!("internal: {FUNCTION} ran with no rows placed in slot {slot}")
            })?;
            *scan = Some((batch, 0));
        }
        let (batch, offset) = scan.as_mut().expect("taken above");
        // At most one DuckDB vector per call.
        let len = output
            .flat_vector(0)
            .capacity()
            .min(batch.num_rows() - *offset);
        if len == 0 {
            output.set_len(0);
            return Ok(());
        }
        record_batch_to_duckdb_data_chunk(&batch.slice(*offset, len), output)?;
        *offset += len;
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![
            LogicalTypeHandle::from(LogicalTypeId::Bigint),
            LogicalTypeHandle::from(LogicalTypeId::Bigint),
        ])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use duckdb::arrow::array::{ArrayRef, Int64Array, StringArray};
    use duckdb::arrow::datatypes::{DataType, Field, Schema};
    use duckdb::arrow::record_batch::RecordBatch;
    use duckdb::Connection;

    use super::Feed;

    fn batch(ids: impl Iterator<Item = i64>, text: &dyn Fn(i64) -> String) -> RecordBatch {
        let ids: Vec<i64> = ids.collect();
        let texts: Vec<String> = ids.iter().map(|i| text(*i)).collect();
        let schema = Schema::new(vec![
            Field::new("c0", DataType::Int64, true),
            Field::new("c1", DataType::Utf8, true),
        ]);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(texts)),
        ];
        RecordBatch::try_new(Arc::new(schema), arrays).unwrap()
    }

    fn rows(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    #[test]
    fn each_insert_reads_its_own_rows_once_across_vectors_ddl_and_failures() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, n INTEGER)")
            .unwrap();
        let mut feed = Feed::register(&conn).unwrap();
        let cols = Some("id, v");
        // More rows than one DuckDB vector (2048), then the same statement again.
        let inserted = feed
            .insert(
                &conn,
                "t",
                cols,
                batch(1..=5000, &|i| format!("a{i}")),
                &"t",
            )
            .unwrap();
        assert_eq!(inserted, 5000);
        feed.insert(
            &conn,
            "t",
            cols,
            batch(5001..=5002, &|i| format!("b{i}")),
            &"t",
        )
        .unwrap();
        assert_eq!(feed.statements.len(), 1, "one statement for one target");
        assert_eq!(
            rows(
                &conn,
                "SELECT count(*)::VARCHAR || ' ' || sum(id)::VARCHAR FROM t"
            ),
            [format!("5002 {}", 5002 * 5003 / 2)]
        );
        // A failing insert (a key that exists) leaves nothing behind in its slot: the next
        // insert of the same statement reads its own rows, not the failed ones.
        let err = feed
            .insert(&conn, "t", cols, batch(4..=6, &|_| "dup".into()), &"t")
            .unwrap_err();
        assert!(err.to_string().contains("t: "), "{err}");
        // One that fails before it runs (no such table) leaves no rows held either.
        let missing = batch(1..=1, &|_| "x".into());
        assert!(feed
            .insert(&conn, "missing", cols, missing, &"missing")
            .is_err());
        let slots: Vec<usize> = feed.statements.values().map(|(slot, _)| *slot).collect();
        assert!(super::with_slots(|s| slots
            .iter()
            .all(|k| !s.placed.contains_key(k))));
        // The catalog changes: DuckDB binds the cached statement again, against the new table.
        conn.execute_batch("ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 7")
            .unwrap();
        feed.insert(&conn, "t", cols, batch(9000..=9000, &|_| "c".into()), &"t")
            .unwrap();
        assert_eq!(
            rows(
                &conn,
                "SELECT v || ' ' || w FROM t WHERE id IN (5002, 9000) ORDER BY id"
            ),
            ["b5002 7", "c 7"]
        );
        // Other Arrow types for the same target: a statement of their own, cast on insert.
        let schema = Schema::new(vec![
            Field::new("c0", DataType::Utf8, true),
            Field::new("c1", DataType::Utf8, true),
        ]);
        let texts: ArrayRef = Arc::new(StringArray::from(vec!["9001"]));
        let other = RecordBatch::try_new(Arc::new(schema), vec![texts.clone(), texts]).unwrap();
        feed.insert(&conn, "t", cols, other, &"t").unwrap();
        assert_eq!(feed.statements.len(), 3, "t, missing, t of other types");
        assert_eq!(rows(&conn, "SELECT v FROM t WHERE id = 9001"), ["9001"]);
        assert_eq!(rows(&conn, "SELECT count(*)::VARCHAR FROM t"), ["5004"]);
    }

    /// A table `t` with one row inserted through a feed, and that feed.
    fn one_row_inserted() -> (Connection, Feed) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id BIGINT, v VARCHAR)")
            .unwrap();
        let mut feed = Feed::register(&conn).unwrap();
        feed.insert(&conn, "t", None, batch(1..=1, &|_| "x".into()), &"t")
            .unwrap();
        (conn, feed)
    }

    #[test]
    fn another_connection_cannot_call_the_function_without_the_token() {
        let (conn, feed) = one_row_inserted();
        let slot = feed.statements.values().next().unwrap().0;
        let other = conn.try_clone().unwrap();
        let sql = format!("SELECT * FROM tidewater_feed({slot}, 0)");
        let err = other.prepare(&sql).unwrap_err();
        assert!(err.to_string().contains("tidewater's own"), "{err}");
    }

    #[test]
    fn a_feed_on_a_clone_of_the_connection_uses_the_registered_function() {
        // `verify` inside `run` compares on a clone of the sink's connection.
        let (conn, _sink_feed) = one_row_inserted();
        let clone = conn.try_clone().unwrap();
        let mut feed = Feed::register(&clone).unwrap();
        feed.insert(&clone, "t", None, batch(2..=3, &|_| "y".into()), &"t")
            .unwrap();
        assert_eq!(rows(&conn, "SELECT count(*)::VARCHAR FROM t"), ["3"]);
    }

    #[test]
    fn a_statement_run_without_rows_placed_fails() {
        let (conn, feed) = one_row_inserted();
        let (_, sql) = feed.statements.values().next().unwrap().clone();
        let err = conn.execute(&sql, []).unwrap_err();
        assert!(err.to_string().contains("no rows placed"), "{err}");
        assert_eq!(rows(&conn, "SELECT count(*)::VARCHAR FROM t"), ["1"]);
    }
}
