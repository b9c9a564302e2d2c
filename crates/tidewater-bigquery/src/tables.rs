//! What the sink creates in the dataset, and how it names it (README.md "What lands in DuckDB",
//! mapped onto BigQuery's one level of datasets):
//!
//! - replica `<schema>_<table>`: the source columns, clustered by the primary key;
//! - change log `<schema>_<table>_log`: the source columns, `_metadata_old_<key>` (the old key
//!   of an update that changed the key), and the `_metadata_*` columns of [`LOG_METADATA`];
//!   partitioned by day on `_metadata_timestamp`, clustered by `_metadata_tx`;
//! - staging `<schema>_<table>_staging`: the log's columns and `_metadata_run`; where rows
//!   stream to (insertAll) and load jobs load to before a commit moves them into the log and
//!   replica. Partitioned by day on `_metadata_timestamp`, partitions expiring after
//!   [`STAGING_EXPIRATION_MS`]: nothing ever deletes from it (see `sink`);
//! - state `_tidewater_state`: per pipeline the committed source position and the ordinal of
//!   the last applied transaction.
//!
//! Characters BigQuery does not allow in table names become `_`.

use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema as BqSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use tidewater_core::{Error, Result, TableId, TableSchema};

use crate::types::{bq_type, clusterable, BqField, BqType};

pub const STATE_TABLE: &str = "_tidewater_state";
/// The tables held and their committed definitions (`definitions`).
pub const DEFINITIONS_TABLE: &str = "_tidewater_tables";
/// Its columns: the pipeline, the source table, its definition (JSON).
pub const DEFINITION_COLUMNS: [&str; 4] =
    ["pipeline", "source_schema", "source_table", "definition"];
/// The tables' chunked copy progress (`definitions`).
pub const COPIES_TABLE: &str = "_tidewater_copies";
/// Its columns: the pipeline, the source table, its copy progress (JSON).
pub const COPY_COLUMNS: [&str; 4] = ["pipeline", "source_schema", "source_table", "progress"];
/// The tables' layouts at the source (`Sink::table_layouts`; `definitions`).
pub const LAYOUTS_TABLE: &str = "_tidewater_layouts";
/// Its columns: the pipeline, the source table, its layout and table (JSON).
pub const LAYOUT_COLUMNS: [&str; 4] = ["pipeline", "source_schema", "source_table", "layout"];
/// Prefix of the log columns holding the old key of a key-changing update.
pub const OLD_KEY_PREFIX: &str = "_metadata_old_";
/// The staging column naming the run that appended a row; a commit selects only its own.
pub const RUN_COLUMN: &str = "_metadata_run";
/// The staging-only change type of a keyless table's replaced row (`rows::before_row`).
pub const BEFORE: &str = "BEFORE";
/// The staging column listing an update's unchanged (TOASTed) columns, whose values the
/// commit takes from the key's previous image; never copied to the log.
pub const UNCHANGED_COLUMN: &str = "_metadata_unchanged";
/// Staging partitions expire two days after their day ends: far longer than any batch waits
/// for its commit (seconds; minutes when BigQuery is slow), and short enough to keep the
/// table small.
pub const STAGING_EXPIRATION_MS: i64 = 2 * 24 * 3600 * 1000;
/// BigQuery clusters by at most four columns.
const MAX_CLUSTER_COLUMNS: usize = 4;

/// The change-log columns after the source's (`_metadata_tx` is the sink's transaction
/// ordinal: the order of source transactions, and what the MERGE selects by).
pub const LOG_METADATA: &[(&str, BqField)] = &[
    ("_metadata_change_type", BqField::String),
    ("_metadata_deleted", BqField::Bool),
    ("_metadata_source_timestamp", BqField::Timestamp),
    ("_metadata_timestamp", BqField::Timestamp),
    ("_metadata_position", BqField::String),
    ("_metadata_sequence", BqField::Int64),
    ("_metadata_tx", BqField::Int64),
];

const STATE_COLUMNS: &[(&str, BqField)] = &[
    ("name", BqField::String),
    ("source_type", BqField::String),
    ("position", BqField::String),
    ("tx_ordinal", BqField::Int64),
    ("last_source_commit", BqField::Timestamp),
    ("last_apply", BqField::Timestamp),
];

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The BigQuery names of a source table's replica and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub replica: String,
    pub log: String,
    pub staging: String,
}

