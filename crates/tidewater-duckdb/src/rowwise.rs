//! Row-at-a-time statements for the changes set-based staging cannot express: updates with
//! unchanged (TOAST) values, which keep what the replica holds, and updates/deletes of
//! keyless tables, which remove one row equal in every column. Rare by construction. Like the
//! set-based updates, an update here writes a long string only where it differs
//! (`crate::in_place`: DuckDB keeps one written back unchanged in memory for good).

use duckdb::{Connection, ToSql};
use tidewater_core::{Change, ChangeKind, Error, Result, TableId, TableSchema, Value};

use crate::in_place::long_string;
use crate::sql::{
    cast_from_text, log_table, old_key_columns, qualified, quote_ident, LOG_METADATA_COLUMNS,
};
use crate::table::column_list;

pub struct LogMeta<'a> {
    pub position: &'a str,
    pub commit_ts: &'a str,
    pub txseq: i64,
    /// The sink's ordinal of the transaction (`_metadata_tx`).
    pub tx: i64,
}

fn param_cast(schema: &TableSchema, col: usize) -> String {
    cast_from_text("CAST(? AS VARCHAR)", &schema.columns[col].ty)
}

fn text(v: &Value) -> Option<&str> {
    v.as_str()
}

fn run(conn: &Connection, sql: &str, params: &[Option<&str>], what: &str) -> Result<usize> {
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
    conn.execute(sql, refs.as_slice())
        .map_err(|e| Error::sink(format!("{what}: {e}")))
}

