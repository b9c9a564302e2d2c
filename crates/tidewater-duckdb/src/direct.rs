//! The fast path for inserts and snapshot rows: inserted straight into the replica and its
//! log from Arrow columns (`feed`), DuckDB casting the canonical text to each column's type.
//! Staged changes of such tables get their log rows the same way (`append_log`).
//!
//! Nothing is staged, so a bulk load or a snapshot costs one pass, and DuckDB can write full
//! row groups of the open transaction to the file instead of keeping them in memory. Only used
//! while nothing of the table is staged (order is kept) and for tables without LIST columns
//! (their canonical text is JSON, which DuckDB's own text-to-list cast does not read).

use crate::columns::Columns;
use crate::feed::Feed;
use crate::sql::{log_table, old_key_columns, qualified, quote_ident, LOG_METADATA_COLUMNS};
use duckdb::Connection;
use tidewater_core::{Change, ChangeKind, ColumnType, Error, Result, TableId, TableSchema, Value};

/// Whether rows of this table can take the direct path.
pub fn supported(schema: &TableSchema) -> bool {
    !schema
        .columns
        .iter()
        // Text does not cast to LIST or INTERVAL as canonical text reads: such tables go
        // through staging.
        .any(|c| matches!(c.ty, ColumnType::List(_) | ColumnType::Interval))
}

/// Whether this change can take the direct path: an insert whose values the insert's casts
/// read exactly.
pub fn can_append(change: &Change) -> bool {
    matches!(change.kind, ChangeKind::Snapshot | ChangeKind::Insert) && casts_exactly(change)
}

/// Whether this change has every value as text (an unchanged TOAST value has none). The
/// insert casts a record batch with DuckDB's vectorised casts, the same as SQL `CAST`.
fn casts_exactly(change: &Change) -> bool {
    !change.row.iter().any(|v| matches!(v, Value::Unchanged))
}

static NULL: Value = Value::Null;

/// Facts of the transaction a change belongs to, for its log row.
pub struct RowMeta<'a> {
    pub change: &'a Change,
    pub position: &'a str,
    pub commit_ts: &'a str,
    pub txseq: i64,
    /// The sink's ordinal of the transaction (`_metadata_tx`).
    pub tx: i64,
}

/// The text of a value for the insert, which casts it to the column's type.
fn text_cell<'a>(v: &'a Value, schema: &TableSchema, column: usize) -> Result<Option<&'a str>> {
    match v {
        Value::Null => Ok(None),
        Value::Text(_) => v.as_str().map(Some).ok_or_else(|| {
            Error::source_fatal(format!(
                "a value of {}.{} is not valid UTF-8",
                schema.id, schema.columns[column].name
            ))
        }),
        Value::Unchanged => Err(Error::sink("internal: unchanged value in an appended row")),
    }
}

fn bytes_cell(v: &Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Null => Ok(None),
        Value::Text(b) => hex(b).map(Some),
        Value::Unchanged => Err(Error::sink("internal: unchanged value in an appended row")),
    }
}

fn hex(text: &[u8]) -> Result<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(Error::source_fatal("bytea value is not valid hex")),
    };
    if !text.len().is_multiple_of(2) {
        return Err(Error::source_fatal(
            "bytea value has an odd number of hex digits",
        ));
    }
    text.chunks(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The rows' values as Arrow columns in the table's column order.
fn value_columns(schema: &TableSchema, rows: &[RowMeta]) -> Result<Columns> {
    let mut columns = Columns::with_rows(rows.len());
    for i in 0..schema.columns.len() {
        push_column(
            &mut columns,
            schema,
            i,
            rows.iter().map(|r| &r.change.row[i]),
        )?;
    }
    Ok(columns)
}

/// Appends one column of values of the table's column `i`, in the Arrow form DuckDB casts
/// cheapest to the column's type.
fn push_column<'a>(
    columns: &mut Columns,
    schema: &TableSchema,
    i: usize,
    values: impl Iterator<Item = &'a Value>,
) -> Result<()> {
    let col = &schema.columns[i];
    if matches!(col.ty, ColumnType::Bytes) {
        columns.binary(values.map(bytes_cell))?;
    } else if matches!(
        col.ty,
        ColumnType::Int8
            | ColumnType::Int16
            | ColumnType::Int32
            | ColumnType::Int64
            | ColumnType::UInt8
            | ColumnType::UInt16
            | ColumnType::UInt32
    ) {
        columns.int_text(values.map(|v| text_cell(v, schema, i)))?;
    } else if let ColumnType::Decimal { precision, scale } = col.ty {
        let cells = values
            .map(|v| text_cell(v, schema, i))
            .collect::<Result<_>>()?;
        typed_or_text(columns, cells, |c, v| {
            precision <= 38 && c.decimal_text(v, precision, scale)
        })?;
    } else if let ColumnType::Timestamp | ColumnType::TimestampTz = col.ty {
        let cells = values
            .map(|v| text_cell(v, schema, i))
            .collect::<Result<_>>()?;
        let utc = col.ty == ColumnType::TimestampTz;
        typed_or_text(columns, cells, |c, v| c.timestamp_text(v, utc))?;
    } else {
        columns.text(values.map(|v| text_cell(v, schema, i)))?;
    }
    Ok(())
}

