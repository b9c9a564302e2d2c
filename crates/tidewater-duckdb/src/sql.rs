//! SQL text for DuckDB: identifiers, the change log's columns, type mapping and the casts
//! from canonical text; and `exec` and `run_cached`(`_with`), which run such text.

use duckdb::Connection;
use tidewater_core::{ColumnType, Error, Result, TableId, TableSchema};

/// DuckDB quotes as the SQL standard does (the one quoter of that dialect, in the core).
pub use tidewater_core::sql::{quote_ident, quote_literal};

/// Runs `sql` (one or more statements); a failure names `what`.
pub(crate) fn exec(conn: &Connection, sql: &str, what: &dyn std::fmt::Display) -> Result<()> {
    conn.execute_batch(sql)
        .map_err(|e| Error::sink(format!("{what}: {e}")))
}

/// A statement run once per batch and table: parsed and planned once, then cached. Returns
/// the rows it changed.
pub(crate) fn run_cached(
    conn: &Connection,
    sql: &str,
    what: &dyn std::fmt::Display,
) -> Result<usize> {
    run_cached_with(conn, sql, [], what)
}

/// `run_cached` with parameters. Each run logs its `micros` at trace level under `what`
/// (the per-statement timings of a batch).
pub(crate) fn run_cached_with(
    conn: &Connection,
    sql: &str,
    params: impl duckdb::Params,
    what: &dyn std::fmt::Display,
) -> Result<usize> {
    timed(what, || conn.prepare_cached(sql)?.execute(params))
}

/// The current value of DuckDB's setting `name`, as DuckDB prints it.
pub(crate) fn current_setting(conn: &Connection, name: &str) -> Result<String> {
    conn.query_row("SELECT current_setting(?)", [name], |r| r.get(0))
        .map_err(|e| Error::sink(format!("reading DuckDB's {name}: {e}")))
}

/// `run_cached` planned for this run alone: the plan is not kept (`crate::plans`).
pub(crate) fn run_fresh(
    conn: &Connection,
    sql: &str,
    what: &dyn std::fmt::Display,
) -> Result<usize> {
    timed(what, || conn.prepare(sql)?.execute([]))
}

/// Runs a statement, logging its `micros` at trace level under `what`.
pub(crate) fn timed<T>(
    what: &dyn std::fmt::Display,
    run: impl FnOnce() -> duckdb::Result<T>,
) -> Result<T> {
    let started = std::time::Instant::now();
    let rows = run().map_err(|e| Error::sink(format!("{what}: {e}")))?;
    tracing::trace!(micros = started.elapsed().as_micros() as u64, "{what}");
    Ok(rows)
}

pub fn qualified(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

/// The table a table copied again fills while its replica table keeps the rows it had; it
/// replaces the replica table once the copy is consistent (`sink/recopy.rs`).
pub fn copy_table(id: &TableId) -> TableId {
    TableId::new(id.schema.clone(), format!("{}{COPY_SUFFIX}", id.name))
}

/// The suffix of [`copy_table`] names.
pub const COPY_SUFFIX: &str = "__tidewater_copy";

/// The change log of table `id`, qualified and quoted.
pub fn log_table(id: &TableId) -> String {
    qualified(&log_id(id))
}

/// The change log of table `id`.
pub(crate) fn log_id(id: &TableId) -> TableId {
    TableId::new(id.schema.clone(), format!("{}_log", id.name))
}

/// The change-log columns after the source's and the old key's. `_metadata_tx` is the sink's
/// ordinal of the source transaction (as in the BigQuery layout): with `_metadata_sequence`
/// it orders the log in commit order.
pub const LOG_METADATA_COLUMNS: &[(&str, &str)] = &[
    ("_metadata_change_type", "VARCHAR"),
    ("_metadata_deleted", "BOOLEAN"),
    ("_metadata_source_timestamp", "TIMESTAMPTZ"),
    ("_metadata_timestamp", "TIMESTAMPTZ"),
    ("_metadata_position", "VARCHAR"),
    ("_metadata_sequence", "BIGINT"),
    ("_metadata_tx", "BIGINT"),
];

/// Prefix of the log columns holding the old key of a key-changing update (NULL in every
/// other row), named as in the BigQuery layout.
pub const OLD_KEY_PREFIX: &str = "_metadata_old_";

/// The log's old-key columns of a keyed table: (name, index of the key column).
pub fn old_key_columns(schema: &TableSchema) -> Vec<(String, usize)> {
    schema
        .key
        .iter()
        .map(|&k| (format!("{OLD_KEY_PREFIX}{}", schema.columns[k].name), k))
        .collect()
}

/// DuckDB type of a replica column (README.md, "What lands in DuckDB").
pub fn duckdb_type(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Int8 => "TINYINT".into(),
        ColumnType::Int16 => "SMALLINT".into(),
        ColumnType::Int32 => "INTEGER".into(),
        ColumnType::Int64 => "BIGINT".into(),
        ColumnType::UInt8 => "UTINYINT".into(),
        ColumnType::UInt16 => "USMALLINT".into(),
        ColumnType::UInt32 => "UINTEGER".into(),
        ColumnType::UInt64 => "UBIGINT".into(),
        ColumnType::Decimal { precision, scale } if *precision <= 38 => {
            format!("DECIMAL({precision},{scale})")
        }
        // Wider than DuckDB's DECIMAL: kept as exact text.
        ColumnType::Decimal { .. } => "VARCHAR".into(),
        ColumnType::Float32 => "REAL".into(),
        ColumnType::Float64 => "DOUBLE".into(),
        ColumnType::Bool => "BOOLEAN".into(),
        ColumnType::Text => "VARCHAR".into(),
        ColumnType::Bytes => "BLOB".into(),
        ColumnType::Date => "DATE".into(),
        ColumnType::Time => "TIME".into(),
        ColumnType::Interval => "INTERVAL".into(),
        ColumnType::Timestamp => "TIMESTAMP".into(),
        ColumnType::TimestampTz => "TIMESTAMPTZ".into(),
        ColumnType::Uuid => "UUID".into(),
        ColumnType::Json => "JSON".into(),
        ColumnType::List(elem) => format!("{}[]", duckdb_type(elem)),
    }
}