pub fn table_names(id: &TableId) -> TableNames {
    let replica = format!("{}_{}", sanitize(&id.schema), sanitize(&id.name));
    TableNames {
        log: format!("{replica}_log"),
        staging: format!("{replica}_staging"),
        replica,
    }
}

/// `name` quoted for BigQuery SQL.
pub fn ident(name: &str) -> String {
    format!("`{name}`")
}

/// Column names must be usable as they are: renaming them would break the source-neutral
/// contract (same column names as the source).
pub fn check_columns(schema: &TableSchema) -> Result<()> {
    for c in &schema.columns {
        let ok = !c.name.is_empty()
            && !c.name.starts_with(|ch: char| ch.is_ascii_digit())
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !c.name.starts_with("_metadata_");
        if !ok {
            return Err(Error::source_fatal(format!(
                "column {:?} of {} cannot be a BigQuery column name (letters, digits and '_', \
                 not starting with a digit or _metadata_): rename it at the source, or leave \
                 the table out of source.tables",
                c.name, schema.id
            )));
        }
    }
    Ok(())
}

fn field(name: &str, t: BqType) -> TableFieldSchema {
    let mut f = TableFieldSchema::new(name, t.field.field_type());
    f.mode = Some(if t.repeated { "REPEATED" } else { "NULLABLE" }.into());
    f
}

fn scalar_field(name: &str, t: BqField) -> TableFieldSchema {
    field(
        name,
        BqType {
            field: t,
            repeated: false,
        },
    )
}

/// The replica's columns: the source's, with their BigQuery types.
pub fn source_fields(schema: &TableSchema) -> Vec<TableFieldSchema> {
    let columns = schema.columns.iter();
    columns.map(|c| field(&c.name, bq_type(&c.ty))).collect()
}

/// Where tables are created: the dataset, and its location.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub project: &'a str,
    pub dataset: &'a str,
    pub location: Option<&'a str>,
}

fn new_table(at: &Place, name: &str, fields: Vec<TableFieldSchema>) -> Table {
    let table = Table::new(at.project, at.dataset, name, BqSchema::new(fields));
    match at.location {
        Some(l) => table.location(l),
        None => table,
    }
}

/// The replica: source columns, clustered by (up to four of) the primary key columns.
pub fn replica_table(at: &Place, schema: &TableSchema) -> Table {
    let names = table_names(&schema.id);
    let mut table = new_table(at, &names.replica, source_fields(schema));
    let cluster: Vec<String> = schema
        .key
        .iter()
        .map(|&k| &schema.columns[k])
        .filter(|c| clusterable(&bq_type(&c.ty)))
        .take(MAX_CLUSTER_COLUMNS)
        .map(|c| c.name.clone())
        .collect();
    if !cluster.is_empty() {
        table = table.clustering(Clustering {
            fields: Some(cluster),
        });
    }
    table
}

fn log_fields(schema: &TableSchema) -> Vec<TableFieldSchema> {
    let mut fields = source_fields(schema);
    for &k in &schema.key {
        let c = &schema.columns[k];
        fields.push(field(
            &format!("{OLD_KEY_PREFIX}{}", c.name),
            bq_type(&c.ty),
        ));
    }
    fields.extend(LOG_METADATA.iter().map(|(n, t)| scalar_field(n, *t)));
    fields
}

/// The names of the log's columns, in order (the staging table has them too).
#[cfg(test)]
pub fn log_column_names(schema: &TableSchema) -> Vec<String> {
    log_fields(schema).into_iter().map(|f| f.name).collect()
}

/// The change log: source columns, old key columns, metadata; partitioned by day.
pub fn log_table(at: &Place, schema: &TableSchema) -> Table {
    let names = table_names(&schema.id);
    new_table(at, &names.log, log_fields(schema))
        .time_partitioning(TimePartitioning::per_day().field("_metadata_timestamp"))
        .clustering(Clustering {
            fields: Some(vec!["_metadata_tx".into()]),
        })
}

