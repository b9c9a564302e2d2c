//! The BigQuery side of `verify` (`tidewater_core::replica::Comparison`): source rows compared
//! with the replica inside BigQuery, chunk by chunk, in bounded memory.
//!
//! Each chunk of source rows (read in the source's key order, at most `CHUNK_ROWS` rows or
//! `CHUNK_BYTES` of SQL) goes into one query as literals cast to the replica's types
//! (`sql`: the values the sink would send, cast by BigQuery), joined on the key with the
//! replica rows of the chunk's key range. The query returns only what differs: missing and
//! differing keys, and replica keys of the range that no source row matched. Nothing is
//! written to BigQuery, so nothing here needs DML or meets the streaming buffer. The range has
//! constant bounds on the first key column (the replica's clustering); the chunk's own keys
//! come from the JSON literal, which BigQuery may not prune by (docs/bigquery.md, cost).
//!
//! Ranges are in BigQuery's order of the keys, which need not be the source's (a
//! case-insensitive collation): a chunk's range ends at the greatest key, in BigQuery's
//! order, read so far (`max_key`), so every replica row falls in exactly one range, and the
//! replica rows of the chunk's own keys are read wherever they lie (`IN` the chunk's first
//! key values). A replica row no source row matched in its range is kept aside; a later
//! source row of the same key takes it back. What is left aside at the end is extra.
//!
//! Memory: one chunk of source rows, one result page, and the differing keys (at most
//! `MAX_KEPT` per table; more are counted, and then not re-checked). Keys are kept as the
//! text BigQuery gives for them (`sql::key_text`) and handed to the source as canonical text.
//!
//! Consistency: the replica is read as it is at each chunk; it only moves forward, by
//! whole commits that also move the stored position. The verify engine reads the position
//! first and re-checks the keys that differ at newer source snapshots, so a key changed by a
//! commit after the source's snapshot is not reported unless it differs every time.
//!
//! Keyless tables are compared as multisets of row images (`multiset`): per-bucket
//! fingerprint figures first, then the rows of the buckets that differ.

mod multiset;
mod sql;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use serde_json::Value as Json;
use tidewater_core::replica::{Comparison, Pass, TableReport};
use tidewater_core::{Column, Error, Result, TableSchema, Value};
use tokio::runtime::Handle;

use crate::client::{BqClient, Page, Paging};
use crate::evolve::sql_type;
use crate::state;
use crate::tables::{source_fields, table_names};
use crate::types::{bq_type, BqField};

use self::multiset::Multiset;
use self::sql::{
    columns, distinct, encoded, first_key_in, key_join, key_range, key_texts, key_usable,
    source_rows,
};

/// Source rows per comparison query.
const CHUNK_ROWS: usize = 5000;
/// Bytes of row literals per comparison query (BigQuery takes queries up to 1 MB, and the
/// query also lists the chunk's first key values).
const CHUNK_BYTES: usize = 256 << 10;
/// Differing keys kept per table.
const MAX_KEPT: usize = 200_000;
/// Rows per result page.
const PAGE_ROWS: i32 = 10_000;
const POLL_MS: i32 = 10_000;
/// Example rows kept per kind for a keyless table (the report shows up to `--max-examples`).
const MAX_EXAMPLES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    Extra,
    Differing,
}

/// Differing keys (as BigQuery's key texts) and their kinds; past `MAX_KEPT`, counts only.
#[derive(Default)]
struct Diffs {
    keys: BTreeMap<Vec<String>, Kind>,
    overflow: BTreeMap<&'static str, u64>,
}

impl Diffs {
    fn add(&mut self, key: Vec<String>, kind: Kind) {
        if self.keys.len() < MAX_KEPT || self.keys.contains_key(&key) {
            self.keys.insert(key, kind);
        } else {
            *self.overflow.entry(label(kind)).or_default() += 1;
        }
    }

    fn count(&self, kind: Kind) -> u64 {
        let kept = self.keys.values().filter(|k| **k == kind).count() as u64;
        kept + self.overflow.get(label(kind)).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.keys.len() as u64 + self.overflow.values().sum::<u64>()
    }
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Missing => "missing",
        Kind::Extra => "extra",
        Kind::Differing => "differing",
    }
}

struct Table {
    schema: Arc<TableSchema>,
    /// The replica table, qualified and quoted.
    replica: String,
    problem: Option<String>,
    /// Source rows compared (first pass).
    rows: u64,
    diffs: Diffs,
    /// A keyless table's comparison (`multiset`).
    multiset: Option<Multiset>,
}

