//! The DuckDB side of `verify` (`tidewater_core::replica::Comparison`). Source rows arrive as canonical text, are cast to the
//! replica's types in a temp table (`cast_from_text`, as the sink does) and compared there with
//! the replica on typed values, so no text format can hide or invent a difference.
//!
//! Keyed tables go chunk by chunk (`CHUNK_ROWS` source rows, read in key order): each chunk is
//! joined on the key with the replica rows of its key range, `IS DISTINCT FROM` on the other
//! columns, then dropped. Ranges follow DuckDB's order of the keys: the range of a chunk ends
//! at the greatest key read so far, so every replica row falls in exactly one range, and a
//! replica row no source row matched is kept aside until the end (if the source's key order
//! differs from DuckDB's, e.g. a case-insensitive collation, its match may come later).
//! Memory stays bounded whatever the table size. Keyless tables are multisets: `EXCEPT ALL`
//! both ways (DuckDB spills to disk when they are large).
//!
//! The differences stay in a temp table per table (`tw_diff_<i>`: kind and key, or kind and
//! row) for the re-check rounds and the report.

mod as_of;
mod differences;
mod sql;
mod stage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::Connection;
use tidewater_core::replica::{Comparison, Pass, TableReport};
use tidewater_core::{Error, Result, TableSchema, Value};
use tracing::debug;

use crate::feed::Feed;
use crate::sql::{cast_from_text, duckdb_type, qualified, quote_ident, quote_literal};

use self::sql::{
    columns, key_columns, key_join, key_list, key_literals, normalized, or_distinct, range_filter,
};
use self::stage::{stage, typed_stage};

/// Source rows per comparison statement.
pub const CHUNK_ROWS: usize = 100_000;

pub(super) const STAGE: &str = "temp.main.tw_stage";
pub(super) const SRC: &str = "temp.main.tw_src";
pub(super) const REP: &str = "temp.main.tw_rep";
pub(super) const PENDING: &str = "temp.main.tw_pending";
pub(super) const NEXT: &str = "temp.main.tw_next";
pub(super) const RECHECK: &str = "temp.main.tw_recheck";

pub struct Comparer {
    pub(super) conn: Connection,
    /// How staged source rows are inserted (`stage`).
    feed: Feed,
    /// The attached replica database, or None when `conn` is the replica's own.
    catalog: Option<String>,
    pub(super) tables: Vec<Table>,
    /// The table whose rows are arriving.
    pub(super) current: Option<Current>,
    /// Where temp tables spill, removed after `conn` is closed (fields drop in order).
    _spill: Option<SpillDir>,
}

/// A directory of this process's own, removed when dropped.
struct SpillDir(PathBuf);

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) struct Table {
    pub(super) schema: Arc<TableSchema>,
    /// The replica table, qualified.
    pub(super) replica: String,
    /// The temp table of its differences.
    pub(super) diff: String,
    /// Why the rows cannot be compared.
    pub(super) problem: Option<String>,
    /// Source rows compared (first round).
    pub(super) rows: u64,
    /// A live re-check round as of a transaction (`as_of`).
    pub(super) as_of: Option<as_of::AsOf>,
}

pub(super) struct Current {
    pub(super) table: usize,
    staged: usize,
    /// Time spent staging rows and comparing, for the log.
    staging: Duration,
    comparing: Duration,
    pass: Pass,
    /// DuckDB text of the greatest key compared so far.
    cursor: Option<Vec<String>>,
}

pub(super) fn sql_err(what: &str) -> impl Fn(duckdb::Error) -> Error + '_ {
    move |e| Error::sink(format!("verify: {what}: {e}"))
}

impl Comparer {
    /// A comparison on `conn`, a connection of the replica's own database.
    pub fn new(conn: Connection) -> Result<Comparer> {
        Ok(Comparer {
            feed: Feed::register(&conn)?,
            conn,
            catalog: None,
            tables: Vec::new(),
            current: None,
            _spill: None,
        })
    }

