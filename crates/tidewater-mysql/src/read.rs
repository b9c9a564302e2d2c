//! Reading a table's rows as canonical text inside an open consistent-snapshot transaction
//! (see `snapshot::begin_snapshot`): keyset chunks in primary-key order, used by the initial
//! snapshot and by `verify` (which can also read only the rows of given keys).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};
use tidewater_core::copy::KeyRange;
use tidewater_core::{ColumnType, Error, Result, RowConsumer, TableSchema, Value};

use crate::catalog::SourceTable;
use crate::conn::my_error;
use crate::types::Kind;
use crate::value::{convert, Origin, ZeroDates};

/// Rows per primary-key chunk (one round trip each).
const CHUNK_ROWS: usize = 8192;

pub struct ReadOptions<'a> {
    /// Only the rows with these keys (canonical text, in `schema.key` order).
    pub keys: Option<&'a [Vec<Value>]>,
    /// Rows per chunk handed to the consumer.
    pub chunk_rows: usize,
    pub zero_dates: ZeroDates,
}

pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Streams the rows of `t` selected by `opts` to `out`, in primary-key order (keyless tables:
/// in one streamed query); returns how many.
pub async fn read_table(
    conn: &mut Conn,
    t: &SourceTable,
    opts: &ReadOptions<'_>,
    out: &mut impl RowConsumer,
) -> Result<u64> {
    let schema = &t.schema;
    let Select {
        select,
        keys,
        order,
    } = Select::of(schema);
    if let Some(wanted) = opts.keys {
        if wanted.is_empty() {
            return Ok(0);
        }
        let (filter, params) = key_filter(t, &keys, wanted)?;
        let sql = format!("{select} WHERE {filter} ORDER BY {order}");
        return Query::new(&sql, params).run(conn, t, opts, out).await;
    }
    if schema.key.is_empty() {
        // No order to page by: one streamed query.
        return Query::new(&select, Vec::new())
            .run(conn, t, opts, out)
            .await;
    }
    let first = format!("{select} ORDER BY {order} LIMIT {CHUNK_ROWS}");
    // Keyset pagination: (k1 > ?) OR (k1 = ? AND k2 > ?) OR ..., which every optimizer turns
    // into index ranges (row-constructor comparisons are not always).
    let marks = vec!["?".to_string(); keys.len()];
    let next = format!(
        "{select} WHERE {} ORDER BY {order} LIMIT {CHUNK_ROWS}",
        after_key(&keys, &marks)
    );
    let mut total = 0u64;
    let mut last_key: Option<Vec<My>> = None;
    loop {
        let params: Vec<My> = match &last_key {
            Some(k) => (0..k.len()).flat_map(|i| k[..=i].iter().cloned()).collect(),
            None => Vec::new(),
        };
        let sql = if last_key.is_some() { &next } else { &first };
        let mut q = Query::new(sql, params);
        let n = q.run(conn, t, opts, out).await?;
        total += n;
        last_key = q.last_key;
        if n < CHUNK_ROWS as u64 {
            return Ok(total);
        }
    }
}

/// One chunk of the chunked initial snapshot (`tidewater_core::copy`): the rows of `range` in
/// primary-key order, compared and ordered by the server in the key's own collation, at most
/// `limit` of them unless the range has a bound (a parallel round's range is read whole);
/// keyless tables: the whole table. Returns how many rows.
pub async fn read_chunk(
    conn: &mut Conn,
    t: &SourceTable,
    range: &KeyRange,
    limit: usize,
    zero_dates: ZeroDates,
    out: &mut impl RowConsumer,
) -> Result<u64> {
    let opts = ReadOptions {
        keys: None,
        chunk_rows: 1024,
        zero_dates,
    };
    if t.schema.key.is_empty() {
        let select = Select::of(&t.schema).select;
        return Query::new(&select, Vec::new())
            .run(conn, t, &opts, out)
            .await;
    }
    let (mut sql, params) = keyset_select(t, range, false)?;
    if range.upto.is_none() {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    Query::new(&sql, params).run(conn, t, &opts, out).await
}

/// The keys that end the next `count` chunks of `limit` rows after `after` (fewer where the
/// table ends first), for a parallel round (`tidewater_core::copy`, "Parallel reads"): each
/// the `limit`-th key after the previous one, found by the server in key order.
pub async fn chunk_bounds(
    conn: &mut Conn,
    t: &SourceTable,
    after: Option<Vec<Value>>,
    limit: usize,
    count: usize,
    zero_dates: ZeroDates,
) -> Result<Vec<Vec<Value>>> {
    let schema = &t.schema;
    let ctx = |e| my_error(e, &format!("finding chunk bounds of {}", schema.id));
    let mut bounds: Vec<Vec<Value>> = Vec::with_capacity(count);
    let mut after = after;
    while bounds.len() < count {
        let range = KeyRange { after, upto: None };
        let (sql, params) = keyset_select(t, &range, true)?;
        let sql = format!("{sql} LIMIT 1 OFFSET {}", limit.max(1) - 1);
        let row: Option<mysql_async::Row> = conn.exec_first(sql, params).await.map_err(ctx)?;
        let Some(row) = row else { break };
        let bound = schema
            .key
            .iter()
            .zip(row.unwrap())
            .map(|(&k, v)| {
                convert(&t.kinds[k], v, Origin::Snapshot, zero_dates).map_err(|e| {
                    Error::source_fatal(format!("{}.{}: {e}", schema.id, schema.columns[k].name))
                })
            })
            .collect::<Result<Vec<Value>>>()?;
        after = Some(bound.clone());
        bounds.push(bound);
    }
    Ok(bounds)
}

/// `SELECT` of the rows in `range` (of the key columns alone with `keys_only`) in key order,
/// and its parameters.
fn keyset_select(t: &SourceTable, range: &KeyRange, keys_only: bool) -> Result<(String, Vec<My>)> {
    let schema = &t.schema;
    let Select {
        select,
        keys,
        order,
    } = Select::of(schema);
    let select = if keys_only {
        format!(
            "SELECT {order} FROM {}.{}",
            quote_ident(&schema.id.schema),
            quote_ident(&schema.id.name)
        )
    } else {
        select
    };
    let mut params = Vec::new();
    let mut filters = Vec::new();
    let bounds = [(&range.after, ">", false), (&range.upto, "<", true)];
    for (key, op, inclusive) in bounds {
        let Some(key) = key else { continue };
        let marks = schema
            .key
            .iter()
            .zip(key)
            .map(|(&k, v)| key_param(&t.kinds[k], &schema.columns[k].ty, v))
            .collect::<Result<Vec<_>>>()?;
        let (marks, values): (Vec<String>, Vec<My>) = marks.into_iter().unzip();
        // The parameters in the order `key_bound` uses them.
        params.extend((0..values.len()).flat_map(|i| values[..=i].iter().cloned()));
        if inclusive {
            params.extend(values.iter().cloned());
        }
        filters.push(format!("({})", key_bound(&keys, &marks, op, inclusive)));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    Ok((format!("{select}{filter} ORDER BY {order}"), params))
}

/// `SELECT` of every column of a table, its quoted key columns, and the key order.
struct Select {
    select: String,
    keys: Vec<String>,
    order: String,
}

impl Select {
    fn of(schema: &TableSchema) -> Select {
        let cols: Vec<String> = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let id = &schema.id;
        let select = format!(
            "SELECT {} FROM {}.{}",
            cols.join(", "),
            quote_ident(&id.schema),
            quote_ident(&id.name)
        );
        let keys: Vec<String> = schema.key.iter().map(|&k| cols[k].clone()).collect();
        let order = keys.join(", ");
        Select {
            select,
            keys,
            order,
        }
    }
}

/// One statement whose rows go to the consumer in chunks.
struct Query<'a> {
    sql: &'a str,
    params: Vec<My>,
    /// The key of the last row read (where the next keyset chunk starts).
    last_key: Option<Vec<My>>,
}

impl<'a> Query<'a> {
    fn new(sql: &'a str, params: Vec<My>) -> Self {
        Query {
            sql,
            params,
            last_key: None,
        }
    }

    async fn run(
        &mut self,
        conn: &mut Conn,
        t: &SourceTable,
        opts: &ReadOptions<'_>,
        out: &mut impl RowConsumer,
    ) -> Result<u64> {
        let schema = &t.schema;
        let ctx = |e| my_error(e, &format!("reading {}", schema.id));
        let chunk_rows = opts.chunk_rows.max(1);
        let mut chunk = Vec::with_capacity(chunk_rows.min(CHUNK_ROWS));
        let mut n = 0u64;
        let params = std::mem::take(&mut self.params);
        let mut result = conn.exec_iter(self.sql, params).await.map_err(ctx)?;
        while let Some(row) = result.next().await.map_err(ctx)? {
            n += 1;
            let mut values = row.unwrap();
            if !schema.key.is_empty() {
                self.last_key = Some(schema.key.iter().map(|&k| values[k].clone()).collect());
            }
            chunk.push(canonical_row(t, &mut values, opts.zero_dates)?);
            if chunk.len() == chunk_rows {
                out.rows(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(chunk_rows),
                ))
                .await?;
            }
        }
        drop(result);
        if !chunk.is_empty() {
            out.rows(chunk).await?;
        }
        Ok(n)
    }
}

fn canonical_row(t: &SourceTable, values: &mut Vec<My>, zero: ZeroDates) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.drain(..).enumerate() {
        out.push(
            convert(&t.kinds[i], v, Origin::Snapshot, zero).map_err(|e| {
                Error::source_fatal(format!("{}.{}: {e}", t.schema.id, t.schema.columns[i].name))
            })?,
        );
    }
    Ok(out)
}