/// With `lenient` (a keyed table whose chunked copy is not consistent yet), an update of a
/// row the replica does not hold is skipped: the chunk that copies its key, or a later delete,
/// brings the row to its final state (see `tidewater_core::copy`). `target` is the table the
/// rows go to (the replica table, or its copy table while it is copied again).
pub fn apply(
    conn: &Connection,
    change: &Change,
    target: &TableId,
    meta: &LogMeta,
    log: bool,
    lenient: bool,
) -> Result<()> {
    let s = &*change.table;
    let replica = qualified(target);
    let what = format!("applying a {} to {}", change.kind.as_str(), s.id);
    // The new image, with unchanged values resolved from the old image when it has them.
    let new: Vec<Option<&str>> = change
        .row
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Unchanged if !s.has_key() => change.old.as_ref().and_then(|o| text(&o[i])),
            v => text(v),
        })
        .collect();

    if s.has_key() {
        // An update with unchanged values: set only what the source sent.
        let key_values: Vec<Option<&str>> = match &change.old {
            Some(old) => old.iter().map(text).collect(),
            None => s.key.iter().map(|&k| text(&change.row[k])).collect(),
        };
        let mut sets = Vec::new();
        let mut params = Vec::new();
        // Long strings are set apart, only if they differ (`crate::in_place`: DuckDB keeps a
        // long string written back unchanged in memory for good).
        let mut long = Vec::new();
        for (i, v) in change.row.iter().enumerate() {
            if matches!(v, Value::Unchanged) {
                continue;
            }
            if !s.key.contains(&i) && long_string(&s.columns[i].ty, v) {
                long.push(i);
                continue;
            }
            sets.push(format!(
                "{} = {}",
                quote_ident(&s.columns[i].name),
                param_cast(s, i)
            ));
            params.push(text(v));
        }
        let key_match = key_predicate(s, "");
        params.extend(key_values);
        let sql = format!("UPDATE {replica} SET {} WHERE {key_match}", sets.join(", "));
        let n = run(conn, &sql, &params, &what)?;
        if n == 0 && lenient {
            return Ok(());
        }
        if n != 1 {
            return Err(Error::sink(format!(
                "{what}: the row to update is missing from the replica (it no longer matches the source)"
            )));
        }
        // The row now has its new key (`sets` holds every key column: never unchanged).
        for i in long {
            let column = quote_ident(&s.columns[i].name);
            let sql = format!(
                "UPDATE {replica} SET {column} = {value} WHERE {key_match} \
                 AND {column} IS DISTINCT FROM {value}",
                value = param_cast(s, i)
            );
            let mut params = vec![text(&change.row[i])];
            params.extend(s.key.iter().map(|&k| new[k]));
            params.push(text(&change.row[i]));
            run(conn, &sql, &params, &what)?;
        }
        if log {
            let new_key: Vec<Option<&str>> = s.key.iter().map(|&k| new[k]).collect();
            // The old key when the update changed it (`old` is the old key), else NULLs.
            let old_keys = old_key_columns(s);
            let mut params: Vec<Option<&str>> = old_keys
                .iter()
                .enumerate()
                .map(|(n, _)| change.old.as_ref().and_then(|o| o.get(n)).and_then(text))
                .collect();
            params.extend([Some(meta.commit_ts), Some(meta.position)]);
            params.extend(new_key);
            let old_names: Vec<String> = old_keys.iter().map(|(n, _)| quote_ident(n)).collect();
            let old_values: Vec<String> = old_keys.iter().map(|(_, k)| param_cast(s, *k)).collect();
            let sql = format!(
                "INSERT INTO {} ({}, {}, {}) SELECT {}, {}, 'UPDATE', false, \
                 CAST(? AS TIMESTAMPTZ), get_current_timestamp(), ?, {}, {} FROM {replica} WHERE {}",
                log_table(&s.id),
                column_list(s),
                old_names.join(", "),
                meta_columns(),
                column_list(s),
                old_values.join(", "),
                meta.txseq,
                meta.tx,
                key_predicate(s, "")
            );
            run(conn, &sql, &params, &what)?;
        }
        return Ok(());
    }

    // Keyless: remove one row equal to the old image, then add the new one.
    let old: Vec<Option<&str>> = match (change.kind, &change.old) {
        (ChangeKind::Delete, _) => change.row.iter().map(text).collect(),
        (_, Some(old)) => old.iter().map(text).collect(),
        (_, None) => {
            return Err(Error::source_fatal(format!(
                "{what}: the source sent no old row image; set REPLICA IDENTITY FULL on {}",
                s.id
            )))
        }
    };
    let all_match: Vec<String> = (0..s.columns.len())
        .map(|i| {
            format!(
                "{} IS NOT DISTINCT FROM {}",
                quote_ident(&s.columns[i].name),
                param_cast(s, i)
            )
        })
        .collect();
    let sql = format!(
        "DELETE FROM {replica} WHERE rowid = (SELECT rowid FROM {replica} WHERE {} LIMIT 1)",
        all_match.join(" AND ")
    );
    if run(conn, &sql, &old, &what)? != 1 {
        return Err(Error::sink(format!(
            "{what}: no equal row in the replica (it no longer matches the source)"
        )));
    }
    let values: Vec<String> = (0..s.columns.len()).map(|i| param_cast(s, i)).collect();
    if change.kind == ChangeKind::Update {
        let sql = format!(
            "INSERT INTO {replica} ({}) VALUES ({})",
            column_list(s),
            values.join(", ")
        );
        run(conn, &sql, &new, &what)?;
    }
    if log {
        let image = if change.kind == ChangeKind::Delete {
            &old
        } else {
            &new
        };
        let mut params = image.clone();
        params.extend([Some(meta.commit_ts), Some(meta.position)]);
        let sql = format!(
            "INSERT INTO {} ({}, {}) VALUES ({}, '{}', {}, CAST(? AS TIMESTAMPTZ), \
             get_current_timestamp(), ?, {}, {})",
            log_table(&s.id),
            column_list(s),
            meta_columns(),
            values.join(", "),
            change.kind.as_str(),
            change.kind == ChangeKind::Delete,
            meta.txseq,
            meta.tx
        );
        run(conn, &sql, &params, &what)?;
    }
    Ok(())
}

/// Removes every row of `target` (a replica table or copy table).
pub fn delete_all(conn: &Connection, target: &TableId) -> Result<()> {
    let sql = format!("DELETE FROM {}", qualified(target));
    run(conn, &sql, &[], &format!("truncating {target}")).map(drop)
}

/// The log's `TRUNCATE` row, without values.
pub fn log_truncate(conn: &Connection, s: &TableSchema, meta: &LogMeta) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ('TRUNCATE', true, CAST(? AS TIMESTAMPTZ), \
         get_current_timestamp(), ?, {}, {})",
        log_table(&s.id),
        meta_columns(),
        meta.txseq,
        meta.tx
    );
    let params = [Some(meta.commit_ts), Some(meta.position)];
    run(conn, &sql, &params, &format!("truncating {}", s.id)).map(drop)
}

/// The log's metadata column names, comma-separated.
pub(crate) fn meta_columns() -> String {
    let v: Vec<&str> = LOG_METADATA_COLUMNS.iter().map(|(n, _)| *n).collect();
    v.join(", ")
}

fn key_predicate(s: &TableSchema, prefix: &str) -> String {
    let v: Vec<String> = s
        .key
        .iter()
        .map(|&k| {
            format!(
                "{prefix}{} = {}",
                quote_ident(&s.columns[k].name),
                param_cast(s, k)
            )
        })
        .collect();
    v.join(" AND ")
}
