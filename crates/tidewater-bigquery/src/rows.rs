//! Changes as `<table>_staging` rows for insertAll: the source columns, the old key of a
//! key-changing update, the `_metadata_*` columns (those of the log, and the run that
//! appended the row), and a deterministic `insertId`.

use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use serde_json::{Map, Value as Json};
use tidewater_core::time::format_utc_micros;
use tidewater_core::{Change, ChangeKind, Error, Result, TableSchema, Value};

use crate::tables::{OLD_KEY_PREFIX, RUN_COLUMN};
use crate::types::encode;

/// The transaction a log row belongs to.
pub struct TxMeta<'a> {
    /// The sink's ordinal of the source transaction (`_metadata_tx`).
    pub ordinal: i64,
    pub position: &'a str,
    pub commit_time_us: i64,
    /// When the row was appended (`_metadata_timestamp`).
    pub appended_us: i64,
    /// The run appending (`_metadata_run`): a commit selects only its own run's staging
    /// rows. In the insertIds too, so BigQuery does not drop a row re-sent by a later run
    /// as a copy of one an earlier run appended but never committed.
    pub run: &'a str,
}

fn timestamp(us: i64) -> Json {
    // `+00` → `+00:00`, the offset form every BigQuery timestamp parser reads.
    Json::String(format!("{}:00", format_utc_micros(us)))
}

fn metadata(row: &mut Map<String, Json>, tx: &TxMeta, kind: &str, sequence: i64) {
    row.insert("_metadata_change_type".into(), kind.into());
    row.insert("_metadata_deleted".into(), (kind == "DELETE").into());
    row.insert(
        "_metadata_source_timestamp".into(),
        timestamp(tx.commit_time_us),
    );
    row.insert("_metadata_timestamp".into(), timestamp(tx.appended_us));
    row.insert("_metadata_position".into(), tx.position.into());
    row.insert("_metadata_sequence".into(), sequence.into());
    row.insert("_metadata_tx".into(), tx.ordinal.into());
    row.insert(RUN_COLUMN.into(), tx.run.into());
}

fn value(schema: &TableSchema, col: usize, v: &Value) -> Result<Json> {
    match v {
        Value::Null => Ok(Json::Null),
        Value::Text(_) => {
            let text = v.as_str().ok_or_else(|| {
                Error::source_fatal(format!("a value of {} is not valid UTF-8", schema.id))
            })?;
            let c = &schema.columns[col];
            encode(&c.ty, text)
                .map_err(|e| e.context(format_args!("column {} of {}", c.name, schema.id)))
        }
        Value::Unchanged => Err(Error::source_fatal(format!(
            "an UPDATE of {} left out the unchanged (TOASTed) value of column {}: the BigQuery \
             sink needs whole rows (a known limitation, see the README's BigQuery section): \
             replicate this table with the DuckDB sink, or leave it out of source.tables",
            schema.id, schema.columns[col].name
        ))),
    }
}

/// The log row of `change`, the `sequence`-th change of its transaction.
pub fn log_row(
    change: &Change,
    tx: &TxMeta,
    sequence: i64,
) -> Result<TableDataInsertAllRequestRows> {
    let s = &*change.table;
    if !s.has_key() && matches!(change.kind, ChangeKind::Update | ChangeKind::Delete) {
        return Err(Error::source_fatal(format!(
            "{} has no primary key: the BigQuery sink replicates only its inserts, and got an \
             {}. Add a primary key to the table (the replica is merged by key)",
            s.id,
            change.kind.as_str()
        )));
    }
    let mut row = Map::new();
    // `old` is a full old image (keyless tables, REPLICA IDENTITY FULL) or the old key.
    let full_old = change.old.as_ref().filter(|o| o.len() == s.columns.len());
    for (i, (c, v)) in s.columns.iter().zip(&change.row).enumerate() {
        // An unchanged (TOASTed) value is in a full old image, when there is one.
        let v = match (v, full_old) {
            (Value::Unchanged, Some(old)) => &old[i],
            _ => v,
        };
        row.insert(c.name.clone(), value(s, i, v)?);
    }
    if let (Some(old), true) = (&change.old, s.has_key()) {
        for (n, &k) in s.key.iter().enumerate() {
            let v = if full_old.is_some() { &old[k] } else { &old[n] };
            let name = format!("{OLD_KEY_PREFIX}{}", s.columns[k].name);
            row.insert(name, value(s, k, v)?);
        }
    }
    metadata(&mut row, tx, change.kind.as_str(), sequence);
    Ok(TableDataInsertAllRequestRows {
        insert_id: Some(format!("{}-{}-{sequence}", tx.run, tx.ordinal)),
        json: Json::Object(row),
    })
}

/// The log row recording a TRUNCATE: no values.
pub fn truncate_row(tx: &TxMeta, sequence: i64) -> TableDataInsertAllRequestRows {
    let mut row = Map::new();
    metadata(&mut row, tx, "TRUNCATE", sequence);
    row.insert("_metadata_deleted".into(), true.into());
    TableDataInsertAllRequestRows {
        insert_id: Some(format!("{}-{}-{sequence}-truncate", tx.run, tx.ordinal)),
        json: Json::Object(row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tidewater_core::{Column, ColumnType, TableId};

    fn schema(key: Vec<usize>) -> Arc<TableSchema> {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: true,
            source_type: String::new(),
        };
        Arc::new(TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![col("id", ColumnType::Int32), col("b", ColumnType::Bytes)],
            key,
        })
    }

    const TX: TxMeta = TxMeta {
        ordinal: 12,
        position: "0/AB",
        commit_time_us: 0,
        appended_us: 1_000_000,
        run: "r1",
    };

    #[test]
    fn a_key_changing_update_carries_its_old_key() {
        let change = Change {
            table: schema(vec![0]),
            kind: ChangeKind::Update,
            row: vec![Value::text("2"), Value::text("ff")],
            old: Some(vec![Value::text("1")]),
        };
        let row = log_row(&change, &TX, 3).unwrap();
        assert_eq!(row.insert_id.as_deref(), Some("r1-12-3"));
        let j = row.json;
        assert_eq!(j["id"], "2");
        assert_eq!(j["b"], "/w==");
        assert_eq!(j["_metadata_old_id"], "1");
        assert_eq!(j["_metadata_change_type"], "UPDATE");
        assert_eq!(j["_metadata_deleted"], false);
        assert_eq!(j["_metadata_tx"], 12);
        assert_eq!(j["_metadata_sequence"], 3);
        assert_eq!(j["_metadata_run"], "r1");
        assert_eq!(j["_metadata_timestamp"], "1970-01-01 00:00:01.000000+00:00");
    }

    #[test]
    fn keyless_updates_and_toasted_values_are_refused_with_the_fix() {
        let update = Change {
            table: schema(vec![]),
            kind: ChangeKind::Delete,
            row: vec![Value::text("1"), Value::Null],
            old: None,
        };
        let e = log_row(&update, &TX, 0).unwrap_err();
        assert!(e.to_string().contains("Add a primary key"), "{e}");
        let toasted = Change {
            table: schema(vec![0]),
            kind: ChangeKind::Update,
            row: vec![Value::text("1"), Value::Unchanged],
            old: None,
        };
        let e = log_row(&toasted, &TX, 0).unwrap_err();
        assert!(e.to_string().contains("whole rows"), "{e}");
        let t = truncate_row(&TX, 4);
        assert_eq!(t.json["_metadata_change_type"], "TRUNCATE");
        assert_eq!(t.insert_id.as_deref(), Some("r1-12-4-truncate"));
    }
}