/// Pushes `cells` in the typed form `typed` builds, or as text where it declines (a value in
/// another form: DuckDB then casts or rejects the text).
fn typed_or_text(
    columns: &mut Columns,
    cells: Vec<Option<&str>>,
    typed: impl FnOnce(&mut Columns, &[Option<&str>]) -> bool,
) -> Result<()> {
    if !typed(columns, &cells) {
        columns.text(cells.into_iter().map(Ok))?;
    }
    Ok(())
}

/// A TIMESTAMPTZ column of tidewater's own UTC text (`format_utc_micros`): as Arrow
/// microseconds, or as the text should one not parse.
fn utc_column<'a>(columns: &mut Columns, values: impl Iterator<Item = &'a str>) -> Result<()> {
    let cells = values.map(Some).collect();
    typed_or_text(columns, cells, |c, v| c.timestamp_text(v, true))
}

fn column_names(schema: &TableSchema) -> Vec<&str> {
    schema.columns.iter().map(|c| c.name.as_str()).collect()
}

fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    quoted.join(", ")
}

/// Appends insert and snapshot rows to the replica (`replica`: its table or copy table) and,
/// when kept, to the change log: each value is converted once, and the log shares the
/// replica's columns.
pub fn append(
    conn: &Connection,
    feed: &mut Feed,
    schema: &TableSchema,
    replica: &TableId,
    rows: &[RowMeta],
    log: bool,
    now_ts: &str,
) -> Result<()> {
    let what = format!("appending to {}", schema.id);
    let columns = value_columns(schema, rows)?;
    // Columns by name: after a schema change the physical order may differ from the source's.
    let names = quoted_list(&column_names(schema));
    columns.insert_into(feed, conn, &qualified(replica), Some(&names), &what)?;
    if log {
        append_log_columns(conn, feed, schema, columns, rows, now_ts)?;
    }
    Ok(())
}

/// Appends the log rows of any changes (the new image; for a delete the old key or image).
pub fn append_log(
    conn: &Connection,
    feed: &mut Feed,
    schema: &TableSchema,
    rows: &[RowMeta],
    now_ts: &str,
) -> Result<()> {
    let columns = value_columns(schema, rows)?;
    append_log_columns(conn, feed, schema, columns, rows, now_ts)
}

fn append_log_columns(
    conn: &Connection,
    feed: &mut Feed,
    schema: &TableSchema,
    mut columns: Columns,
    rows: &[RowMeta],
    now_ts: &str,
) -> Result<()> {
    let what = format!("appending to the change log of {}", schema.id);
    // The old key of a key-changing update (`old` holds the old key values in key order);
    // NULL in every other row.
    let old_keys = old_key_columns(schema);
    for (n, (_, k)) in old_keys.iter().enumerate() {
        let old = rows.iter().map(|r| match &r.change.old {
            Some(old) => old.get(n).unwrap_or(&NULL),
            None => &NULL,
        });
        push_column(&mut columns, schema, *k, old)?;
    }
    columns.text(rows.iter().map(|r| Ok(Some(r.change.kind.as_str()))))?;
    columns.bools(rows.iter().map(|r| r.change.kind == ChangeKind::Delete));
    utc_column(&mut columns, rows.iter().map(|r| r.commit_ts))?;
    utc_column(&mut columns, rows.iter().map(|_| now_ts))?;
    columns.text(rows.iter().map(|r| Ok(Some(r.position))))?;
    columns.ints(rows.iter().map(|r| r.txseq));
    columns.ints(rows.iter().map(|r| r.tx));
    let mut names = column_names(schema);
    names.extend(old_keys.iter().map(|(n, _)| n.as_str()));
    names.extend(LOG_METADATA_COLUMNS.iter().map(|(n, _)| *n));
    let names = quoted_list(&names);
    columns.insert_into(feed, conn, &log_table(&schema.id), Some(&names), &what)
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_decoding() {
        assert_eq!(hex(b"00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(hex(b"").unwrap(), Vec::<u8>::new());
        assert!(hex(b"0").is_err() && hex(b"zz").is_err());
    }
}
