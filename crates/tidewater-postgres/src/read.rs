//! Reading a table's rows as canonical text inside an open snapshot transaction, streamed with
//! `COPY ... TO STDOUT`: the initial snapshot (whole tables, in storage order) and `verify`
//! (in primary-key order, or only the rows of given keys, at a snapshot of its own).

use bytes::Bytes;
use futures_util::StreamExt;
use tidewater_core::copy::KeyRange;
use tidewater_core::{ColumnType, Error, Position, Result, RowConsumer, TableSchema, Value};
use tokio_postgres::Client;

use crate::conn::{current_wal_lsn, format_lsn, parse_lsn, pg_error};
use crate::setup::{quote_ident, quoted_table};
use crate::text::split_copy_line;
use crate::types::canonical;

/// Rows per event a table read sends on (snapshot copies and the stream's chunks).
pub const CHUNK_ROWS: usize = 1024;

pub struct ReadOptions<'a> {
    /// In primary-key order, text-like key columns in byte order (as DuckDB sorts them).
    pub ordered: bool,
    /// Only the rows with these keys (canonical text, in `schema.key` order).
    pub keys: Option<&'a [Vec<Value>]>,
    /// Rows per chunk handed to the consumer.
    pub chunk_rows: usize,
}

/// Opens a read-only REPEATABLE READ transaction whose snapshot every following read on
/// `client` sees, and returns the WAL position of that snapshot: every transaction it shows
/// committed at or before it (with `synchronous_commit = on`). End it with
/// [`end_read_snapshot`].
pub async fn begin_read_snapshot(client: &Client) -> Result<Position> {
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             SET LOCAL standard_conforming_strings = on",
        )
        .await
        .map_err(|e| pg_error(e, "opening a snapshot"))?;
    // The snapshot is taken by this first query, before the position is read.
    let lsn = current_wal_lsn(client, "reading the snapshot's WAL position").await?;
    Ok(Position(format_lsn(lsn)))
}

pub async fn end_read_snapshot(client: &Client) -> Result<()> {
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| pg_error(e, "ending the snapshot"))
}

/// Whether a replica that has applied everything up to `applied` holds every transaction
/// committed at or before `target` (both LSNs).
pub fn position_reached(applied: &Position, target: &Position) -> bool {
    match (parse_lsn(&applied.0), parse_lsn(&target.0)) {
        (Some(a), Some(t)) => a >= t,
        _ => false,
    }
}

/// Streams the rows of `schema` selected by `opts` to `out`; returns how many.
pub async fn read_table(
    client: &Client,
    schema: &TableSchema,
    opts: &ReadOptions<'_>,
    out: &mut impl RowConsumer,
) -> Result<u64> {
    let sql = copy_statement(schema, opts)?;
    copy_rows(client, schema, &sql, opts.chunk_rows, out).await
}

/// Streams the rows of one chunk of the chunked initial snapshot (`tidewater_core::copy`):
/// keyset pagination on the primary key, `(k1, k2) > (last key) ORDER BY k1, k2 LIMIT n`,
/// compared and ordered by the server in the key's own collation; the whole table when it
/// has no key. A range of a parallel round (`range.upto`) is read whole, without the limit.
/// Returns how many rows.
pub async fn read_chunk(
    client: &Client,
    schema: &TableSchema,
    range: &KeyRange,
    limit: usize,
    out: &mut impl RowConsumer,
) -> Result<u64> {
    let sql = chunk_statement(schema, range, limit)?;
    copy_rows(client, schema, &sql, CHUNK_ROWS, out).await
}

