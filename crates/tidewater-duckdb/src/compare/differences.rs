//! The differences found: keys re-checked at newer source snapshots (only those that differ
//! again stay), and what the report shows of them.

use crate::sql::{quote_ident, quote_literal, text_from_typed};
use duckdb::params;
use tidewater_core::{Error, Result, Value};

use super::sql::{columns, key_columns, key_join, key_list, or_distinct};
use super::{sql_err, Comparer, NEXT, RECHECK, REP, SRC};
use tidewater_core::replica::TableReport;

impl Comparer {
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
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(sql_err("reading keys to re-check"))?;
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
        let i = self.current()?.table;
        let t = &self.tables[i];
        let s = &t.schema;
        let keys: Vec<String> = key_columns(s)
            .map(|c| {
                let n = quote_ident(&c.name);
                format!("coalesce(s.{n}, r.{n})")
            })
            .collect();
        // The replica as of the round's snapshot (`as_of`), or as it is now.
        let as_of = self.replica_as_of(i, from, to);
        let (begin, replica, inconsistent, commit) = match as_of {
            Some((replica, inconsistent)) => {
                ("BEGIN TRANSACTION;", replica, inconsistent, "COMMIT;")
            }
            None => (
                "",
                format!(
                    "CREATE OR REPLACE TEMP TABLE tw_rep AS SELECT {cols} FROM {rep} r SEMI JOIN \
                   (SELECT * FROM {RECHECK} WHERE _tw_n BETWEEN {from} AND {to}) b ON {on_b};",
                    cols = columns(s, Some("r")),
                    rep = t.replica,
                    on_b = key_join(s, "r", "b"),
                ),
                String::new(),
                "",
            ),
        };
        let sql = format!(
            "{begin}{replica}
             INSERT INTO {NEXT} SELECT CASE WHEN r._tw_present IS NULL THEN 'missing' \
               WHEN s._tw_present IS NULL THEN 'extra' ELSE 'differing' END, {keys} \
               FROM (SELECT *, true AS _tw_present FROM {SRC}) s \
               FULL JOIN (SELECT *, true AS _tw_present FROM {REP}) r ON {on} \
               WHERE s._tw_present IS NULL OR r._tw_present IS NULL{distinct};
             {inconsistent}
             DELETE FROM {SRC};{commit}",
            on = key_join(s, "s", "r"),
            keys = keys.join(", "),
            distinct = or_distinct(s),
        );
        self.exec(&sql).inspect_err(|_| {
            if !begin.is_empty() {
                let _ = self.exec("ROLLBACK");
            }
        })
    }

    /// Only the keys that differed again remain.
    pub fn recheck_done(&mut self, i: usize) -> Result<()> {
        self.current = None;
        self.as_of_done(i)?;
        let diff = self.tables[i]
            .diff
            .trim_start_matches("temp.main.")
            .to_string();
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE {diff} AS SELECT * FROM {NEXT}"
        ))
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
                    format!(
                        "{} || CAST({n} AS VARCHAR)",
                        quote_literal(&format!("{}=", c.name))
                    )
                })
                .collect();
            (
                format!("concat_ws(', ', {})", parts.join(", ")),
                key_list(&t.schema, "d"),
            )
        } else {
            let parts: Vec<String> = t
                .schema
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "coalesce(CAST({} AS VARCHAR), 'NULL')",
                        quote_ident(&c.name)
                    )
                })
                .collect();
            let label = format!("'(' || concat_ws(', ', {}) || ')'", parts.join(", "));
            (label.clone(), label)
        };
        let sql = format!(
            "SELECT _tw_kind, count(*) OVER (PARTITION BY _tw_kind), {label} FROM {} d \
             QUALIFY row_number() OVER (PARTITION BY _tw_kind ORDER BY {order}) <= ? \
             ORDER BY _tw_kind, {order}",
            t.diff
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(sql_err("reading differences"))?;
        let rows = stmt
            .query_map([max_examples.max(1) as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql_err("reading differences"))?;
        let examples: Vec<(String, i64, String)> = rows
            .collect::<std::result::Result<_, _>>()
            .map_err(sql_err("reading differences"))?;
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
