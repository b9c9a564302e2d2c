//! One read-only statement on a DuckDB connection, its values rendered as text: inside
//! `BEGIN TRANSACTION READ ONLY` (a write hidden in a read, `WITH ... INSERT` or `nextval`,
//! fails), fetched chunk by chunk so the row limit bounds memory.

use std::sync::Arc;
use std::time::Instant;

use duckdb::arrow::array::{make_array, Array, RecordBatch};
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::types::Value;
use duckdb::{params_from_iter, Connection};
use serde_json::Value as Json;
use tidewater_core::replica::{
    Cells, ColumnKind, Param, Params, QueryError, QueryErrorKind, ResultColumn, TextResult,
};

use super::json_cells;

/// How a cell of a column becomes text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Render {
    /// Arrow's display text.
    Display,
    /// A scalar's JSON value (`exec::to_json`), as a document.
    JsonScalar,
    /// A structure as a JSON document (`json_cells`).
    JsonNested,
    /// A DuckDB `JSON` column: its text is a document already.
    JsonText,
}

/// Runs `sql` on `conn` (read-only, at most `limit` rows). Blocking.
pub fn run_text(
    conn: &Connection,
    sql: &str,
    params: &Params,
    limit: usize,
    cells: Cells,
) -> Result<TextResult, QueryError> {
    let started = Instant::now();
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(sql_error)?;
    let result = (|| {
        let mut stmt = conn.prepare(sql).map_err(sql_error)?;
        let parameters = stmt.parameter_count();
        let values: Vec<Value> = match params {
            Params::Values(v) => v.iter().map(value).collect(),
            Params::AllNull => vec![Value::Null; parameters],
        };
        // Streaming execution: rows are fetched chunk by chunk, so the limit bounds memory.
        drop(
            stmt.stream_arrow(params_from_iter(values))
                .map_err(sql_error)?,
        );
        let schema = stmt.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|f| ResultColumn {
                name: f.name().clone(),
                type_name: f.data_type().to_string(),
                kind: kind(f.data_type()),
            })
            .collect();
        // Structures become JSON documents, and a `JSON` column's text is one already
        // (DuckDB hands it to Arrow as plain text: only its logical type says JSON).
        let render: Vec<Render> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match cells {
                Cells::Text => Render::Display,
                Cells::Json if json_cells::is_nested(f.data_type()) => Render::JsonNested,
                Cells::Json => match stmt.column_logical_type(i).get_alias() {
                    Some(a) if a == "JSON" => Render::JsonText,
                    _ => Render::JsonScalar,
                },
            })
            .collect();
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = stmt.step().map_err(sql_error)? {
            let batch = RecordBatch::from(&chunk);
            if rows.len() + batch.num_rows() > limit {
                truncated = true;
            }
            append_rows(&batch, limit - rows.len(), &render, &mut rows)?;
            if truncated {
                break;
            }
        }
        Ok(TextResult {
            columns,
            rows,
            truncated,
            parameters,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    })();
    let _ = conn.execute_batch("ROLLBACK");
    result
}

fn sql_error(e: duckdb::Error) -> QueryError {
    let message = e.to_string();
    let kind = if message.contains("INTERRUPT") || message.contains("nterrupted") {
        QueryErrorKind::Timeout
    } else if message.contains("read-only") || message.contains("disabled by configuration") {
        QueryErrorKind::Refused
    } else {
        QueryErrorKind::Sql
    };
    if kind != QueryErrorKind::Sql {
        // Refused and timed out: the endpoint's codes for those kinds.
        return QueryError::new(kind, message);
    }
    let sqlstate = sqlstate(&message);
    QueryError::new(kind, message).with_sqlstate(sqlstate)
}

/// The SQLSTATE of a DuckDB error. duckdb-rs gives a failed statement's error class only as
/// the start of its message (`Parser Error: ...`), so the class is read from there, in this
/// one place next to where the error is made; XX000 (internal_error) for any other.
fn sqlstate(message: &str) -> &'static str {
    const CLASSES: &[(&str, &str)] = &[
        ("Parser Error", "42601"),
        ("Catalog Error", "42P01"),
        ("Binder Error", "42703"),
        ("Conversion Error", "22P02"),
        ("Invalid Input Error", "22023"),
        ("Out of Range Error", "22003"),
        ("Out of Memory Error", "53200"),
    ];
    CLASSES
        .iter()
        .find(|(class, _)| message.contains(class))
        .map_or("XX000", |(_, code)| code)
}

/// A bound parameter as DuckDB's value (text is cast by DuckDB to what the statement expects).
fn value(p: &Param) -> Value {
    match p {
        Param::Null => Value::Null,
        Param::Bool(v) => Value::Boolean(*v),
        Param::Int16(v) => Value::SmallInt(*v),
        Param::Int32(v) => Value::Int(*v),
        Param::Int64(v) => Value::BigInt(*v),
        Param::Float32(v) => Value::Float(*v),
        Param::Float64(v) => Value::Double(*v),
        Param::Text(v) => Value::Text(v.clone()),
        Param::Bytes(v) => Value::Blob(v.clone()),
    }
}

