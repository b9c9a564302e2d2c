//! How source rows enter DuckDB: text rows staged as Arrow batches into `tw_stage`, cast to the
//! replica's types (`cast_from_text`, as the sink does), and the check that the replica's table
//! has exactly those columns and types.

use std::sync::Arc;

use crate::sql::{cast_from_text, duckdb_type, quote_ident};
use duckdb::arrow::array::{ArrayRef, RecordBatch, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::{params, Connection};
use tidewater_core::{Error, Result, TableSchema, Value};

use super::{sql_err, Comparer, STAGE};
use crate::feed::Feed;

/// Inserts text rows into the staging table as one Arrow batch (column by column: much cheaper
/// than a call per value), by the feed's cached statement: an Appender would plan its insert
/// again at every flush, and the source hands rows over a thousand at a time.
pub(super) fn stage(
    conn: &Connection,
    feed: &mut Feed,
    schema: &TableSchema,
    rows: &[Vec<Value>],
) -> Result<()> {
    let n = schema.columns.len();
    let mut columns: Vec<Vec<Option<&str>>> = vec![Vec::with_capacity(rows.len()); n];
    for row in rows {
        for (c, v) in row.iter().enumerate() {
            columns[c].push(match v {
                Value::Text(_) => Some(v.as_str().ok_or_else(|| {
                    Error::source_fatal(format!("a value of {} is not valid UTF-8", schema.id))
                })?),
                _ => None,
            });
        }
    }
    let fields: Vec<Field> = (0..n)
        .map(|c| Field::new(format!("c{c}"), DataType::Utf8, true))
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::sink(format!("verify: staging source rows: {e}")))?;
    feed.insert(conn, STAGE, None, batch, &"verify: staging source rows")
        .map(drop)
}

/// `SELECT <staged text cast to the replica's types> AS <column names>[, extra] FROM tw_stage`.
pub(super) fn typed_stage(schema: &TableSchema, extra: &str) -> String {
    let mut casts: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} AS {}",
                cast_from_text(&format!("c{i}"), &c.ty),
                quote_ident(&c.name)
            )
        })
        .collect();
    if !extra.is_empty() {
        casts.push(extra.to_string());
    }
    format!("SELECT {} FROM {STAGE}", casts.join(", "))
}

impl Comparer {
    /// The columns of `schema_name.table` in database `db` (SQL text), with their types.
    pub(super) fn catalog_columns(
        &self,
        db: &str,
        schema_name: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>> {
        let sql = format!(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = {db} \
             AND schema_name = ? AND table_name = ? ORDER BY column_index"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(sql_err("reading columns"))?;
        let rows = stmt
            .query_map(params![schema_name, table], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_err("reading columns"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql_err("reading columns"))
    }

    pub(super) fn schema_problem(&self, schema: &TableSchema) -> Result<Option<String>> {
        let defs: Vec<String> = schema
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), duckdb_type(&c.ty)))
            .collect();
        self.exec(&format!(
            "CREATE OR REPLACE TEMP TABLE tw_probe ({})",
            defs.join(", ")
        ))?;
        let expected = self.catalog_columns("'temp'", "main", "tw_probe")?;
        let actual = self.catalog_columns(&self.database(), &schema.id.schema, &schema.id.name)?;
        if actual.is_empty() {
            return Ok(Some("the table is not in the replica".into()));
        }
        let mut problems = Vec::new();
        for (name, ty) in &expected {
            match actual.iter().find(|(n, _)| n == name) {
                None => problems.push(format!("column {name} is not in the replica")),
                Some((_, t)) if t != ty => problems.push(format!(
                    "column {name} is {t} in the replica, {ty} at the source"
                )),
                Some(_) => {}
            }
        }
        for (name, _) in &actual {
            if !expected.iter().any(|(n, _)| n == name) {
                problems.push(format!(
                    "the replica has column {name}, which the source has not"
                ));
            }
        }
        Ok((!problems.is_empty()).then(|| problems.join("; ")))
    }
}