/// The staging table: the log's columns and the run; day partitions that expire by
/// themselves, clustered by run and transaction (what a commit selects by).
pub fn staging_table(at: &Place, schema: &TableSchema) -> Table {
    let names = table_names(&schema.id);
    let mut fields = log_fields(schema);
    fields.push(scalar_field(RUN_COLUMN, BqField::String));
    let unchanged = BqType {
        field: BqField::String,
        repeated: true,
    };
    fields.push(field(UNCHANGED_COLUMN, unchanged));
    let mut partitioning = TimePartitioning::per_day().field("_metadata_timestamp");
    partitioning.expiration_ms = Some(STAGING_EXPIRATION_MS.to_string());
    new_table(at, &names.staging, fields)
        .time_partitioning(partitioning)
        .clustering(Clustering {
            fields: Some(vec![RUN_COLUMN.into(), "_metadata_tx".into()]),
        })
}

/// `_tidewater_tables` (`definitions`): every column a string.
pub fn definitions_table(at: &Place) -> Table {
    string_table(at, DEFINITIONS_TABLE, &DEFINITION_COLUMNS)
}

pub fn copies_table(at: &Place) -> Table {
    string_table(at, COPIES_TABLE, &COPY_COLUMNS)
}

pub fn layouts_table(at: &Place) -> Table {
    string_table(at, LAYOUTS_TABLE, &LAYOUT_COLUMNS)
}

fn string_table(at: &Place, name: &str, columns: &[&str]) -> Table {
    let fields = columns
        .iter()
        .map(|n| scalar_field(n, BqField::String))
        .collect();
    new_table(at, name, fields)
}

pub fn state_table(at: &Place) -> Table {
    let fields = STATE_COLUMNS
        .iter()
        .map(|(n, t)| scalar_field(n, *t))
        .collect();
    new_table(at, STATE_TABLE, fields)
}

/// The columns a table created from `table` has, in order.
pub fn fields(table: &Table) -> Vec<TableFieldSchema> {
    table.schema.fields().clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, ColumnType};

    fn orders() -> TableSchema {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: true,
            source_type: String::new(),
        };
        TableSchema {
            id: TableId::new("public", "order-items"),
            columns: vec![
                col("id", ColumnType::Int64),
                col("price", ColumnType::Float64),
                col("tags", ColumnType::List(Box::new(ColumnType::Text))),
            ],
            key: vec![0, 1],
        }
    }

    #[test]
    fn names_layout_clustering_and_partitioning() {
        let s = orders();
        let names = table_names(&s.id);
        assert_eq!(names.replica, "public_order_items");
        assert_eq!(names.log, "public_order_items_log");
        let mut at = Place {
            project: "p",
            dataset: "d",
            location: Some("EU"),
        };
        let replica = replica_table(&at, &s);
        at.location = None;
        // FLOAT64 cannot cluster.
        assert_eq!(replica.clustering.unwrap().fields.unwrap(), vec!["id"]);
        let json = serde_json::to_value(log_table(&at, &s)).unwrap();
        assert_eq!(json["timePartitioning"]["type"], "DAY");
        assert_eq!(json["timePartitioning"]["field"], "_metadata_timestamp");
        let fields = json["schema"]["fields"].as_array().unwrap();
        assert_eq!(fields[2]["mode"], "REPEATED");
        assert_eq!(fields[3]["name"], "_metadata_old_id");
        assert_eq!(fields.last().unwrap()["name"], "_metadata_tx");
        let json = serde_json::to_value(staging_table(&at, &s)).unwrap();
        assert_eq!(
            json["tableReference"]["tableId"],
            "public_order_items_staging"
        );
        assert_eq!(json["timePartitioning"]["expirationMs"], "172800000");
        let fields = json["schema"]["fields"].as_array().unwrap();
        assert_eq!(fields[fields.len() - 2]["name"], "_metadata_run");
        assert_eq!(fields.last().unwrap()["name"], "_metadata_unchanged");
        assert_eq!(log_column_names(&s).len(), fields.len() - 2);
    }

    #[test]
    fn unusable_column_names_are_refused_with_the_fix() {
        let mut s = orders();
        s.columns[1].name = "unit price".into();
        let e = check_columns(&s).unwrap_err();
        assert!(e.to_string().contains("rename it at the source"), "{e}");
    }
}
