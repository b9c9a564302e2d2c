//! Creating replica and log tables, and refusing to write into ones that no longer match.

use std::sync::Arc;

use duckdb::Connection;
use tidewater_core::{Error, Result, TableId, TableSchema};
use tracing::info;

use crate::catalog::Catalog;
use crate::config::DuckDbOptions;
use crate::log_restart;
use crate::sql::{
    copy_table, duckdb_type, exec, log_id, log_table, old_key_columns, qualified, quote_ident,
    table_columns,
};
use crate::state;
use crate::table::TableSql;

pub fn prepare_table(
    conn: &Connection,
    catalog: &mut Catalog,
    schema: Arc<TableSchema>,
    index: usize,
    options: &DuckDbOptions,
) -> Result<TableSql> {
    let log_tables = options.log_tables;
    let id = &schema.id;
    let sql = TableSql::new(schema.clone(), index, log_tables);
    exec(
        conn,
        &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&id.schema)),
        id,
    )?;
    let mut sql = sql;
    match state::read_table_schema(conn, &schema)? {
        Some(stored) if stored == *schema => {}
        Some(stored) => {
            // The source's table changed since the last applied transaction: the replica keeps
            // the schema it was written with until the stream reaches the change.
            info!(
                table = %id,
                replica = %names(&stored),
                source = %names(&schema),
                "the source table's current columns differ from the replica's; the change is applied when the stream reaches it"
            );
            sql = TableSql::new(Arc::new(stored), index, log_tables);
        }
        None => {
            exec(
                conn,
                &sql.create_replica(options.key_at_creation()),
                &format_args!("creating replica {id}"),
            )?;
            catalog.reread(conn, id)?;
            if log_tables {
                exec(
                    conn,
                    &sql.create_log(),
                    &format_args!("creating change log of {id}"),
                )?;
                catalog.reread(conn, &log_id(id))?;
            }
            state::write_table_schema(conn, &schema)?;
        }
    }
    // A table being copied again writes to its copy table (`sink/recopy.rs`), which holds
    // the definition tidewater applies.
    let copy = copy_table(id);
    if catalog.exists(&copy) {
        sql = TableSql::writing_to(sql.schema.clone(), index, log_tables, copy);
    }
    let schema = sql.schema.clone();
    let target = &sql.replica;
    let mut found = catalog.columns(target).to_vec();
    let mut expected: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    // Columns added by a schema change come last in the replica whatever their source order.
    found.sort();
    expected.sort_unstable();
    if found != expected {
        let what = if found.is_empty() {
            "is missing: it was dropped by hand".to_string()
        } else {
            format!(
                "does not have the columns tidewater created (expected ({}), found ({})): it was \
                 changed by hand",
                expected.join(", "),
                found.join(", ")
            )
        };
        return Err(
            Error::sink(format!("replica {} {what}", qualified(target))).with_fix(
                "restore it, or drop it with its _log table and the _tidewater state to take a \
                 new snapshot",
            ),
        );
    }
    exec(
        conn,
        &sql.create_stage,
        &format_args!("creating staging for {id}"),
    )?;
    Ok(sql)
}

/// `prepare_table` for each of `tables` (index = position), inside the open transaction that
/// prepares them, then the restart of the `_log` of those whose log missed changes
/// (`crate::log_restart`; `partial`: a split transaction is partly applied). Returns the tables
/// and the ordinal the restart took, if one did.
pub fn prepare_tables(
    conn: &Connection,
    tables: &[Arc<TableSchema>],
    options: &DuckDbOptions,
    partial: bool,
) -> Result<(Vec<TableSql>, Option<i64>)> {
    let mut prepared = Vec::new();
    let mut restart = Vec::new();
    let mut catalog = Catalog::read(conn)?;
    for (i, schema) in tables.iter().enumerate() {
        let sql = prepare_table(conn, &mut catalog, schema.clone(), i, options)?;
        if log_restart::needs_restart(conn, &mut catalog, &sql, options.log_tables)? {
            restart.push(i);
        }
        prepared.push(sql);
    }
    let mut ordinal = None;
    if !restart.is_empty() {
        let restart: Vec<&TableSql> = restart.iter().map(|&i| &prepared[i]).collect();
        let (pipeline, source) = (&options.pipeline, &options.source_type);
        ordinal = log_restart::restart(conn, &restart, partial, pipeline, source)?;
    }
    Ok((prepared, ordinal))
}

fn names(schema: &TableSchema) -> String {
    let v: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    v.join(", ")
}