/// The keys that end the next `count` chunks of `limit` rows after `after` (fewer where the
/// table ends first), for a parallel round (`tidewater_core::copy`, "Parallel reads"): each
/// the `limit`-th key after the previous one, found by the server in key order.
pub async fn chunk_bounds(
    client: &Client,
    schema: &TableSchema,
    after: Option<Vec<Value>>,
    limit: usize,
    count: usize,
) -> Result<Vec<Vec<Value>>> {
    // The key columns alone, parsed as a table of them.
    let keys = TableSchema {
        id: schema.id.clone(),
        columns: schema
            .key
            .iter()
            .map(|&k| schema.columns[k].clone())
            .collect(),
        key: (0..schema.key.len()).collect(),
    };
    let mut bounds: Vec<Vec<Value>> = Vec::with_capacity(count);
    let mut after = after;
    while bounds.len() < count {
        let range = KeyRange { after, upto: None };
        let select = keyset_select(schema, &range, true)?;
        let sql = format!(
            "COPY ({select} OFFSET {} LIMIT 1) TO STDOUT",
            limit.max(1) - 1
        );
        let mut found = LastRow(None);
        copy_rows(client, &keys, &sql, 1, &mut found).await?;
        let Some(bound) = found.0 else { break };
        after = Some(bound.clone());
        bounds.push(bound);
    }
    Ok(bounds)
}

/// Keeps the last row it is given.
struct LastRow(Option<Vec<Value>>);

impl RowConsumer for LastRow {
    async fn rows(&mut self, rows: Vec<Vec<Value>>) -> Result<()> {
        self.0 = rows.into_iter().last().or(self.0.take());
        Ok(())
    }
}

fn chunk_statement(schema: &TableSchema, range: &KeyRange, limit: usize) -> Result<String> {
    if !schema.has_key() {
        let (_, select) = select_all(schema);
        return Ok(copy_all(&select));
    }
    let mut select = keyset_select(schema, range, false)?;
    if range.upto.is_none() {
        select.push_str(&format!(" LIMIT {limit}"));
    }
    Ok(format!("COPY ({select}) TO STDOUT"))
}

/// `SELECT` of the rows in `range` (of the key columns alone with `keys_only`), in key order.
fn keyset_select(schema: &TableSchema, range: &KeyRange, keys_only: bool) -> Result<String> {
    let (cols, select) = select_all(schema);
    let keys: Vec<&str> = schema.key.iter().map(|&k| cols[k].as_str()).collect();
    let key_list = keys.join(", ");
    let mut select = if keys_only {
        format!("SELECT {key_list} FROM {}", quoted_table(&schema.id))
    } else {
        select
    };
    let mut filters = Vec::new();
    if let Some(after) = &range.after {
        let lits = key_literals(schema, after)?;
        filters.push(format!("({key_list}) > ({})", lits.join(", ")));
    }
    if let Some(upto) = &range.upto {
        let lits = key_literals(schema, upto)?;
        filters.push(format!("({key_list}) <= ({})", lits.join(", ")));
    }
    if !filters.is_empty() {
        select.push_str(&format!(" WHERE {}", filters.join(" AND ")));
    }
    select.push_str(&format!(" ORDER BY {key_list}"));
    Ok(select)
}

async fn copy_rows(
    client: &Client,
    schema: &TableSchema,
    sql: &str,
    chunk_rows: usize,
    out: &mut impl RowConsumer,
) -> Result<u64> {
    let what = || format!("reading {}", schema.id);
    let stream = client
        .copy_out(sql)
        .await
        .map_err(|e| pg_error(e, &what()))?;
    futures_util::pin_mut!(stream);
    let chunk_rows = chunk_rows.max(1);
    let mut rows = 0u64;
    let mut fields = Vec::with_capacity(schema.columns.len());
    let mut chunk = Vec::with_capacity(chunk_rows);
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| pg_error(e, &what()))?;
        for line in lines(&data) {
            chunk.push(parse_row(schema, &line, &mut fields)?);
            rows += 1;
            if chunk.len() == chunk_rows {
                out.rows(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(chunk_rows),
                ))
                .await?;
            }
        }
    }
    if !chunk.is_empty() {
        out.rows(chunk).await?;
    }
    Ok(rows)
}