/// The table whose source rows are arriving.
struct Current {
    table: usize,
    pass: Pass,
    /// Source rows as the text the comparison casts (`sql::encoded`).
    staged: Vec<Vec<Option<String>>>,
    staged_bytes: usize,
    /// The greatest key compared so far, in BigQuery's order.
    cursor: Option<Vec<String>>,
    /// Replica keys of compared ranges that no source row matched (yet).
    aside: BTreeSet<Vec<String>>,
    /// What a re-check found.
    next: Diffs,
}

pub struct BqComparison {
    rt: Handle,
    client: Arc<BqClient>,
    tables: Vec<Table>,
    current: Option<Current>,
}

impl BqComparison {
    pub fn new(rt: Handle, client: Arc<BqClient>) -> BqComparison {
        BqComparison {
            rt,
            client,
            tables: Vec::new(),
            current: None,
        }
    }

    fn current(&mut self) -> Result<&mut Current> {
        self.current
            .as_mut()
            .ok_or_else(|| Error::sink("internal: verify rows without a table"))
    }

    /// Why table `schema`'s rows cannot be compared, if they cannot.
    fn problem(&self, schema: &TableSchema) -> Result<Option<String>> {
        if let Some(&k) = schema
            .key
            .iter()
            .find(|&&k| !key_usable(&bq_type(&schema.columns[k].ty)))
        {
            return Ok(Some(format!(
                "key column {} is an array or JSON, which verify cannot range over on BigQuery",
                schema.columns[k].name
            )));
        }
        let name = table_names(&schema.id).replica;
        let Some(actual) = self.rt.block_on(self.client.table_fields(&name))? else {
            return Ok(Some("the table is not in the replica".into()));
        };
        let mut problems = Vec::new();
        let expected = source_fields(schema);
        for e in &expected {
            match actual.iter().find(|a| a.name == e.name) {
                None => problems.push(format!("column {} is not in the replica", e.name)),
                Some(a) if sql_type(a) != sql_type(e) => problems.push(format!(
                    "column {} is {} in the replica, {} from the source",
                    e.name,
                    sql_type(a),
                    sql_type(e)
                )),
                Some(_) => {}
            }
        }
        for a in &actual {
            if !expected.iter().any(|e| e.name == a.name) {
                let name = &a.name;
                problems.push(format!(
                    "the replica has column {name}, which the source has not"
                ));
            }
        }
        Ok((!problems.is_empty()).then(|| problems.join("; ")))
    }

    /// Runs a query and hands each result row to `f`, page by page.
    fn each_result(
        &mut self,
        what: &str,
        sql: &str,
        mut f: impl FnMut(&mut Self, &[Json]) -> Result<()> + Send,
    ) -> Result<()> {
        let (rt, client) = (self.rt.clone(), self.client.clone());
        let never = || false;
        let paging = Paging {
            page_rows: PAGE_ROWS,
            poll_ms: POLL_MS,
            stop: &never,
        };
        let mut take = |page: Page| {
            for row in page.rows {
                f(self, &row)?;
            }
            Ok(true)
        };
        rt.block_on(client.query_pages(what, sql, paging, &mut take))
    }

    /// Runs a comparison query and hands each result row (kind, in range, key texts) to `f`.
    fn each_row(
        &mut self,
        what: &str,
        sql: &str,
        mut f: impl FnMut(&mut Self, &str, Option<bool>, Vec<String>) + Send,
    ) -> Result<()> {
        self.each_result(what, sql, |me, row| {
            let text = |v: &Json| v.as_str().map(str::to_string);
            let kind = row.first().and_then(text).unwrap_or_default();
            let in_range = row.get(1).and_then(text).map(|t| t == "true");
            let key = row[2..]
                .iter()
                .map(|v| text(v).unwrap_or_default())
                .collect();
            f(me, &kind, in_range, key);
            Ok(())
        })
    }

    /// A keyless table: the staged source rows into its multiset comparison.
    fn multiset_chunk(&mut self) -> Result<()> {
        let cur = self.current.as_ref().expect("a table is started");
        let t = &self.tables[cur.table];
        let m = t.multiset.as_ref().expect("keyless");
        if let Some(sql) = m.chunk_sql(&t.schema, &cur.staged) {
            let (i, what) = (cur.table, format!("verify: comparing {}", t.schema.id));
            self.each_result(&what, &sql, |me, row| {
                let m = me.tables[i].multiset.as_mut().expect("keyless");
                m.add_source(row, MAX_KEPT)
            })?;
        }
        let cur = self.current.as_mut().expect("started");
        cur.staged.clear();
        cur.staged_bytes = 0;
        Ok(())
    }

