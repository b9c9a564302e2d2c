//! `_tidewater_tables`: per pipeline, every source table the dataset holds with its rows, and
//! the definition (`TableSchema`, as JSON) its replica was last written with. And
//! `_tidewater_copies`: per pipeline and table, the chunked copy's progress
//! (`tidewater_core::CopyProgress`, as JSON) committed with the chunk it describes.
//!
//! Written only by the commit transaction (`merge`), in the same transaction as the rows it
//! describes, and never streamed to, so it may take DML. That makes it the truth after a
//! crash: a table is held exactly when a commit copied it, and its definition is the one of
//! the last committed change, whatever DDL ran on the BigQuery tables around that commit
//! (`evolve`). It lets the runtime copy tables in while streaming (new tables, and tables
//! whose change the stream does not carry: `Sink::replicated_tables`) and gives the sources
//! the replica's definitions to compare with (`Sink::replica_schema`). The copy progress
//! is the same kind of record: written by the commit that holds the chunk's rows, so after a
//! crash the copy resumes at the chunk after the last committed one. So are the tables'
//! layouts at the source in `_tidewater_layouts` (`Sink::table_layouts`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use tidewater_core::{CopyProgress, Error, Result, TableId, TableSchema};

use crate::client::BqClient;
use crate::merge::literal;

pub use crate::tables::{COPIES_TABLE, DEFINITIONS_TABLE, LAYOUTS_TABLE};

/// The definitions of every table this pipeline holds.
pub async fn read(client: &BqClient, pipeline: &str) -> Result<Vec<TableSchema>> {
    read_json(client, DEFINITIONS_TABLE, "definition", pipeline).await
}

/// The statements (inside the commit transaction) that record `schema` as the definition of
/// its table. `table`: the qualified, quoted name of [`DEFINITIONS_TABLE`].
pub fn record(table: &str, pipeline: &str, schema: &TableSchema) -> Result<Vec<String>> {
    record_json(table, "definition", pipeline, &schema.id, schema)
}

/// The committed copy progress of every table of this pipeline (`_tidewater_copies`).
pub async fn read_copies(client: &BqClient, pipeline: &str) -> Result<Vec<CopyProgress>> {
    read_json(client, COPIES_TABLE, "progress", pipeline).await
}

/// The statements (inside the commit transaction) that record a table's copy progress.
/// `table`: the qualified, quoted name of [`COPIES_TABLE`].
pub fn record_copy(table: &str, pipeline: &str, progress: &CopyProgress) -> Result<Vec<String>> {
    record_json(table, "progress", pipeline, &progress.table, progress)
}

/// A table's layout as `_tidewater_layouts` holds it (JSON).
#[derive(Serialize, serde::Deserialize)]
struct StoredLayout {
    table: TableId,
    layout: String,
}

/// The committed layouts of this pipeline's tables (`_tidewater_layouts`).
pub async fn read_layouts(client: &BqClient, pipeline: &str) -> Result<BTreeMap<TableId, String>> {
    let stored: Vec<StoredLayout> = read_json(client, LAYOUTS_TABLE, "layout", pipeline).await?;
    Ok(stored.into_iter().map(|s| (s.table, s.layout)).collect())
}

/// The statements (inside the commit transaction) that record a table's layout.
/// `table`: the qualified, quoted name of [`LAYOUTS_TABLE`].
pub fn record_layout(
    table: &str,
    pipeline: &str,
    id: &TableId,
    layout: &str,
) -> Result<Vec<String>> {
    let stored = StoredLayout {
        table: id.clone(),
        layout: layout.to_string(),
    };
    record_json(table, "layout", pipeline, id, &stored)
}

/// The JSON of `column` in every row of `name` for `pipeline`.
async fn read_json<T: DeserializeOwned>(
    client: &BqClient,
    name: &str,
    column: &str,
    pipeline: &str,
) -> Result<Vec<T>> {
    let what = format!("reading {name}");
    let sql = format!(
        "SELECT {column} FROM {} WHERE pipeline = {}",
        client.qualified(name),
        literal(pipeline)
    );
    let rows = client.query(&what, &sql, None).await?;
    rows.iter()
        .map(|row| {
            let text = row.first().and_then(Json::as_str).unwrap_or_default();
            serde_json::from_str(text)
                .map_err(|e| Error::sink(format!("{what}: a {column} that does not parse: {e}")))
        })
        .collect()
}

