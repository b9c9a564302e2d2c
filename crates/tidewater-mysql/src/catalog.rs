//! Which tables the `tables` globs select (schema = database), their columns, keys and how
//! each column is decoded.
//!
//! **The key** is the primary key. A table without one is keyed by a unique B-tree index
//! whose columns are all NOT NULL and indexed whole (no prefix): the fewest columns, then
//! the index name. Such an index makes the rows a set with that key, exactly like a primary
//! key (InnoDB even uses the first one as its clustered key), and the binlog's full row
//! images (`binlog_row_image = FULL`, checked at start) carry every column of the before
//! image, so updates and deletes find their row by it. The table is then copied in chunks
//! and applied by key like any keyed table (`tidewater_core::copy`).

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidewater_core::glob::selected;
use tidewater_core::{Column, Error, Result, TableId, TableSchema};

use crate::conn::my_error;
use crate::types::{map_column, ColumnInfo, Kind};

/// A selected source table.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub schema: Arc<TableSchema>,
    /// How each column decodes, parallel to `schema.columns`.
    pub kinds: Arc<[Kind]>,
}

const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys'";

/// Resolves the globs; an empty match, a column of an unsupported type are errors with a fix.
pub async fn resolve_tables(conn: &mut Conn, patterns: &[String]) -> Result<Vec<SourceTable>> {
    let all: Vec<(String, String)> = conn
        .query(format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
             ORDER BY TABLE_SCHEMA, TABLE_NAME"
        ))
        .await
        .map_err(|e| my_error(e, "listing tables"))?;
    let mut tables = Vec::new();
    for (schema, name) in all {
        let id = TableId::new(schema, name);
        if selected(patterns, &id) {
            tables.push(describe(conn, id).await?);
        }
    }
    if tables.is_empty() {
        return Err(Error::source_fatal(format!(
            "no source table matches source.tables = {patterns:?}; patterns are database.table globs \
             (e.g. \"shop.*\"), and the user needs SELECT on the tables to see them"
        )));
    }
    Ok(tables)
}

/// Refuses to stream on when `source.tables` no longer selects a table the replica holds
/// (`left_out`) that still exists at the source: the binlog's changes of it would be skipped
/// from here on, and if it were selected again later its replica would resume with them
/// missing, differing from the source for good. (A held table that the globs still match is
/// not narrowed out: dropped, or not readable, which the stream and `unreplicated` handle.)
pub async fn refuse_left_out(
    conn: &mut Conn,
    patterns: &[String],
    left_out: &[TableId],
) -> Result<()> {
    let mut narrowed = Vec::new();
    for id in left_out.iter().filter(|id| !selected(patterns, id)) {
        let exists: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&id.schema, &id.name),
            )
            .await
            .map_err(|e| my_error(e, "listing tables"))?;
        if exists.is_some() {
            narrowed.push(id.to_string());
        }
    }
    if narrowed.is_empty() {
        return Ok(());
    }
    Err(Error::config(format!(
        "source.tables = {patterns:?} no longer selects {}, which the replica holds: its \
         changes would be missed from here on, and the replica would keep differing from the \
         source if it were selected again",
        narrowed.join(", ")
    ))
    .with_fix(format!(
        "put {} back into source.tables; or, to stop replicating it, `tidewater forget --tables \
         {}` first; or start from an empty replica (a new sink.path or sink.dataset) to take a \
         new snapshot of the tables you select",
        narrowed.join(", "),
        narrowed.join(" --tables ")
    )))
}

type ColumnRow = (
    String,
    String,
    String,
    Option<u64>,
    Option<u64>,
    Option<String>,
    Option<u64>,
    String,
);

pub async fn describe(conn: &mut Conn, id: TableId) -> Result<SourceTable> {
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, LOWER(DATA_TYPE), COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, \
             CHARACTER_SET_NAME, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (&id.schema, &id.name),
        )
        .await
        .map_err(|e| my_error(e, &format!("reading the columns of {id}")))?;
    let key_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (&id.schema, &id.name),
        )
        .await
        .map_err(|e| my_error(e, &format!("reading the primary key of {id}")))?;
    // MariaDB's JSON is LONGTEXT with a json_valid check: it is JSON all the same.
    let json_checks: Vec<String> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? AND CHECK_CLAUSE LIKE 'json_valid(%)'",
            (&id.schema, &id.name),
        )
        .await
        .unwrap_or_default();
    let mut columns = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    for (name, data_type, column_type, precision, scale, charset, char_length, nullable) in rows {
        let is_json = json_checks
            .iter()
            .any(|c| c.replace('`', "") == format!("json_valid({name})"));
        let info = ColumnInfo {
            name: name.clone(),
            data_type: if is_json && data_type == "longtext" {
                "json".into()
            } else {
                data_type
            },
            column_type: column_type.clone(),
            precision,
            scale,
            charset,
            char_length,
        };
        let (kind, ty) = map_column(&info).map_err(|t| {
            Error::source_fatal(format!(
                "{id}.{name} has type {t}, which tidewater cannot replicate exactly"
            ))
            .with_fix(format!(
                "exclude the table with \"!{id}\" in source.tables, or change the column type"
            ))
        })?;
        kinds.push(kind);
        columns.push(Column {
            name,
            ty,
            nullable: nullable == "YES",
            source_type: column_type,
        });
    }
    let key_names = if key_names.is_empty() {
        unique_key(conn, &id, &columns).await?
    } else {
        key_names
    };
    let key = key_names
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    Ok(SourceTable {
        schema: Arc::new(TableSchema { id, columns, key }),
        kinds: kinds.into(),
    })
}

/// The columns of the unique index a table without a primary key is keyed by (see the
/// module doc), or none.
async fn unique_key(conn: &mut Conn, id: &TableId, columns: &[Column]) -> Result<Vec<String>> {
    // COLUMN_NAME is NULL for a functional key part (MySQL 8): not a usable key.
    let parts: Vec<(String, Option<String>, Option<u64>, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART, INDEX_TYPE FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (&id.schema, &id.name),
        )
        .await
        .map_err(|e| my_error(e, &format!("reading the unique indexes of {id}")))?;
    let mut indexes: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, column, sub_part, index_type) in parts {
        let whole_not_null = sub_part.is_none()
            && index_type == "BTREE"
            && columns
                .iter()
                .any(|c| Some(&c.name) == column.as_ref() && !c.nullable);
        let column = column.unwrap_or_default();
        match indexes.last_mut() {
            Some((name, cols, usable)) if *name == index => {
                cols.push(column);
                *usable &= whole_not_null;
            }
            _ => indexes.push((index, vec![column], whole_not_null)),
        }
    }
    Ok(indexes
        .into_iter()
        .filter(|(_, _, usable)| *usable)
        .min_by(|a, b| (a.1.len(), &a.0).cmp(&(b.1.len(), &b.0)))
        .map(|(_, cols, _)| cols)
        .unwrap_or_default())
}