    /// A keyless table: the replica's side, then the differences.
    fn multiset_finish(&mut self, i: usize) -> Result<()> {
        self.multiset_chunk()?;
        let t = &self.tables[i];
        let m = t.multiset.as_ref().expect("keyless");
        if let Some(sql) = m.replica_sql(&t.schema, &t.replica) {
            let what = format!("verify: reading {}", t.schema.id);
            self.each_result(&what, &sql, |me, row| {
                let m = me.tables[i].multiset.as_mut().expect("keyless");
                m.add_replica(row, MAX_KEPT)
            })?;
        }
        let m = self.tables[i].multiset.as_mut().expect("keyless");
        m.finish(MAX_EXAMPLES);
        Ok(())
    }

    /// The greatest key among the staged rows and the cursor, in BigQuery's order.
    fn max_key(&self, t: &Table, cur: &Current) -> Result<Option<Vec<String>>> {
        let s = &t.schema;
        let key_schema = key_only(s);
        let mut keys: Vec<Vec<Option<String>>> = cur
            .staged
            .iter()
            .map(|row| s.key.iter().map(|&k| row[k].clone()).collect())
            .collect();
        if let Some(c) = &cur.cursor {
            keys.push(c.iter().cloned().map(Some).collect());
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let order: Vec<String> = key_schema
            .columns
            .iter()
            .map(|c| format!("t.{} DESC", crate::tables::ident(&c.name)))
            .collect();
        let sql = format!(
            "SELECT {} FROM ({}) t ORDER BY {} LIMIT 1",
            key_texts(&key_schema, "t", "t"),
            source_rows(&key_schema, &keys),
            order.join(", ")
        );
        let rows = self.rt.block_on(self.client.query(
            "verify: the chunk's last key",
            &sql,
            None,
        ))?;
        let texts = |row: &Vec<Json>| {
            row.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        };
        Ok(rows.first().map(texts))
    }

    /// Compares the staged rows with the replica rows of their key range (unbounded above
    /// when `last`), and the replica rows of their keys wherever they lie.
    fn compare_chunk(&mut self, last: bool) -> Result<()> {
        let cur = self.current.as_ref().expect("a table is started");
        let t = &self.tables[cur.table];
        let s = &t.schema;
        let hi = if last { None } else { self.max_key(t, cur)? };
        let range = key_range(s, "r", cur.cursor.as_deref(), hi.as_deref());
        let first: BTreeSet<&str> = cur
            .staged
            .iter()
            .filter_map(|row| row[s.key[0]].as_deref())
            .collect();
        let first: Vec<&str> = first.into_iter().collect();
        let sql = format!(
            "WITH s AS ({source}), \
             r AS (SELECT {rcols}, true AS _tw_present, ({range}) AS _tw_in_range FROM {rep} r \
                   WHERE ({range}) OR {own}) \
             SELECT CASE WHEN r._tw_present IS NULL THEN 'missing' \
               WHEN s._tw_present IS NULL THEN 'aside' WHEN {distinct} THEN 'differing' \
               ELSE 'same' END, r._tw_in_range, {keys} \
             FROM s FULL JOIN r ON {on} \
             WHERE r._tw_present IS NULL OR (s._tw_present IS NULL AND r._tw_in_range) \
               OR (s._tw_present AND (NOT r._tw_in_range OR {distinct}))",
            source = source_rows(s, &cur.staged),
            rcols = columns(s, "r"),
            rep = t.replica,
            own = first_key_in(s, "r", &first),
            distinct = distinct(s),
            keys = key_texts(s, "s", "r"),
            on = key_join(s, "s", "r"),
        );
        let (i, what) = (cur.table, format!("verify: comparing {}", s.id));
        self.each_row(&what, &sql, |me, kind, in_range, key| {
            let cur = me.current.as_mut().expect("started");
            let diffs = &mut me.tables[i].diffs;
            match kind {
                "missing" => diffs.add(key, Kind::Missing),
                "aside" if cur.aside.len() < MAX_KEPT => {
                    cur.aside.insert(key);
                }
                "aside" => diffs.add(key, Kind::Extra),
                other => {
                    if in_range == Some(false) {
                        cur.aside.remove(&key);
                    }
                    if other == "differing" {
                        diffs.add(key, Kind::Differing);
                    }
                }
            }
        })?;
        let cur = self.current.as_mut().expect("started");
        cur.cursor = hi;
        cur.staged.clear();
        cur.staged_bytes = 0;
        Ok(())
    }

    /// Compares the staged source rows of re-checked keys `from..=to` with the replica's.
    fn compare_recheck(&mut self, from: u64, to: u64) -> Result<()> {
        let cur = self.current.as_ref().expect("a table is started");
        let t = &self.tables[cur.table];
        let s = &t.schema;
        let keys = t.diffs.keys.keys().skip((from - 1) as usize);
        let keys: Vec<&Vec<String>> = keys.take((to + 1 - from) as usize).collect();
        let key_rows: Vec<Vec<Option<String>>> = keys
            .iter()
            .map(|k| k.iter().cloned().map(Some).collect())
            .collect();
        let first: BTreeSet<&str> = keys.iter().map(|k| k[0].as_str()).collect();
        let first: Vec<&str> = first.into_iter().collect();
        let key_schema = key_only(s);
        let sql = format!(
            "WITH s AS ({source}), k AS ({keys}), \
             r AS (SELECT {rcols}, true AS _tw_present FROM {rep} r JOIN k ON {on_k} WHERE {own}) \
             SELECT CASE WHEN r._tw_present IS NULL THEN 'missing' \
               WHEN s._tw_present IS NULL THEN 'extra' ELSE 'differing' END, NULL, {texts} \
             FROM s FULL JOIN r ON {on} \
             WHERE s._tw_present IS NULL OR r._tw_present IS NULL OR {distinct}",
            source = source_rows(s, &cur.staged),
            keys = source_rows(&key_schema, &key_rows),
            rcols = columns(s, "r"),
            rep = t.replica,
            on_k = key_join(s, "k", "r"),
            own = first_key_in(s, "r", &first),
            texts = key_texts(s, "s", "r"),
            on = key_join(s, "s", "r"),
            distinct = distinct(s),
        );
        let what = format!("verify: re-checking {}", s.id);
        self.each_row(&what, &sql, |me, kind, _, key| {
            let kind = match kind {
                "missing" => Kind::Missing,
                "extra" => Kind::Extra,
                _ => Kind::Differing,
            };
            me.current.as_mut().expect("started").next.add(key, kind);
        })?;
        let cur = self.current.as_mut().expect("started");
        cur.staged.clear();
        cur.staged_bytes = 0;
        Ok(())
    }

    /// A key's texts as the source reads them (canonical text).
    fn canonical_key(&self, s: &TableSchema, key: &[String]) -> Vec<Value> {
        s.key
            .iter()
            .zip(key)
            .map(|(&k, text)| match bq_type(&s.columns[k].ty).field {
                BqField::Bytes => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap_or_default();
                    Value::text(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
                }
                _ => Value::text(text),
            })
            .collect()
    }
}

/// A schema of `s`'s key columns alone (all of them the key).
fn key_only(s: &TableSchema) -> TableSchema {
    let columns: Vec<Column> = s.key.iter().map(|&k| s.columns[k].clone()).collect();
    TableSchema {
        id: s.id.clone(),
        key: (0..columns.len()).collect(),
        columns,
    }
}

impl Comparison for BqComparison {
    fn replica_position(&self, pipeline: &str) -> Result<Option<String>> {
        let stored = self.rt.block_on(state::read(&self.client, pipeline))?;
        Ok(stored.and_then(|s| s.position))
    }