fn parse_row(
    schema: &TableSchema,
    line: &Bytes,
    fields: &mut Vec<Option<Bytes>>,
) -> Result<Vec<Value>> {
    split_copy_line(line, fields)
        .map_err(|e| Error::source_fatal(format!("malformed COPY row of {}: {e}", schema.id)))?;
    if fields.len() != schema.columns.len() {
        return Err(Error::source_fatal(format!(
            "COPY row of {} has {} fields, expected {}",
            schema.id,
            fields.len(),
            schema.columns.len()
        )));
    }
    let mut row = Vec::with_capacity(fields.len());
    for (f, col) in fields.drain(..).zip(&schema.columns) {
        row.push(match f {
            None => Value::Null,
            Some(b) => canonical(&col.ty, b)
                .map_err(|e| e.context(format!("{}.{}", schema.id, col.name)))?,
        });
    }
    Ok(row)
}

/// The quoted column names of `schema`, and `SELECT` of them all from the table.
fn select_all(schema: &TableSchema) -> (Vec<String>, String) {
    let cols: Vec<String> = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let select = format!(
        "SELECT {} FROM {}",
        cols.join(", "),
        quoted_table(&schema.id)
    );
    (cols, select)
}

/// The whole table, in storage order. Through a query, not `COPY table`: PostgreSQL refuses
/// `COPY` of a partitioned table itself ("cannot copy from partitioned table").
fn copy_all(select: &str) -> String {
    format!("COPY ({select}) TO STDOUT")
}

/// The literals of a key's values (canonical text, in `schema.key` order).
fn key_literals(schema: &TableSchema, key: &[Value]) -> Result<Vec<String>> {
    schema
        .key
        .iter()
        .zip(key)
        .map(|(&k, v)| literal(&schema.columns[k].ty, &schema.columns[k].source_type, v))
        .collect()
}