/// The neutral kind of a column of Arrow type `ty`. Types without a close match are text.
pub fn kind(ty: &DataType) -> ColumnKind {
    use DataType as A;
    match ty {
        A::Boolean => ColumnKind::Bool,
        A::Int8 | A::Int16 | A::UInt8 => ColumnKind::Int16,
        A::Int32 | A::UInt16 => ColumnKind::Int32,
        A::Int64 | A::UInt32 => ColumnKind::Int64,
        A::UInt64 | A::Decimal128(..) | A::Decimal256(..) => ColumnKind::Numeric,
        A::Float16 | A::Float32 => ColumnKind::Float32,
        A::Float64 => ColumnKind::Float64,
        A::Date32 | A::Date64 => ColumnKind::Date,
        A::Timestamp(_, None) => ColumnKind::Timestamp,
        A::Timestamp(_, Some(_)) => ColumnKind::TimestampTz,
        A::Time32(_) | A::Time64(_) => ColumnKind::Time,
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => ColumnKind::Bytes,
        _ => ColumnKind::Text,
    }
}

fn append_rows(
    batch: &RecordBatch,
    max: usize,
    render: &[Render],
    rows: &mut Vec<Vec<Option<String>>>,
) -> Result<(), QueryError> {
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
        .with_time_format(Some("%H:%M:%S%.f"));
    let arrays: Vec<Arc<dyn Array>> = batch.columns().iter().map(in_utc).collect();
    let columns: Vec<(&Arc<dyn Array>, ArrayFormatter)> = arrays
        .iter()
        .map(|a| {
            ArrayFormatter::try_new(a.as_ref(), &options)
                .map(|f| (a, f))
                .map_err(|e| {
                    QueryError::new(QueryErrorKind::Sql, format!("formatting a value: {e}"))
                })
        })
        .collect::<Result<_, _>>()?;
    for i in 0..batch.num_rows().min(max) {
        let row = columns
            .iter()
            .enumerate()
            .map(|(c, (array, f))| {
                (!array.is_null(i)).then(|| match render[c] {
                    Render::Display => f.value(i).to_string(),
                    Render::JsonNested => json_cells::cell(array, i, &options).to_string(),
                    Render::JsonScalar => {
                        to_json(array.data_type(), f.value(i).to_string()).to_string()
                    }
                    Render::JsonText => {
                        let text = f.value(i).to_string();
                        match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                            Ok(_) => text,
                            Err(_) => Json::String(text).to_string(),
                        }
                    }
                })
            })
            .collect();
        rows.push(row);
    }
    Ok(())
}

/// TIMESTAMPTZ values are instants; DuckDB labels them with its session time zone (e.g.
/// `Etc/UTC`), which the formatter cannot resolve without a zone database: show them in UTC.
pub(super) fn in_utc(array: &Arc<dyn Array>) -> Arc<dyn Array> {
    match array.data_type() {
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() != "+00:00" => {
            let utc = DataType::Timestamp(*unit, Some("+00:00".into()));
            match array.to_data().into_builder().data_type(utc).build() {
                Ok(data) => make_array(data),
                Err(_) => array.clone(),
            }
        }
        _ => array.clone(),
    }
}

/// Numbers and booleans become JSON values; the rest (decimals too: exact) stays text.
pub(super) fn to_json(ty: &DataType, text: String) -> Json {
    let parsed = match ty {
        DataType::Boolean => text.parse::<bool>().ok().map(Json::Bool),
        t if t.is_integer() => serde_json::from_str::<serde_json::Number>(&text)
            .ok()
            .map(Json::Number),
        t if t.is_floating() => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number),
        _ => None,
    };
    parsed.unwrap_or(Json::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::datatypes::{IntervalUnit, TimeUnit};

    #[test]
    fn kinds_of_arrow_types() {
        assert_eq!(kind(&DataType::Int64), ColumnKind::Int64);
        assert_eq!(kind(&DataType::UInt64), ColumnKind::Numeric);
        assert_eq!(kind(&DataType::Decimal128(12, 2)), ColumnKind::Numeric);
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(kind(&tz), ColumnKind::TimestampTz);
        assert_eq!(kind(&DataType::Utf8), ColumnKind::Text);
        assert_eq!(
            kind(&DataType::Interval(IntervalUnit::MonthDayNano)),
            ColumnKind::Text
        );
    }

    #[test]
    fn failed_statements_get_the_sqlstate_of_their_class() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let state = |sql: &str| {
            let e = conn.execute_batch(sql).unwrap_err();
            let e = sql_error(e);
            (e.kind, e.sqlstate.unwrap_or_default())
        };
        let sql = |code: &str| (QueryErrorKind::Sql, code.to_string());
        assert_eq!(state("SELECT * FROM nope"), sql("42P01"));
        assert_eq!(state("SELEC 1"), sql("42601"));
        assert_eq!(state("SELECT nope FROM range(1)"), sql("42703"));
        assert_eq!(state("SELECT 'x'::INTEGER"), sql("22P02"));
    }
}