    /// An in-memory DuckDB with the replica file attached read-only as `replica`; temp
    /// tables spill to a directory of their own in the system temp directory, removed when
    /// the comparer is dropped. Fails while another process holds the file, with
    /// `tidewater_core::replica::Held` as the error's source.
    pub fn attach_file(db: &Path) -> Result<Comparer> {
        crate::status::must_exist(db)?;
        let conn = Connection::open_in_memory()
            .map_err(|e| Error::sink(format!("opening an in-memory DuckDB: {e}")))?;
        let spill = std::env::temp_dir().join(format!("tidewater-verify-{}", std::process::id()));
        conn.execute_batch(&format!(
            "SET temp_directory = {}; ATTACH {} AS replica (READ_ONLY)",
            quote_literal(&spill.to_string_lossy()),
            quote_literal(&db.to_string_lossy())
        ))
        .map_err(|e| {
            let error = Error::sink(format!("cannot open {} read-only: {e}", db.display()));
            crate::errors::mark(error, &e)
        })?;
        Ok(Comparer {
            catalog: Some("replica".into()),
            _spill: Some(SpillDir(spill)),
            ..Comparer::new(conn)?
        })
    }

    pub(super) fn exec(&self, sql: &str) -> Result<()> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| Error::sink(format!("verify: {e}\n  in: {sql}")))
    }

    pub(super) fn database(&self) -> String {
        match &self.catalog {
            Some(c) => quote_literal(c),
            None => "current_database()".into(),
        }
    }

    /// The replica's committed position.
    pub fn replica_position(&self, pipeline: &str) -> Result<Option<String>> {
        let sql = format!(
            "SELECT position FROM {}_tidewater.pipeline WHERE name = ?",
            self.catalog_prefix()
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(sql_err("reading the replica's position"))?;
        let mut rows = stmt
            .query([pipeline])
            .map_err(sql_err("reading the replica's position"))?;
        match rows
            .next()
            .map_err(sql_err("reading the replica's position"))?
        {
            Some(r) => r.get(0).map_err(sql_err("reading the replica's position")),
            None => Ok(None),
        }
    }

    /// Registers a source table and checks that the replica has it with the same columns and
    /// types. Returns its index.
    pub fn add_table(&mut self, schema: Arc<TableSchema>) -> Result<usize> {
        let i = self.tables.len();
        let replica = match &self.catalog {
            Some(c) => format!("{}.{}", quote_ident(c), qualified(&schema.id)),
            None => qualified(&schema.id),
        };
        let problem = self.schema_problem(&schema)?;
        self.tables.push(Table {
            schema,
            replica,
            diff: format!("temp.main.tw_diff_{i}"),
            problem,
            rows: 0,
            as_of: None,
        });
        Ok(i)
    }

    pub fn comparable(&self, i: usize) -> bool {
        self.tables[i].problem.is_none()
    }

    /// Prepares for table `i`'s rows.
    pub fn start(&mut self, i: usize, pass: Pass) -> Result<()> {
        let t = &self.tables[i];
        let stage: Vec<String> = (0..t.schema.columns.len())
            .map(|c| format!("c{c} VARCHAR"))
            .collect();
        let typed: Vec<String> = t
            .schema
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), duckdb_type(&c.ty)))
            .collect();
        let mut sql = format!(
            "CREATE OR REPLACE TEMP TABLE tw_stage ({});
             CREATE OR REPLACE TEMP TABLE tw_src ({});
             CREATE OR REPLACE TEMP TABLE tw_pending AS SELECT {} FROM {} LIMIT 0;",
            stage.join(", "),
            typed.join(", "),
            columns(&t.schema, None),
            t.replica
        );
        if t.schema.has_key() && pass == Pass::First {
            let keys: Vec<String> = key_columns(&t.schema)
                .map(|c| format!("{} {}", quote_ident(&c.name), duckdb_type(&c.ty)))
                .collect();
            sql.push_str(&format!(
                "CREATE OR REPLACE TEMP TABLE {} (_tw_kind VARCHAR, {});",
                t.diff.trim_start_matches("temp.main."),
                keys.join(", ")
            ));
        }
        self.exec(&sql)?;
        self.current = Some(Current {
            table: i,
            staged: 0,
            staging: Duration::ZERO,
            comparing: Duration::ZERO,
            pass,
            cursor: None,
        });
        Ok(())
    }

    pub(super) fn current(&self) -> Result<&Current> {
        self.current
            .as_ref()
            .ok_or_else(|| Error::sink("internal: verify rows without a table"))
    }

    /// Stages source rows; compares a chunk when enough are staged.
    pub fn rows(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        let started = Instant::now();
        let cur = self.current()?;
        let (i, pass) = (cur.table, cur.pass);
        stage(&self.conn, &mut self.feed, &self.tables[i].schema, rows)?;
        if pass == Pass::First {
            self.tables[i].rows += rows.len() as u64;
        }
        let cur = self.current.as_mut().expect("checked above");
        cur.staged += rows.len();
        cur.staging += started.elapsed();
        if cur.staged >= CHUNK_ROWS && pass != Pass::Recheck {
            cur.staged = 0;
            let started = Instant::now();
            if self.tables[i].schema.has_key() {
                self.compare_chunk(false)?;
            } else {
                self.load_source()?;
            }
            self.current.as_mut().expect("current").comparing += started.elapsed();
        }
        Ok(())
    }

    /// Moves the staged text rows into the typed source table.
    pub(super) fn load_source(&self) -> Result<()> {
        let t = &self.tables[self.current()?.table];
        self.exec(&format!(
            "INSERT INTO {SRC} {}; DELETE FROM {STAGE};",
            typed_stage(&t.schema, "")
        ))
    }

    /// The table's last rows have arrived: compares what is left.
    pub fn finish(&mut self) -> Result<()> {
        let started = Instant::now();
        let (i, pass) = (self.current()?.table, self.current()?.pass);
        if self.tables[i].schema.has_key() {
            self.compare_chunk(true)?;
        } else {
            self.load_source()?;
            self.compare_multiset(i, pass == Pass::First)?;
        }
        if let Some(cur) = self.current.take() {
            debug!(
                table = %self.tables[i].schema.id,
                staging_ms = cur.staging.as_millis() as u64,
                comparing_ms = (cur.comparing + started.elapsed()).as_millis() as u64,
                "verify: table compared"
            );
        }
        Ok(())
    }

    /// Compares the staged chunk with the replica rows of its key range (and those kept aside),
    /// in one join: what differs lands in `tw_j`, from where missing and differing keys go to
    /// the differences and unmatched replica rows are kept aside again.
    fn compare_chunk(&mut self, last: bool) -> Result<()> {
        let cur = self.current()?;
        let t = &self.tables[cur.table];
        let s = &t.schema;
        let hi = if last {
            None
        } else {
            self.max_key(cur.cursor.as_deref())?
        };
        let range = range_filter(s, cur.cursor.as_deref(), hi.as_deref());
        let source_keys: Vec<String> = key_columns(s)
            .enumerate()
            .map(|(k, c)| format!("s.{} AS _tw_k{k}", quote_ident(&c.name)))
            .collect();
        let found_keys: Vec<String> = (0..s.key.len()).map(|k| format!("_tw_k{k}")).collect();
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE tw_j AS SELECT \
               CASE WHEN s._tw_present IS NULL THEN 'aside' WHEN r._tw_present IS NULL THEN 'missing' \
               ELSE 'differing' END AS _tw_kind, {source_keys}, {rep_cols} \
             FROM ({casts}) s FULL JOIN \
               (SELECT {rep_cols}, true AS _tw_present FROM {rep} r{range} \
                UNION ALL SELECT *, true FROM {PENDING}) r ON {on} \
             WHERE s._tw_present IS NULL OR r._tw_present IS NULL{distinct};
             INSERT INTO {diff} SELECT _tw_kind, {found_keys} FROM temp.main.tw_j WHERE _tw_kind <> 'aside';
             CREATE OR REPLACE TEMP TABLE tw_pending AS SELECT {cols} FROM temp.main.tw_j WHERE _tw_kind = 'aside';
             DELETE FROM {STAGE};",
            source_keys = source_keys.join(", "),
            rep_cols = columns(s, Some("r")),
            casts = typed_stage(s, "true AS _tw_present"),
            rep = t.replica,
            on = key_join(s, "s", "r"),
            distinct = or_distinct(s),
            diff = t.diff,
            found_keys = found_keys.join(", "),
            cols = columns(s, None),
        ))?;
        if last {
            self.exec(&format!(
                "INSERT INTO {} SELECT 'extra', {} FROM {PENDING} r; DELETE FROM {PENDING};",
                t.diff,
                key_list(s, "r")
            ))?;
        }
        self.current.as_mut().expect("current").cursor = hi;
        Ok(())
    }

    /// DuckDB text of the greatest key among the staged chunk and `cursor`.
    fn max_key(&self, cursor: Option<&[String]>) -> Result<Option<Vec<String>>> {
        let s = &self.tables[self.current()?.table].schema;
        let names: Vec<String> = key_columns(s).map(|c| quote_ident(&c.name)).collect();
        let casts: Vec<String> = s
            .key
            .iter()
            .map(|&k| {
                format!(
                    "{} AS {}",
                    cast_from_text(&format!("c{k}"), &s.columns[k].ty),
                    quote_ident(&s.columns[k].name)
                )
            })
            .collect();
        let mut from = format!("SELECT {} FROM {STAGE}", casts.join(", "));
        if let Some(c) = cursor {
            from.push_str(&format!(
                " UNION ALL SELECT {}",
                key_literals(s, c).join(", ")
            ));
        }
        let texts: Vec<String> = names
            .iter()
            .map(|n| format!("CAST({n} AS VARCHAR)"))
            .collect();
        let desc: Vec<String> = names.iter().map(|n| format!("{n} DESC")).collect();
        let sql = format!(
            "SELECT {} FROM ({from}) ORDER BY {} LIMIT 1",
            texts.join(", "),
            desc.join(", ")
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(sql_err("finding the chunk's last key"))?;
        let mut rows = stmt
            .query([])
            .map_err(sql_err("finding the chunk's last key"))?;
        let Some(row) = rows
            .next()
            .map_err(sql_err("finding the chunk's last key"))?
        else {
            return Ok(None);
        };
        (0..names.len())
            .map(|k| {
                row.get::<_, String>(k)
                    .map_err(sql_err("finding the chunk's last key"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Keyless: the multiset difference both ways; later rounds keep only rows that differed
    /// before too.
    fn compare_multiset(&self, i: usize, first_round: bool) -> Result<()> {
        let t = &self.tables[i];
        let src = format!("SELECT {} FROM {SRC} r", normalized(&t.schema));
        let rep = format!("SELECT {} FROM {} r", normalized(&t.schema), t.replica);
        let diff = t.diff.trim_start_matches("temp.main.");
        let keep = if first_round {
            format!("CREATE OR REPLACE TEMP TABLE {diff} AS SELECT * FROM {NEXT};")
        } else {
            format!(
                "CREATE OR REPLACE TEMP TABLE {diff} AS SELECT * FROM {NEXT} INTERSECT ALL SELECT * FROM {};",
                t.diff
            )
        };
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE tw_next AS \
               SELECT 'missing' AS _tw_kind, * FROM ({src} EXCEPT ALL {rep}) \
               UNION ALL SELECT 'extra', * FROM ({rep} EXCEPT ALL {src});
             {keep}
             DELETE FROM {SRC};"
        ))
    }

    pub fn differences(&self, i: usize) -> Result<u64> {
        let t = &self.tables[i];
        if t.problem.is_some() {
            return Ok(0);
        }
        self.conn
            .query_row(&format!("SELECT count(*) FROM {}", t.diff), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sql_err("counting differences"))
    }
}

impl Comparison for Comparer {
    fn replica_position(&self, pipeline: &str) -> Result<Option<String>> {
        Comparer::replica_position(self, pipeline)
    }
    fn add_table(&mut self, schema: Arc<TableSchema>) -> Result<usize> {
        Comparer::add_table(self, schema)
    }
    fn comparable(&self, i: usize) -> bool {
        Comparer::comparable(self, i)
    }
    fn start(&mut self, i: usize, pass: Pass) -> Result<()> {
        Comparer::start(self, i, pass)
    }
    fn rows(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        Comparer::rows(self, rows)
    }
    fn finish(&mut self) -> Result<()> {
        Comparer::finish(self)
    }
    fn differences(&self, i: usize) -> Result<u64> {
        Comparer::differences(self, i)
    }
    fn recheck_prepare(&self, i: usize) -> Result<u64> {
        Comparer::recheck_prepare(self, i)
    }
    fn recheck_keys(&self, i: usize, from: u64, to: u64) -> Result<Vec<Vec<Value>>> {
        Comparer::recheck_keys(self, i, from, to)
    }
    fn recheck_batch(&mut self, from: u64, to: u64) -> Result<()> {
        Comparer::recheck_batch(self, from, to)
    }
    fn recheck_done(&mut self, i: usize) -> Result<()> {
        Comparer::recheck_done(self, i)
    }
    fn recheck_base(&mut self, i: usize, pipeline: &str) -> Result<bool> {
        Comparer::recheck_base(self, i, pipeline)
    }
    fn recheck_later(&self, i: usize) -> Result<Vec<(i64, String)>> {
        Comparer::recheck_later(self, i)
    }
    fn recheck_as_of(&mut self, i: usize, ordinal: i64) -> Result<()> {
        Comparer::recheck_as_of(self, i, ordinal)
    }
    fn result(&self, i: usize, max_examples: usize) -> Result<TableReport> {
        Comparer::result(self, i, max_examples)
    }
}