fn copy_statement(schema: &TableSchema, opts: &ReadOptions<'_>) -> Result<String> {
    let (cols, mut select) = select_all(schema);
    if !opts.ordered && opts.keys.is_none() {
        return Ok(copy_all(&select));
    }
    if let Some(keys) = opts.keys {
        let key_cols: Vec<&str> = schema.key.iter().map(|&k| cols[k].as_str()).collect();
        let mut tuples = Vec::with_capacity(keys.len());
        for key in keys {
            let lits = key_literals(schema, key)?;
            tuples.push(format!("({})", lits.join(", ")));
        }
        if tuples.is_empty() {
            select.push_str(" WHERE false");
        } else {
            select.push_str(&format!(
                " WHERE ({}) IN (VALUES {})",
                key_cols.join(", "),
                tuples.join(", ")
            ));
        }
    }
    if opts.ordered && schema.has_key() {
        let order: Vec<String> = schema
            .key
            .iter()
            .map(|&k| match &schema.columns[k].ty {
                // Replicated as VARCHAR: sorted as DuckDB sorts text.
                ColumnType::Text
                | ColumnType::Decimal {
                    precision: 39.., ..
                } => {
                    format!("{}::text COLLATE \"C\"", cols[k])
                }
                _ => cols[k].clone(),
            })
            .collect();
        select.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    Ok(format!("COPY ({select}) TO STDOUT"))
}

/// A SQL literal of the source column's type from canonical text.
fn literal(ty: &ColumnType, source_type: &str, v: &Value) -> Result<String> {
    let text = match v {
        Value::Text(_) => v
            .as_str()
            .ok_or_else(|| Error::source_fatal("key value is not valid UTF-8"))?,
        Value::Null => return Ok("NULL".into()),
        Value::Unchanged => return Err(Error::source_fatal("internal: unchanged key value")),
    };
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    Ok(match ty {
        ColumnType::Bytes => format!("decode({}, 'hex')", quoted(text)),
        ColumnType::List(_) => {
            return Err(Error::source_fatal(
                "rows cannot be looked up by an array key",
            ))
        }
        ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
            if text.contains(" (BC)") =>
        {
            format!(
                "CAST({} AS {source_type})",
                quoted(&format!("{} BC", text.replacen(" (BC)", "", 1)))
            )
        }
        _ => format!("CAST({} AS {source_type})", quoted(text)),
    })
}

/// PostgreSQL sends one row per CopyData message; split anyway, in case of several.
fn lines(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= data.len() {
            return None;
        }
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i);
        let line = data.slice(start..end);
        start = end + 1;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, TableId};

    fn schema() -> TableSchema {
        let col = |name: &str, ty: ColumnType, st: &str| Column {
            name: name.into(),
            ty,
            nullable: false,
            source_type: st.into(),
        };
        TableSchema {
            id: TableId::new("public", "t"),
            columns: vec![
                col("id", ColumnType::Int32, "integer"),
                col("name", ColumnType::Text, "character varying(10)"),
                col("b", ColumnType::Bytes, "bytea"),
            ],
            key: vec![1, 0],
        }
    }

    #[test]
    fn statements() {
        let s = schema();
        let plain = ReadOptions {
            ordered: false,
            keys: None,
            chunk_rows: 1,
        };
        assert_eq!(
            copy_statement(&s, &plain).unwrap(),
            r#"COPY (SELECT "id", "name", "b" FROM "public"."t") TO STDOUT"#
        );
        let keys = vec![vec![Value::text("it's"), Value::text("7")]];
        let some = ReadOptions {
            ordered: true,
            keys: Some(&keys),
            chunk_rows: 1,
        };
        assert_eq!(
            copy_statement(&s, &some).unwrap(),
            "COPY (SELECT \"id\", \"name\", \"b\" FROM \"public\".\"t\" WHERE (\"name\", \"id\") IN \
             (VALUES (CAST('it''s' AS character varying(10)), CAST('7' AS integer))) \
             ORDER BY \"name\"::text COLLATE \"C\", \"id\") TO STDOUT"
        );
        assert_eq!(
            literal(&ColumnType::Bytes, "bytea", &Value::text("00ff")).unwrap(),
            "decode('00ff', 'hex')"
        );
        assert_eq!(
            literal(&ColumnType::Date, "date", &Value::text("0044-03-15 (BC)")).unwrap(),
            "CAST('0044-03-15 BC' AS date)"
        );
    }

    #[test]
    fn chunks() {
        let s = schema();
        let after = vec![Value::text("a"), Value::text("7")];
        let range = |after: Option<&Vec<Value>>, upto: Option<&Vec<Value>>| KeyRange {
            after: after.cloned(),
            upto: upto.cloned(),
        };
        assert_eq!(
            chunk_statement(&s, &range(Some(&after), None), 100).unwrap(),
            "COPY (SELECT \"id\", \"name\", \"b\" FROM \"public\".\"t\" WHERE (\"name\", \"id\") > \
             (CAST('a' AS character varying(10)), CAST('7' AS integer)) ORDER BY \"name\", \"id\" \
             LIMIT 100) TO STDOUT"
        );
        assert_eq!(
            chunk_statement(&s, &range(None, None), 5).unwrap(),
            "COPY (SELECT \"id\", \"name\", \"b\" FROM \"public\".\"t\" ORDER BY \"name\", \"id\" \
             LIMIT 5) TO STDOUT"
        );
        // A bounded range of a parallel round: whole, without the limit.
        let upto = vec![Value::text("b"), Value::text("1")];
        assert_eq!(
            chunk_statement(&s, &range(Some(&after), Some(&upto)), 100).unwrap(),
            "COPY (SELECT \"id\", \"name\", \"b\" FROM \"public\".\"t\" WHERE (\"name\", \"id\") > \
             (CAST('a' AS character varying(10)), CAST('7' AS integer)) AND (\"name\", \"id\") <= \
             (CAST('b' AS character varying(10)), CAST('1' AS integer)) ORDER BY \"name\", \"id\") TO STDOUT"
        );
        assert_eq!(
            keyset_select(&s, &range(None, None), true).unwrap(),
            "SELECT \"name\", \"id\" FROM \"public\".\"t\" ORDER BY \"name\", \"id\""
        );
    }

    #[test]
    fn reached() {
        let p = |s: &str| Position(s.into());
        assert!(position_reached(&p("1/0"), &p("0/FFFF")));
        assert!(position_reached(&p("0/10"), &p("0/10")));
        assert!(!position_reached(&p("0/F"), &p("0/10")));
        assert!(!position_reached(&p("mariadb-gtid:0-1-2"), &p("0/10")));
    }
}
