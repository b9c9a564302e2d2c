//! The DuckDB side of `verify`. Source rows arrive as canonical text, are cast to the
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

use std::sync::Arc;

use tidewater_core::{ColumnType, Error, Result, TableSchema, Value};
use tidewater_duckdb::duckdb::{params, Connection, ToSql};
use tidewater_duckdb::sql::{
    cast_from_text, duckdb_type, qualified, quote_ident, quote_literal, text_from_typed,
};

use super::report::TableReport;

/// Source rows per comparison statement.
pub const CHUNK_ROWS: usize = 100_000;

const STAGE: &str = "temp.main.tw_stage";
const SRC: &str = "temp.main.tw_src";
const REP: &str = "temp.main.tw_rep";
const PENDING: &str = "temp.main.tw_pending";
const NEXT: &str = "temp.main.tw_next";
const RECHECK: &str = "temp.main.tw_recheck";

pub struct Comparer {
    conn: Connection,
    /// The attached replica database, or None when `conn` is the replica's own.
    catalog: Option<String>,
    tables: Vec<Table>,
    /// The table whose rows are arriving.
    current: Option<Current>,
}

struct Table {
    schema: Arc<TableSchema>,
    replica: String,
    diff: String,
    /// Why the rows cannot be compared.
    problem: Option<String>,
    rows: u64,
}

struct Current {
    table: usize,
    staged: usize,
    /// A re-check: no comparison until the batch of keys is complete.
    recheck: bool,
    /// DuckDB text of the greatest key compared so far.
    cursor: Option<Vec<String>>,
}

fn sql_err(what: &str) -> impl Fn(tidewater_duckdb::duckdb::Error) -> Error + '_ {
    move |e| Error::sink(format!("verify: {what}: {e}"))
}

