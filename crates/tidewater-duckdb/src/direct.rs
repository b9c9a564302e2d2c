//! The fast path for inserts and snapshot rows: appended straight into the replica and its
//! log with DuckDB's Appender, which casts the canonical text to each column's type.
//!
//! Nothing is staged, so a bulk load or a snapshot costs one pass, and DuckDB can write full
//! row groups of the open transaction to the file instead of keeping them in memory. Only used
//! while nothing of the table is staged (order is kept) and for tables without LIST columns
//! (their canonical text is JSON, which DuckDB's own text-to-list cast does not read).

use duckdb::types::{ToSqlOutput, ValueRef};
use duckdb::{Connection, ToSql};
use crate::table::LOG_METADATA_COLUMNS;
use tidewater_core::{Change, ChangeKind, ColumnType, Error, Result, TableSchema, Value};

/// One appended cell: text DuckDB casts to the column type, bytes for BLOB columns.
enum Cell<'a> {
    Null,
    Text(&'a str),
    Bytes(Vec<u8>),
    Bool(bool),
    Int(i64),
}

impl ToSql for Cell<'_> {
    fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Cell::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Cell::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Cell::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Cell::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Boolean(*b)),
            Cell::Int(i) => ToSqlOutput::Borrowed(ValueRef::BigInt(*i)),
        })
    }
}

/// Whether rows of this table can take the direct path.
pub fn supported(schema: &TableSchema) -> bool {
    !schema
        .columns
        .iter()
        // The Appender cannot cast text to LIST or INTERVAL: such tables go through staging.
        .any(|c| matches!(c.ty, ColumnType::List(_) | ColumnType::Interval))
}

/// Whether this change can take the direct path: an insert whose values the Appender's casts
/// read exactly. (The Appender's text-to-TIMESTAMPTZ cast ignores a UTC offset, so only UTC
/// values, which is what the sources emit, go this way.)
pub fn can_append(change: &Change) -> bool {
    matches!(change.kind, ChangeKind::Snapshot | ChangeKind::Insert)
        && change
            .row
            .iter()
            .zip(&change.table.columns)
            .all(|(v, c)| match (&c.ty, v) {
                (ColumnType::TimestampTz, Value::Text(t)) => {
                    t.ends_with(b"+00") || t.ends_with(b"+00:00") || t.ends_with(b"infinity")
                }
                _ => true,
            })
}

/// Facts of the transaction a change belongs to, for its log row.
pub struct RowMeta<'a> {
    pub change: &'a Change,
    pub position: &'a str,
    pub commit_ts: &'a str,
    pub txseq: i64,
}

fn cells<'a>(schema: &TableSchema, row: &'a [Value]) -> Result<Vec<Cell<'a>>> {
    row.iter()
        .zip(&schema.columns)
        .map(|(v, col)| match (v, &col.ty) {
            (Value::Null, _) => Ok(Cell::Null),
            (Value::Text(b), ColumnType::Bytes) => hex(b).map(Cell::Bytes),
            (Value::Text(_), _) => v.as_str().map(Cell::Text).ok_or_else(|| {
                Error::source_fatal(format!(
                    "a value of {}.{} is not valid UTF-8",
                    schema.id, col.name
                ))
            }),
            (Value::Unchanged, _) => Err(Error::sink("internal: unchanged value in an insert")),
        })
        .collect()
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

/// Appends insert and snapshot rows to the replica and, when kept, to the change log.
pub fn append(
    conn: &Connection,
    schema: &TableSchema,
    rows: &[RowMeta],
    log: bool,
    now_ts: &str,
) -> Result<()> {
    let id = &schema.id;
    let err = |e: duckdb::Error| Error::sink(format!("appending to {id}: {e}"));
    // Columns by name: after a schema change the physical order may differ from the source's.
    let mut names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let mut replica = conn
        .appender_with_columns_to_db(&id.name, &id.schema, &names)
        .map_err(err)?;
    let mut log_appender = if log {
        names.extend(LOG_METADATA_COLUMNS.iter().map(|(n, _)| *n));
        Some(
            conn.appender_with_columns_to_db(&format!("{}_log", id.name), &id.schema, &names)
                .map_err(err)?,
        )
    } else {
        None
    };
    for r in rows {
        let mut row = cells(schema, &r.change.row)?;
        let params: Vec<&dyn ToSql> = row.iter().map(|c| c as &dyn ToSql).collect();
        replica.append_row(params.as_slice()).map_err(err)?;
        if let Some(l) = log_appender.as_mut() {
            row.extend([
                Cell::Text(r.change.kind.as_str()),
                Cell::Bool(false),
                Cell::Text(r.commit_ts),
                Cell::Text(now_ts),
                Cell::Text(r.position),
                Cell::Int(r.txseq),
            ]);
            let params: Vec<&dyn ToSql> = row.iter().map(|c| c as &dyn ToSql).collect();
            l.append_row(params.as_slice()).map_err(err)?;
        }
    }
    replica.flush().map_err(err)?;
    if let Some(mut l) = log_appender {
        l.flush().map_err(err)?;
    }
    Ok(())
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