/// Applies a source schema change to the replica and its log inside the open batch: added
/// columns are added, dropped ones dropped from the replica (the log keeps them: it is
/// history), changed types altered. A changed primary key needs a new snapshot, unless
/// `emptied` is `Some(primary_key)`: the caller removes every replica row next (a table
/// copied again), so the replica is created anew with the new key. `target` is the table the
/// rows go to (the replica table, or its copy table).
pub fn evolve_table(
    conn: &Connection,
    old: &TableSchema,
    new: Arc<TableSchema>,
    index: usize,
    log_tables: bool,
    emptied: Option<bool>,
    target: &TableId,
) -> Result<TableSql> {
    let id = &new.id;
    let key_names = |s: &TableSchema| -> Vec<String> {
        s.key.iter().map(|&k| s.columns[k].name.clone()).collect()
    };
    let rekey = key_names(old) != key_names(&new);
    if rekey && emptied.is_none() {
        return Err(Error::source_fatal(format!(
            "the primary key of {id} changed from ({}) to ({}); tidewater cannot re-key a replica in \
             place: start from a new DuckDB file to take a new snapshot",
            key_names(old).join(", "),
            key_names(&new).join(", ")
        )));
    }
    let replica = qualified(target);
    let log = log_table(id);
    let log_cols = if log_tables {
        table_columns(conn, &log_id(id))?
    } else {
        Vec::new()
    };
    let mut ddl = Vec::new();
    let sql = TableSql::writing_to(new.clone(), index, log_tables, target.clone());
    if let (true, Some(primary_key)) = (rekey, emptied) {
        ddl.push(format!("DROP TABLE {replica}"));
        ddl.push(sql.create_replica(primary_key));
    }
    // A key column new to the log (a primary key added, or the table re-keyed) gets its
    // old-key column, with the key's type; the rows logged before hold NULL there (they
    // changed no key).
    let mut added_old_keys = Vec::new();
    if log_tables {
        for (old_key, k) in old_key_columns(&new) {
            if !log_cols.contains(&old_key) {
                let ty = duckdb_type(&new.columns[k].ty);
                ddl.push(format!(
                    "ALTER TABLE {log} ADD COLUMN {} {ty}",
                    quote_ident(&old_key)
                ));
                added_old_keys.push(old_key);
            }
        }
    }
    for c in &old.columns {
        if !rekey && !new.columns.iter().any(|n| n.name == c.name) {
            ddl.push(format!(
                "ALTER TABLE {replica} DROP COLUMN {}",
                quote_ident(&c.name)
            ));
        }
    }
    for c in &new.columns {
        let ty = duckdb_type(&c.ty);
        let name = quote_ident(&c.name);
        match old.columns.iter().find(|o| o.name == c.name) {
            None => {
                if !rekey {
                    ddl.push(format!("ALTER TABLE {replica} ADD COLUMN {name} {ty}"));
                }
                if log_tables && !log_cols.contains(&c.name) {
                    ddl.push(format!("ALTER TABLE {log} ADD COLUMN {name} {ty}"));
                } else if log_tables {
                    ddl.push(format!("ALTER TABLE {log} ALTER COLUMN {name} TYPE {ty}"));
                }
            }
            Some(o) if o.ty != c.ty => {
                if !rekey {
                    ddl.push(format!(
                        "ALTER TABLE {replica} ALTER COLUMN {name} TYPE {ty}"
                    ));
                }
                if log_tables {
                    ddl.push(format!("ALTER TABLE {log} ALTER COLUMN {name} TYPE {ty}"));
                    // A key column's old value in the log has the column's type.
                    let old_keys = old_key_columns(&new);
                    if let Some((old, _)) = old_keys.iter().find(|(o, k)| {
                        new.columns[*k].name == c.name && !added_old_keys.contains(o)
                    }) {
                        let old = quote_ident(old);
                        ddl.push(format!("ALTER TABLE {log} ALTER COLUMN {old} TYPE {ty}"));
                    }
                }
            }
            Some(_) => {}
        }
    }
    for statement in &ddl {
        exec(
            conn,
            statement,
            &format_args!("applying a schema change to {id}"),
        )?;
    }
    state::write_table_schema(conn, &new)?;
    exec(
        conn,
        &sql.create_stage,
        &format_args!("creating staging for {id}"),
    )?;
    info!(
        table = %id,
        was = %names(old),
        now = %names(&new),
        statements = ddl.len(),
        "schema change applied to the replica"
    );
    Ok(sql)
}