impl Comparer {
    pub fn new(conn: Connection, catalog: Option<String>) -> Comparer {
        Comparer {
            conn,
            catalog,
            tables: Vec::new(),
            current: None,
        }
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| Error::sink(format!("verify: {e}\n  in: {sql}")))
    }

    fn database(&self) -> String {
        match &self.catalog {
            Some(c) => quote_literal(c),
            None => "current_database()".into(),
        }
    }

    /// The replica's committed position.
    pub fn replica_position(&self, pipeline: &str) -> Result<Option<String>> {
        let prefix = self.catalog.as_deref().map(|c| format!("{}.", quote_ident(c)));
        let sql = format!(
            "SELECT position FROM {}_tidewater.pipeline WHERE name = ?",
            prefix.unwrap_or_default()
        );
        let mut stmt = self.conn.prepare(&sql).map_err(sql_err("reading the replica's position"))?;
        let mut rows = stmt.query([pipeline]).map_err(sql_err("reading the replica's position"))?;
        match rows.next().map_err(sql_err("reading the replica's position"))? {
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
        });
        Ok(i)
    }

    pub fn comparable(&self, i: usize) -> bool {
        self.tables[i].problem.is_none()
    }

    fn schema_problem(&self, schema: &TableSchema) -> Result<Option<String>> {
        let defs: Vec<String> = schema
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), duckdb_type(&c.ty)))
            .collect();
        self.exec(&format!("CREATE OR REPLACE TEMP TABLE tw_probe ({})", defs.join(", ")))?;
        let columns = |db: &str, schema_name: &str, table: &str| -> Result<Vec<(String, String)>> {
            let sql = format!(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = {db} \
                 AND schema_name = ? AND table_name = ? ORDER BY column_index"
            );
            let mut stmt = self.conn.prepare(&sql).map_err(sql_err("reading columns"))?;
            let rows = stmt
                .query_map(params![schema_name, table], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql_err("reading columns"))?;
            rows.collect::<std::result::Result<_, _>>().map_err(sql_err("reading columns"))
        };
        let expected = columns("'temp'", "main", "tw_probe")?;
        let actual = columns(&self.database(), &schema.id.schema, &schema.id.name)?;
        if actual.is_empty() {
            return Ok(Some("the table is not in the replica".into()));
        }
        let mut problems = Vec::new();
        for (name, ty) in &expected {
            match actual.iter().find(|(n, _)| n == name) {
                None => problems.push(format!("column {name} is not in the replica")),
                Some((_, t)) if t != ty => {
                    problems.push(format!("column {name} is {t} in the replica, {ty} at the source"))
                }
                Some(_) => {}
            }
        }
        for (name, _) in &actual {
            if !expected.iter().any(|(n, _)| n == name) {
                problems.push(format!("the replica has column {name}, which the source has not"));
            }
        }
        Ok((!problems.is_empty()).then(|| problems.join("; ")))
    }

    /// Prepares for table `i`'s rows: the whole table (`recheck` false), or the batches of
    /// keys of a re-check.
    pub fn start(&mut self, i: usize, recheck: bool) -> Result<()> {
        let t = &self.tables[i];
        let stage: Vec<String> = (0..t.schema.columns.len()).map(|c| format!("c{c} VARCHAR")).collect();
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
        if t.schema.has_key() && !recheck {
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
            recheck,
            cursor: None,
        });
        Ok(())
    }

    fn current(&self) -> Result<&Current> {
        self.current
            .as_ref()
            .ok_or_else(|| Error::sink("internal: verify rows without a table"))
    }

    /// Stages source rows; compares a chunk when enough are staged.
    pub fn rows(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        let cur = self.current()?;
        let (i, recheck) = (cur.table, cur.recheck);
        {
            let id = &self.tables[i].schema.id;
            let mut app = self
                .conn
                .appender_to_catalog_and_db("tw_stage", "temp", "main")
                .map_err(sql_err("staging source rows"))?;
            for row in rows {
                let cells: Vec<Option<&str>> = row
                    .iter()
                    .map(|v| match v {
                        Value::Text(_) => v.as_str().ok_or_else(|| {
                            Error::source_fatal(format!("a value of {id} is not valid UTF-8"))
                        }).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<Result<_>>()?;
                let params: Vec<&dyn ToSql> = cells.iter().map(|c| c as &dyn ToSql).collect();
                app.append_row(params.as_slice()).map_err(sql_err("staging source rows"))?;
            }
            app.flush().map_err(sql_err("staging source rows"))?;
        }
        if !recheck {
            self.tables[i].rows += rows.len() as u64;
        }
        let cur = self.current.as_mut().expect("checked above");
        cur.staged += rows.len();
        if cur.staged >= CHUNK_ROWS && !recheck {
            cur.staged = 0;
            if self.tables[i].schema.has_key() {
                self.compare_chunk(false)?;
            } else {
                self.load_source()?;
            }
        }
        Ok(())
    }

    /// Moves the staged text rows into the typed source table.
    fn load_source(&self) -> Result<()> {
        let t = &self.tables[self.current()?.table];
        let casts: Vec<String> = t
            .schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| cast_from_text(&format!("c{i}"), &c.ty))
            .collect();
        self.exec(&format!(
            "INSERT INTO {SRC} SELECT {} FROM {STAGE}; DELETE FROM {STAGE};",
            casts.join(", ")
        ))
    }

    /// The table's last rows have arrived: compares what is left.
    pub fn finish(&mut self, first_round: bool) -> Result<()> {
        let i = self.current()?.table;
        if self.tables[i].schema.has_key() {
            self.compare_chunk(true)?;
        } else {
            self.load_source()?;
            self.compare_multiset(i, first_round)?;
        }
        self.current = None;
        Ok(())
    }

    /// Compares the staged chunk with the replica rows of its key range.
    fn compare_chunk(&mut self, last: bool) -> Result<()> {
        self.load_source()?;
        let cur = self.current()?;
        let t = &self.tables[cur.table];
        let s = &t.schema;
        let hi = if last { None } else { self.max_key(cur.cursor.as_deref())? };
        let range = range_filter(s, cur.cursor.as_deref(), hi.as_deref());
        let on = key_join(s, "s", "r");
        let keys = key_list(s, "s");
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE tw_rep AS SELECT {cols} FROM {rep} r{range} \
               UNION ALL SELECT * FROM {PENDING};
             INSERT INTO {diff} SELECT CASE WHEN r._tw_present IS NULL THEN 'missing' ELSE 'differing' END, {keys} \
               FROM {SRC} s LEFT JOIN (SELECT *, true AS _tw_present FROM {REP}) r ON {on} \
               WHERE r._tw_present IS NULL{distinct};
             CREATE OR REPLACE TEMP TABLE tw_pending AS SELECT r.* FROM {REP} r ANTI JOIN {SRC} s ON {on};
             DELETE FROM {SRC};",
            cols = columns(s, Some("r")),
            rep = t.replica,
            diff = t.diff,
            distinct = or_distinct(s),
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
        let mut from = format!("SELECT {} FROM {SRC}", names.join(", "));
        if let Some(c) = cursor {
            from.push_str(&format!(" UNION ALL SELECT {}", key_literals(s, c).join(", ")));
        }
        let texts: Vec<String> = names.iter().map(|n| format!("CAST({n} AS VARCHAR)")).collect();
        let desc: Vec<String> = names.iter().map(|n| format!("{n} DESC")).collect();
        let sql = format!(
            "SELECT {} FROM ({from}) ORDER BY {} LIMIT 1",
            texts.join(", "),
            desc.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(sql_err("finding the chunk's last key"))?;
        let mut rows = stmt.query([]).map_err(sql_err("finding the chunk's last key"))?;
        let Some(row) = rows.next().map_err(sql_err("finding the chunk's last key"))? else {
            return Ok(None);
        };
        (0..names.len())
            .map(|k| row.get::<_, String>(k).map_err(sql_err("finding the chunk's last key")))
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
            .query_row(&format!("SELECT count(*) FROM {}", t.diff), [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql_err("counting differences"))
    }

    /// Keyed re-check: numbers the keys that differ; returns how many.
    pub fn recheck_prepare(&self, i: usize) -> Result<u64> {
        let t = &self.tables[i];
        let keys = key_list(&t.schema, "d");
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE tw_recheck AS \
               SELECT row_number() OVER (ORDER BY {keys}) AS _tw_n, {keys} FROM {} d;
             CREATE OR REPLACE TEMP TABLE tw_next AS SELECT * FROM {} LIMIT 0;",
            t.diff, t.diff
        ))?;
        self.differences(i)
    }

    /// Keys `from..=to` of the re-check, as canonical text for the source.
    pub fn recheck_keys(&self, i: usize, from: u64, to: u64) -> Result<Vec<Vec<Value>>> {
        let s = &self.tables[i].schema;
        let texts = key_columns(s)
            .map(|c| {
                text_from_typed(&quote_ident(&c.name), &c.ty).ok_or_else(|| {
                    Error::sink(format!("verify cannot look up {} by its LIST key", s.id))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let sql = format!(
            "SELECT {} FROM {RECHECK} WHERE _tw_n BETWEEN ? AND ? ORDER BY _tw_n",
            texts.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(sql_err("reading keys to re-check"))?;
        let rows = stmt
            .query_map(params![from as i64, to as i64], |r| {
                (0..texts.len())
                    .map(|k| r.get::<_, String>(k).map(|v| Value::text(&v)))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .map_err(sql_err("reading keys to re-check"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql_err("reading keys to re-check"))
    }

    /// Compares the source rows of keys `from..=to` (staged) with the replica's.
    pub fn recheck_batch(&mut self, from: u64, to: u64) -> Result<()> {
        self.load_source()?;
        let t = &self.tables[self.current()?.table];
        let s = &t.schema;
        let keys: Vec<String> = key_columns(s)
            .map(|c| {
                let n = quote_ident(&c.name);
                format!("coalesce(s.{n}, r.{n})")
            })
            .collect();
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE tw_rep AS SELECT {cols} FROM {rep} r SEMI JOIN \
               (SELECT * FROM {RECHECK} WHERE _tw_n BETWEEN {from} AND {to}) b ON {on_b};
             INSERT INTO {NEXT} SELECT CASE WHEN r._tw_present IS NULL THEN 'missing' \
               WHEN s._tw_present IS NULL THEN 'extra' ELSE 'differing' END, {keys} \
               FROM (SELECT *, true AS _tw_present FROM {SRC}) s \
               FULL JOIN (SELECT *, true AS _tw_present FROM {REP}) r ON {on} \
               WHERE s._tw_present IS NULL OR r._tw_present IS NULL{distinct};
             DELETE FROM {SRC};",
            cols = columns(s, Some("r")),
            rep = t.replica,
            on_b = key_join(s, "r", "b"),
            on = key_join(s, "s", "r"),
            keys = keys.join(", "),
            distinct = or_distinct(s),
        ))
    }

    /// Only the keys that differed again remain.
    pub fn recheck_done(&mut self, i: usize) -> Result<()> {
        self.current = None;
        let diff = self.tables[i].diff.trim_start_matches("temp.main.").to_string();
        self.exec(&format!("CREATE OR REPLACE TEMP TABLE {diff} AS SELECT * FROM {NEXT}"))
    }

    /// Counts and up to `max_examples` keys (rows) per kind.
    pub fn result(&self, i: usize, max_examples: usize) -> Result<TableReport> {
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
        let (label, order) = if t.schema.has_key() {
            let parts: Vec<String> = key_columns(&t.schema)
                .map(|c| {
                    let n = quote_ident(&c.name);
                    format!("{} || CAST({n} AS VARCHAR)", quote_literal(&format!("{}=", c.name)))
                })
                .collect();
            (format!("concat_ws(', ', {})", parts.join(", ")), key_list(&t.schema, "d"))
        } else {
            let parts: Vec<String> = t
                .schema
                .columns
                .iter()
                .map(|c| format!("coalesce(CAST({} AS VARCHAR), 'NULL')", quote_ident(&c.name)))
                .collect();
            (format!("'(' || concat_ws(', ', {}) || ')'", parts.join(", ")), "1".into())
        };
        let sql = format!(
            "SELECT _tw_kind, count(*) OVER (PARTITION BY _tw_kind), {label} FROM {} d \
             QUALIFY row_number() OVER (PARTITION BY _tw_kind ORDER BY {order}) <= ?",
            t.diff
        );
        let mut stmt = self.conn.prepare(&sql).map_err(sql_err("reading differences"))?;
        let rows = stmt
            .query_map([max_examples.max(1) as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(sql_err("reading differences"))?;
        let mut examples: Vec<(String, i64, String)> = rows
            .collect::<std::result::Result<_, _>>()
            .map_err(sql_err("reading differences"))?;
        examples.sort_by(|a, b| a.0.cmp(&b.0));
        for (kind, count, key) in examples {
            let (n, list): (&mut u64, &mut Vec<String>) = match kind.as_str() {
                "missing" => (&mut report.missing, &mut report.examples.missing),
                "extra" => (&mut report.extra, &mut report.examples.extra),
                _ => (&mut report.differing, &mut report.examples.differing),
            };
            *n = count as u64;
            if list.len() < max_examples {
                list.push(key);
            }
        }
        Ok(report)
    }
}

fn key_columns(s: &TableSchema) -> impl Iterator<Item = &tidewater_core::Column> {
    s.key.iter().map(|&k| &s.columns[k])
}

/// `a.k1, a.k2`
fn key_list(s: &TableSchema, alias: &str) -> String {
    key_columns(s)
        .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a.k1 = b.k1 AND ...`
fn key_join(s: &TableSchema, a: &str, b: &str) -> String {
    key_columns(s)
        .map(|c| {
            let n = quote_ident(&c.name);
            format!("{a}.{n} = {b}.{n}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The source's columns, in source order (the replica's physical order may differ).
fn columns(s: &TableSchema, alias: Option<&str>) -> String {
    let prefix = alias.map(|a| format!("{a}.")).unwrap_or_default();
    s.columns
        .iter()
        .map(|c| format!("{prefix}{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns as compared: JSON by its document (whitespace aside), everything else as is.
fn normalized(s: &TableSchema) -> String {
    s.columns
        .iter()
        .map(|c| {
            let n = quote_ident(&c.name);
            match c.ty {
                ColumnType::Json => format!("json(r.{n}) AS {n}"),
                _ => format!("r.{n}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` OR s.c IS DISTINCT FROM r.c ...` over the non-key columns.
fn or_distinct(s: &TableSchema) -> String {
    s.columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !s.key.contains(i))
        .map(|(_, c)| {
            let n = quote_ident(&c.name);
            match c.ty {
                ColumnType::Json => format!(" OR json(s.{n}) IS DISTINCT FROM json(r.{n})"),
                _ => format!(" OR s.{n} IS DISTINCT FROM r.{n}"),
            }
        })
        .collect()
}

/// `CAST('text' AS type)` per key column, from DuckDB's own text of the values.
fn key_literals(s: &TableSchema, texts: &[String]) -> Vec<String> {
    key_columns(s)
        .zip(texts)
        .map(|(c, t)| format!("CAST({} AS {})", quote_literal(t), duckdb_type(&c.ty)))
        .collect()
}

/// ` WHERE lo < key <= hi` in DuckDB's order of keys (row comparison), with a plain range on
/// the first key column so the scan can skip row groups by their min/max.
fn range_filter(s: &TableSchema, lo: Option<&[String]>, hi: Option<&[String]>) -> String {
    let names: Vec<String> = key_columns(s).map(|c| format!("r.{}", quote_ident(&c.name))).collect();
    let row = |items: &[String]| {
        if items.len() == 1 {
            items[0].clone()
        } else {
            format!("({})", items.join(", "))
        }
    };
    let mut conds = Vec::new();
    for (bound, strict, op) in [(lo, ">", ">="), (hi, "<=", "<=")] {
        let Some(texts) = bound else { continue };
        let lits = key_literals(s, texts);
        conds.push(format!("{} {strict} {}", row(&names), row(&lits)));
        if names.len() > 1 {
            conds.push(format!("{} {op} {}", names[0], lits[0]));
        }
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, TableId};

    fn schema(key: Vec<usize>) -> TableSchema {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: false,
            source_type: String::new(),
        };
        TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![
                col("a", ColumnType::Int32),
                col("b", ColumnType::Text),
                col("j", ColumnType::Json),
            ],
            key,
        }
    }

    #[test]
    fn ranges_and_predicates() {
        let one = schema(vec![0]);
        assert_eq!(range_filter(&one, None, None), "");
        assert_eq!(
            range_filter(&one, Some(&["1".into()]), Some(&["9".into()])),
            " WHERE r.\"a\" > CAST('1' AS INTEGER) AND r.\"a\" <= CAST('9' AS INTEGER)"
        );
        let two = schema(vec![1, 0]);
        assert_eq!(
            range_filter(&two, Some(&["x".into(), "1".into()]), None),
            " WHERE (r.\"b\", r.\"a\") > (CAST('x' AS VARCHAR), CAST('1' AS INTEGER)) \
             AND r.\"b\" >= CAST('x' AS VARCHAR)"
        );
        assert_eq!(key_join(&two, "s", "r"), "s.\"b\" = r.\"b\" AND s.\"a\" = r.\"a\"");
        assert_eq!(
            or_distinct(&two),
            " OR json(s.\"j\") IS DISTINCT FROM json(r.\"j\")"
        );
    }
}
