//! Reading the source catalog: which tables the `tables` globs select, their columns, keys
//! and replica identity.
//!
//! **The key** is what the stream's updates and deletes identify rows by (`describe`): the
//! primary key, or under `REPLICA IDENTITY USING INDEX` that index. A table with neither but
//! `REPLICA IDENTITY FULL` is keyed by a unique index whose key columns are all NOT NULL (not
//! partial, not on expressions, not deferrable, valid; the fewest columns, then the index
//! name): its old rows hold every column, so they name the row by that key too, and such an
//! index makes the rows a set with that key, exactly like a primary key. The table is then
//! copied in chunks and applied by key (`tidewater_core::copy`). Under the default identity
//! a table without a primary key publishes only its inserts and stays keyless.

use std::collections::HashSet;
use std::sync::Arc;

use tidewater_core::glob::selected;
use tidewater_core::{Column, ColumnType, Error, Result, TableId, TableSchema};
use tokio_postgres::Client;
use tracing::warn;

use crate::conn::pg_error;
use crate::types::column_type;

/// A selected source table.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub oid: u32,
    pub schema: Arc<TableSchema>,
    /// `relreplident`: d(efault, the key), f(ull), n(othing), i(ndex).
    pub replica_identity: char,
    /// Columns whose type is not natively supported (replicated as text).
    pub unsupported: Vec<(String, String)>,
}

impl SourceTable {
    /// Updates and deletes can be replicated: the table has a key, or sends full old rows.
    pub fn publishes_all_changes(&self) -> bool {
        self.schema.has_key() || self.replica_identity == 'f'
    }
}

pub async fn resolve_tables(client: &Client, patterns: &[String]) -> Result<Vec<SourceTable>> {
    let tables = selected_tables(client, patterns, &HashSet::new()).await?;
    if tables.is_empty() {
        return Err(Error::config(format!(
            "no source table matches source.tables = {patterns:?}; patterns are schema.table globs \
             such as \"public.*\" (run `tidewater check` to list the tables it sees)"
        )));
    }
    Ok(tables)
}

/// The tables the globs select, except `known` ones (one catalog query; only the others
/// are described): also how tables created while streaming are found.
pub async fn selected_tables(
    client: &Client,
    patterns: &[String],
    known: &HashSet<TableId>,
) -> Result<Vec<SourceTable>> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname, c.relname, c.relreplident::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
             ORDER BY 2, 3",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "listing source tables"))?;
    let mut tables = Vec::new();
    for row in rows {
        let id = TableId::new(row.get::<_, String>(1), row.get::<_, String>(2));
        if known.contains(&id) || !selected(patterns, &id) {
            continue;
        }
        let oid: u32 = row.get(0);
        let ident: String = row.get(3);
        tables.push(describe(client, oid, id, ident.chars().next().unwrap_or('d')).await?);
    }
    Ok(tables)
}

/// The table with this OID as the catalog describes it now; `None` once it is dropped.
pub async fn describe_relation(client: &Client, oid: u32) -> Result<Option<SourceTable>> {
    let row = client
        .query_opt(
            "SELECT n.nspname, c.relname, c.relreplident::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, &format!("reading table oid {oid}")))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id = TableId::new(row.get::<_, String>(0), row.get::<_, String>(1));
    let ident: String = row.get(2);
    describe(client, oid, id, ident.chars().next().unwrap_or('d'))
        .await
        .map(Some)
}

/// Reads a table's definition. Its key is the replica identity the stream's updates and
/// deletes carry: the primary key, or under `REPLICA IDENTITY USING INDEX` that index's
/// columns (unique, not partial, NOT NULL, so a key as good as the primary key). Keying the
/// replica by the primary key while the identity is another index would apply a delete,
/// whose old tuple holds only the index's columns, to no row.
async fn describe(
    client: &Client,
    oid: u32,
    id: TableId,
    replica_identity: char,
) -> Result<SourceTable> {
    // Generated columns are not published by pgoutput, so they are not replicated either.
    // The key is what updates and deletes identify rows by (see above).
    let by_index = replica_identity == 'i';
    let rows = client
        .query(
            "SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull, format_type(a.atttypid, a.atttypmod), \
             t.typtype::text, \
             (SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i \
              WHERE i.indrelid = a.attrelid \
              AND CASE WHEN $2 THEN i.indisreplident ELSE i.indisprimary END) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[&oid, &by_index],
        )
        .await
        .map_err(|e| pg_error(e, &format!("reading columns of {id}")))?;
    let mut columns = Vec::new();
    let mut key: Vec<(i32, usize)> = Vec::new();
    let mut unsupported = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let type_oid: u32 = row.get(1);
        let typmod: i32 = row.get(2);
        let source_type: String = row.get(4);
        let typtype: String = row.get(5);
        let ty = match column_type(type_oid, typmod) {
            Some(ty) => ty,
            // Enums are text by nature.
            None if typtype == "e" => ColumnType::Text,
            None => {
                unsupported.push((name.clone(), source_type.clone()));
                ColumnType::Text
            }
        };
        if let Some(pos) = row.get::<_, Option<i32>>(6) {
            key.push((pos, columns.len()));
        }
        columns.push(Column {
            name,
            ty,
            nullable: !row.get::<_, bool>(3),
            source_type,
        });
    }
    key.sort();
    if key.is_empty() && replica_identity == 'f' {
        let names = unique_key(client, oid, &id).await?;
        let found: Option<Vec<(i32, usize)>> = (0..)
            .zip(&names)
            .map(|(pos, n)| Some((pos, columns.iter().position(|c| &c.name == n)?)))
            .collect();
        key = found.unwrap_or_default();
    }
    for (col, ty) in &unsupported {
        warn!(table = %id, column = %col, "type {ty} is not natively supported: replicated as exact text");
    }
    let schema = TableSchema {
        id,
        columns,
        key: key.into_iter().map(|(_, i)| i).collect(),
    };
    Ok(SourceTable {
        oid,
        schema: Arc::new(schema),
        replica_identity,
        unsupported,
    })
}

/// The key columns of the unique index a `REPLICA IDENTITY FULL` table without a primary key
/// is keyed by (see the module doc): the NOT NULL unique index with the fewest columns (then
/// by name). Empty when there is none.
async fn unique_key(client: &Client, oid: u32, id: &TableId) -> Result<Vec<String>> {
    // `indkey` lists the key columns first, then INCLUDE columns (`indnkeyatts` key ones);
    // WITH ORDINALITY numbers them from 1 whatever the array's lower bound.
    let row = client
        .query_opt(
            "WITH k AS (SELECT i.indexrelid, a.attname::text AS name, a.attnotnull, a.attgenerated, o.ord \
               FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY o(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = o.attnum \
               WHERE i.indrelid = $1 AND o.ord <= i.indnkeyatts) \
             SELECT ARRAY(SELECT k.name FROM k WHERE k.indexrelid = i.indexrelid ORDER BY k.ord) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid \
             AND i.indpred IS NULL AND i.indexprs IS NULL \
             AND NOT EXISTS (SELECT 1 FROM k WHERE k.indexrelid = i.indexrelid \
               AND (NOT k.attnotnull OR k.attgenerated <> '')) \
             ORDER BY i.indnkeyatts, c.relname LIMIT 1",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, &format!("reading the unique indexes of {id}")))?;
    Ok(row.map(|r| r.get(0)).unwrap_or_default())
}