    fn add_table(&mut self, schema: Arc<TableSchema>) -> Result<usize> {
        let problem = self.problem(&schema)?;
        let replica = self.client.qualified(&table_names(&schema.id).replica);
        self.tables.push(Table {
            schema,
            replica,
            problem,
            rows: 0,
            diffs: Diffs::default(),
            multiset: None,
        });
        Ok(self.tables.len() - 1)
    }

    fn comparable(&self, i: usize) -> bool {
        self.tables[i].problem.is_none()
    }

    fn start(&mut self, i: usize, pass: Pass) -> Result<()> {
        if pass == Pass::First {
            self.tables[i].diffs = Diffs::default();
        }
        let keyless = !self.tables[i].schema.has_key();
        match (&mut self.tables[i].multiset, pass) {
            (m, Pass::First) if keyless => *m = Some(Multiset::default()),
            (Some(m), Pass::Rescan) => m.rescan(),
            _ => {}
        }
        self.current = Some(Current {
            table: i,
            pass,
            staged: Vec::new(),
            staged_bytes: 0,
            cursor: None,
            aside: BTreeSet::new(),
            next: Diffs::default(),
        });
        Ok(())
    }

    fn rows(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        let i = self.current()?.table;
        let schema = self.tables[i].schema.clone();
        let pass = self.current()?.pass;
        if pass == Pass::First {
            self.tables[i].rows += rows.len() as u64;
        }
        for row in rows {
            let cells = schema
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| encoded(&c.ty, v))
                .collect::<Result<Vec<_>>>()?;
            let cur = self.current()?;
            cur.staged_bytes += cells.iter().flatten().map(|c| c.len() + 4).sum::<usize>();
            cur.staged.push(cells);
            let full = cur.staged.len() >= CHUNK_ROWS || cur.staged_bytes >= CHUNK_BYTES;
            if full && !schema.has_key() {
                self.multiset_chunk()?;
            } else if full && pass == Pass::First {
                self.compare_chunk(false)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let i = self.current()?.table;
        if self.tables[i].multiset.is_some() {
            self.multiset_finish(i)?;
            self.current = None;
            return Ok(());
        }
        self.compare_chunk(true)?;
        let cur = self.current.take().expect("started");
        let diffs = &mut self.tables[cur.table].diffs;
        for key in cur.aside {
            diffs.add(key, Kind::Extra);
        }
        Ok(())
    }

    fn differences(&self, i: usize) -> Result<u64> {
        let t = &self.tables[i];
        Ok(match (&t.problem, &t.multiset) {
            (Some(_), _) => 0,
            (None, Some(m)) => m.missing + m.extra,
            (None, None) => t.diffs.total(),
        })
    }

    fn recheck_prepare(&self, i: usize) -> Result<u64> {
        Ok(self.tables[i].diffs.total())
    }

    fn recheck_keys(&self, i: usize, from: u64, to: u64) -> Result<Vec<Vec<Value>>> {
        let keys = self.tables[i].diffs.keys.keys();
        let wanted = keys
            .skip((from - 1) as usize)
            .take((to + 1 - from) as usize);
        let s = &self.tables[i].schema;
        Ok(wanted.map(|k| self.canonical_key(s, k)).collect())
    }

    fn recheck_batch(&mut self, from: u64, to: u64) -> Result<()> {
        self.compare_recheck(from, to)
    }

    fn recheck_done(&mut self, i: usize) -> Result<()> {
        let cur = self.current.take().expect("started");
        self.tables[i].diffs = cur.next;
        Ok(())
    }

    fn result(&self, i: usize, max_examples: usize) -> Result<TableReport> {
        let t = &self.tables[i];
        let mut report = TableReport {
            table: t.schema.id.to_string(),
            keyed: t.schema.has_key(),
            rows: t.rows,
            problem: t.problem.clone(),
            ..TableReport::default()
        };
        if t.problem.is_some() {
            return Ok(report);
        }
        if let Some(m) = &t.multiset {
            report.missing = m.missing;
            report.extra = m.extra;
            let take = |rows: &[String]| rows.iter().take(max_examples).cloned().collect();
            report.examples.missing = take(&m.examples_missing);
            report.examples.extra = take(&m.examples_extra);
            return Ok(report);
        }
        report.missing = t.diffs.count(Kind::Missing);
        report.extra = t.diffs.count(Kind::Extra);
        report.differing = t.diffs.count(Kind::Differing);
        let s = &t.schema;
        for (key, kind) in &t.diffs.keys {
            let list = match kind {
                Kind::Missing => &mut report.examples.missing,
                Kind::Extra => &mut report.examples.extra,
                Kind::Differing => &mut report.examples.differing,
            };
            if list.len() < max_examples {
                let texts = self.canonical_key(s, key);
                let parts: Vec<String> = s
                    .key
                    .iter()
                    .zip(&texts)
                    .map(|(&k, v)| format!("{}={}", s.columns[k].name, v.as_str().unwrap_or("")))
                    .collect();
                list.push(parts.join(", "));
            }
        }
        Ok(report)
    }
}