/// The rows after a key in key order, `(k1 > m1) OR (k1 = m1 AND k2 > m2) OR ...` with the
/// placeholder `marks` (parameters: the first key value, the first two, ...), which every
/// optimizer turns into index ranges (row-constructor comparisons are not always).
fn after_key(keys: &[String], marks: &[String]) -> String {
    key_bound(keys, marks, ">", false)
}

/// The rows on one side of a key in key order: `op` `>` (after it) or `<` (before it), as
/// [`after_key`] spells it; with `inclusive`, the key itself too (`OR (k1 = m1 AND k2 = m2)`,
/// its parameters: every key value, once more).
fn key_bound(keys: &[String], marks: &[String], op: &str, inclusive: bool) -> String {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", keys[j], marks[j]))
            .collect();
        ands.push(format!("{} {op} {}", keys[i], marks[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    if inclusive {
        let equal: Vec<String> = (0..keys.len())
            .map(|j| format!("{} = {}", keys[j], marks[j]))
            .collect();
        ors.push(format!("({})", equal.join(" AND ")));
    }
    ors.join(" OR ")
}

/// `(k1, k2) IN ((?, ?), ...)` with each key's canonical text as a parameter the column
/// compares exactly with.
fn key_filter(
    t: &SourceTable,
    key_cols: &[String],
    wanted: &[Vec<Value>],
) -> Result<(String, Vec<My>)> {
    let schema: &TableSchema = &t.schema;
    let mut params = Vec::with_capacity(wanted.len() * key_cols.len());
    let mut tuples = Vec::with_capacity(wanted.len());
    for key in wanted {
        let mut marks = Vec::with_capacity(key.len());
        for (&k, v) in schema.key.iter().zip(key) {
            let (mark, param) = key_param(&t.kinds[k], &schema.columns[k].ty, v)?;
            marks.push(mark);
            params.push(param);
        }
        tuples.push(format!("({})", marks.join(", ")));
    }
    let cols: Vec<&str> = key_cols.iter().map(|c| c.as_str()).collect();
    Ok((
        format!("({}) IN ({})", cols.join(", "), tuples.join(", ")),
        params,
    ))
}

fn key_param(kind: &Kind, ty: &ColumnType, v: &Value) -> Result<(String, My)> {
    let text = match v {
        Value::Null => return Ok(("?".into(), My::NULL)),
        Value::Unchanged => return Err(Error::source_fatal("internal: unchanged key value")),
        Value::Text(_) => v
            .as_str()
            .ok_or_else(|| Error::source_fatal("key value is not valid UTF-8"))?,
    };
    let bad = |e: String| Error::source_fatal(format!("key value {text:?}: {e}"));
    Ok(match (kind, ty) {
        (Kind::Signed | Kind::Year, _) => (
            "?".into(),
            My::Int(text.parse().map_err(|e| bad(format!("{e}")))?),
        ),
        (Kind::Unsigned | Kind::Bit, _) => (
            "?".into(),
            My::UInt(text.parse().map_err(|e| bad(format!("{e}")))?),
        ),
        (Kind::Float, _) => {
            let f: f32 = text.parse().map_err(|e| bad(format!("{e}")))?;
            ("?".into(), My::Double(f64::from(f)))
        }
        (Kind::Double, _) => (
            "?".into(),
            My::Double(text.parse().map_err(|e| bad(format!("{e}")))?),
        ),
        (Kind::Decimal, ColumnType::Decimal { precision, scale }) => (
            format!("CAST(? AS DECIMAL({precision},{scale}))"),
            My::Bytes(text.as_bytes().to_vec()),
        ),
        (Kind::Binary { .. } | Kind::Geometry, _) => {
            ("UNHEX(?)".into(), My::Bytes(text.as_bytes().to_vec()))
        }
        // Sessions run in UTC: the column compares with the wall-clock text.
        (Kind::Timestamp, _) => {
            let local = text
                .strip_suffix("+00:00")
                .or_else(|| text.strip_suffix("+00"))
                .unwrap_or(text);
            ("?".into(), My::Bytes(local.as_bytes().to_vec()))
        }
        _ => ("?".into(), My::Bytes(text.as_bytes().to_vec())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bounds() {
        let keys = ["`a`".to_string(), "`b`".to_string()];
        let marks = ["?".to_string(), "?".to_string()];
        assert_eq!(
            after_key(&keys, &marks),
            "(`a` > ?) OR (`a` = ? AND `b` > ?)"
        );
        assert_eq!(
            key_bound(&keys, &marks, "<", true),
            "(`a` < ?) OR (`a` = ? AND `b` < ?) OR (`a` = ? AND `b` = ?)"
        );
    }

    #[test]
    fn key_params() {
        let (m, p) = key_param(
            &Kind::Unsigned,
            &ColumnType::UInt64,
            &Value::text("18446744073709551615"),
        )
        .unwrap();
        assert_eq!((m.as_str(), p), ("?", My::UInt(u64::MAX)));
        let (m, _) = key_param(
            &Kind::Binary { pad_to: None },
            &ColumnType::Bytes,
            &Value::text("00ff"),
        )
        .unwrap();
        assert_eq!(m, "UNHEX(?)");
        let dec = ColumnType::Decimal {
            precision: 12,
            scale: 2,
        };
        let (m, _) = key_param(&Kind::Decimal, &dec, &Value::text("1.50")).unwrap();
        assert_eq!(m, "CAST(? AS DECIMAL(12,2))");
        let (_, p) = key_param(
            &Kind::Timestamp,
            &ColumnType::TimestampTz,
            &Value::text("2024-01-02 03:04:05+00"),
        )
        .unwrap();
        assert_eq!(p, My::Bytes(b"2024-01-02 03:04:05".to_vec()));
        assert!(key_param(&Kind::Signed, &ColumnType::Int32, &Value::text("x")).is_err());
    }
}