/// Expression converting `expr` (VARCHAR in canonical text form) to the replica type.
/// Invalid input fails the batch loudly rather than storing a wrong value.
pub fn cast_from_text(expr: &str, ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text => expr.to_string(),
        ColumnType::Decimal { precision, .. } if *precision > 38 => expr.to_string(),
        ColumnType::Bytes => format!("unhex({expr})"),
        ColumnType::List(elem) => {
            let inner = cast_from_text("x", elem);
            format!("list_transform(from_json({expr}, '[\"VARCHAR\"]'), lambda x: {inner})")
        }
        other => format!("CAST({expr} AS {})", duckdb_type(other)),
    }
}

/// Expression turning a replica value `expr` back into canonical text (the inverse of
/// [`cast_from_text`]), e.g. to look a replica key up at the source. `None` for LIST values.
pub fn text_from_typed(expr: &str, ty: &ColumnType) -> Option<String> {
    Some(match ty {
        ColumnType::Text => expr.to_string(),
        ColumnType::Decimal { precision, .. } if *precision > 38 => expr.to_string(),
        ColumnType::Bytes => format!("lower(hex({expr}))"),
        // In UTC whatever the session's time zone.
        ColumnType::TimestampTz => {
            format!("CAST(make_timestamp(epoch_us({expr})) AS VARCHAR) || '+00'")
        }
        ColumnType::List(_) => return None,
        _ => format!("CAST({expr} AS VARCHAR)"),
    })
}

/// Runs `f` inside one DuckDB transaction: committed when it succeeds, rolled back when it
/// fails (its error returned); `what` names the work in a failed BEGIN or COMMIT.
pub(crate) fn in_transaction<T>(
    conn: &Connection,
    what: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    exec(conn, "BEGIN TRANSACTION", &what)?;
    match f() {
        Ok(v) => {
            exec(conn, "COMMIT", &what)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The columns of `table` in the open file, in order (none: no such table). One question
/// lists the whole catalog in DuckDB: for many tables use `crate::catalog::Catalog`.
pub(crate) fn table_columns(conn: &Connection, table: &TableId) -> Result<Vec<String>> {
    let err = |e: duckdb::Error| Error::sink(format!("reading columns of {table}: {e}"));
    let mut stmt = conn
        .prepare(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = \
             current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([&table.schema, &table.name], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
        .map_err(err)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(log_table(&TableId::new("s", "t")), "\"s\".\"t_log\"");
    }

    #[test]
    fn casts() {
        let list = ColumnType::List(Box::new(ColumnType::Bytes));
        assert_eq!(duckdb_type(&list), "BLOB[]");
        assert_eq!(
            cast_from_text("c0", &list),
            "list_transform(from_json(c0, '[\"VARCHAR\"]'), lambda x: unhex(x))"
        );
        let wide = ColumnType::Decimal {
            precision: 60,
            scale: 2,
        };
        assert_eq!(
            (
                duckdb_type(&wide).as_str(),
                cast_from_text("c", &wide).as_str()
            ),
            ("VARCHAR", "c")
        );
        assert_eq!(
            cast_from_text("c", &ColumnType::Int32),
            "CAST(c AS INTEGER)"
        );
        assert_eq!(
            text_from_typed("k", &ColumnType::Bytes).as_deref(),
            Some("lower(hex(k))")
        );
        assert_eq!(text_from_typed("k", &list), None);
    }
}