/// `tidewater forget` (`Sink::forget`): one transaction removing the rows of `ids` for
/// `pipeline` from [`DEFINITIONS_TABLE`], [`COPIES_TABLE`] and [`LAYOUTS_TABLE`], so the
/// dataset no longer holds them. `qualified` quotes a table name of the dataset.
pub fn forget(qualified: impl Fn(&str) -> String, pipeline: &str, ids: &[TableId]) -> String {
    let mut statements = vec!["BEGIN TRANSACTION".to_string()];
    for id in ids {
        let (p, s, t) = (literal(pipeline), literal(&id.schema), literal(&id.name));
        for table in [DEFINITIONS_TABLE, COPIES_TABLE, LAYOUTS_TABLE] {
            statements.push(format!(
                "DELETE FROM {} WHERE pipeline = {p} AND source_schema = {s} AND source_table = {t}",
                qualified(table)
            ));
        }
    }
    statements.push("COMMIT TRANSACTION".into());
    statements.join(";\n") + ";"
}

/// Replaces the row of source table `id` for `pipeline` in `table` with `value` as JSON.
fn record_json(
    table: &str,
    column: &str,
    pipeline: &str,
    id: &TableId,
    value: &impl Serialize,
) -> Result<Vec<String>> {
    let json = serde_json::to_string(value)
        .map_err(|e| Error::sink(format!("encoding the {column} of {id}: {e}")))?;
    let (p, s, t) = (literal(pipeline), literal(&id.schema), literal(&id.name));
    Ok(vec![
        format!(
            "DELETE FROM {table} WHERE pipeline = {p} AND source_schema = {s} AND source_table = {t}"
        ),
        format!(
            "INSERT INTO {table} (pipeline, source_schema, source_table, {column}) \
             VALUES ({p}, {s}, {t}, {})",
            literal(&json)
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, ColumnType, TableId};

    #[test]
    fn forgetting_removes_definitions_copies_and_layouts_in_one_transaction() {
        let sql = forget(
            |t| format!("`p.d.{t}`"),
            "default",
            &[TableId::new("public", "it's")],
        );
        assert_eq!(
            sql,
            "BEGIN TRANSACTION;\n\
             DELETE FROM `p.d._tidewater_tables` WHERE pipeline = 'default' AND source_schema = \
             'public' AND source_table = 'it\\'s';\n\
             DELETE FROM `p.d._tidewater_copies` WHERE pipeline = 'default' AND source_schema = \
             'public' AND source_table = 'it\\'s';\n\
             DELETE FROM `p.d._tidewater_layouts` WHERE pipeline = 'default' AND source_schema = \
             'public' AND source_table = 'it\\'s';\n\
             COMMIT TRANSACTION;"
        );
    }

    #[test]
    fn a_definition_is_replaced_whole() {
        let schema = TableSchema {
            id: TableId::new("public", "it's"),
            columns: vec![Column {
                name: "id".into(),
                ty: ColumnType::Int64,
                nullable: false,
                source_type: "bigint".into(),
            }],
            key: vec![0],
        };
        let sql = record("`p.d._tidewater_tables`", "default", &schema).unwrap();
        assert_eq!(
            sql[0],
            "DELETE FROM `p.d._tidewater_tables` WHERE pipeline = 'default' AND source_schema = \
             'public' AND source_table = 'it\\'s'"
        );
        assert!(sql[1].starts_with(
            "INSERT INTO `p.d._tidewater_tables` (pipeline, source_schema, source_table, \
             definition) VALUES ('default', 'public', 'it\\'s', '{"
        ));
        // The JSON survives the literal: BigQuery unescapes what `literal` escaped.
        let json = serde_json::to_string(&schema).unwrap();
        let back: TableSchema = serde_json::from_str(&json).unwrap();
        assert_eq!(back, schema);
    }
}
