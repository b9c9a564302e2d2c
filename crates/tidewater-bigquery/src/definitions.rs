//! `_tidewater_tables`: per pipeline, every source table the dataset holds with its rows, and
//! the definition (`TableSchema`, as JSON) its replica was last written with.
//!
//! Written only by the commit transaction (`merge`), in the same transaction as the rows it
//! describes, and never streamed to, so it may take DML. That makes it the truth after a
//! crash: a table is held exactly when a commit copied it, and its definition is the one of
//! the last committed change, whatever DDL ran on the BigQuery tables around that commit
//! (`evolve`). It lets the runtime copy tables in while streaming (new tables, and tables
//! whose change the stream does not carry: `Sink::replicated_tables`) and gives the sources
//! the replica's definitions to compare with (`Sink::replica_schema`).

use serde_json::Value as Json;
use tidewater_core::{Error, Result, TableSchema};

use crate::client::BqClient;
use crate::merge::literal;

pub const DEFINITIONS_TABLE: &str = "_tidewater_tables";

/// Its columns: the pipeline, the source table, its definition.
pub const DEFINITION_COLUMNS: [&str; 4] =
    ["pipeline", "source_schema", "source_table", "definition"];

/// The definitions of every table this pipeline holds.
pub async fn read(client: &BqClient, pipeline: &str) -> Result<Vec<TableSchema>> {
    let what = format!("reading {DEFINITIONS_TABLE}");
    let sql = format!(
        "SELECT definition FROM {} WHERE pipeline = {}",
        client.qualified(DEFINITIONS_TABLE),
        literal(pipeline)
    );
    let rows = client.query(&what, &sql, None).await?;
    rows.iter()
        .map(|row| {
            let text = row.first().and_then(Json::as_str).unwrap_or_default();
            serde_json::from_str(text)
                .map_err(|e| Error::sink(format!("{what}: a definition that does not parse: {e}")))
        })
        .collect()
}

/// The statements (inside the commit transaction) that record `schema` as the definition of
/// its table. `table`: the qualified, quoted name of [`DEFINITIONS_TABLE`].
pub fn record(table: &str, pipeline: &str, schema: &TableSchema) -> Result<Vec<String>> {
    let json = serde_json::to_string(schema)
        .map_err(|e| Error::sink(format!("encoding the definition of {}: {e}", schema.id)))?;
    let (p, s, t) = (
        literal(pipeline),
        literal(&schema.id.schema),
        literal(&schema.id.name),
    );
    Ok(vec![
        format!(
            "DELETE FROM {table} WHERE pipeline = {p} AND source_schema = {s} AND source_table = {t}"
        ),
        format!(
            "INSERT INTO {table} ({}) VALUES ({p}, {s}, {t}, {})",
            DEFINITION_COLUMNS.join(", "),
            literal(&json)
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, ColumnType, TableId};

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
