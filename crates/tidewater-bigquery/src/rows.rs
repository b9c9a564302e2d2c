//! Changes as `<table>_staging` rows for insertAll: the source columns, the old key of a
//! key-changing update, the `_metadata_*` columns (those of the log, and the run that
//! appended the row), and a deterministic `insertId`.

use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use serde_json::{Map, Value as Json};
use tidewater_core::time::format_utc_micros;
use tidewater_core::{Change, ChangeKind, Error, Result, TableSchema, Value};

use crate::tables::{BEFORE, OLD_KEY_PREFIX, RUN_COLUMN, UNCHANGED_COLUMN};
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
            "an UPDATE of {} that changed the primary key left out the unchanged (TOASTed) \
             value of column {}: the BigQuery sink keeps an unchanged value only under the \
             same key",
            schema.id, schema.columns[col].name
        ))
        .with_fix(format!(
            "ALTER TABLE {} REPLICA IDENTITY FULL at the source (updates then carry every \
             value), and take a new snapshot of the table",
            schema.id
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
    let full_image = change.kind != ChangeKind::Update || change.old.is_some();
    if !s.has_key() && !full_image {
        return Err(Error::source_fatal(format!(
            "an UPDATE of {}, which has no primary key, came without its old row: the BigQuery \
             sink replaces one copy of the old row by the new one",
            s.id
        ))
        .with_fix(format!(
            "ALTER TABLE {} REPLICA IDENTITY FULL (PostgreSQL) or binlog_row_image = FULL \
             (MySQL/MariaDB), or add a primary key",
            s.id
        )));
    }
    let mut row = Map::new();
    // `old` is a full old image (keyless tables, REPLICA IDENTITY FULL) or the old key.
    let full_old = change.old.as_ref().filter(|o| o.len() == s.columns.len());
    let mut unchanged = Vec::new();
    for (i, (c, v)) in s.columns.iter().zip(&change.row).enumerate() {
        // An unchanged (TOASTed) value is in a full old image, when there is one; else the
        // commit takes it from the key's previous image (`merge`), when the key is the same.
        let v = match (v, full_old) {
            (Value::Unchanged, Some(old)) => &old[i],
            (Value::Unchanged, None) if change.old.is_none() => {
                unchanged.push(Json::String(c.name.clone()));
                &Value::Null
            }
            _ => v,
        };
        row.insert(c.name.clone(), value(s, i, v)?);
    }
    if !unchanged.is_empty() {
        row.insert(UNCHANGED_COLUMN.into(), Json::Array(unchanged));
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

/// The staging row of the old image an update of a keyless table replaced (its full old
/// image, REPLICA IDENTITY FULL): the commit removes one copy of it. `BEFORE`, deleted; never
/// copied to the log, where the update is one row. `None` for every other change.
pub fn before_row(
    change: &Change,
    tx: &TxMeta,
    sequence: i64,
) -> Result<Option<TableDataInsertAllRequestRows>> {
    let s = &*change.table;
    let (ChangeKind::Update, false, Some(old)) = (change.kind, s.has_key(), &change.old) else {
        return Ok(None);
    };
    let mut row = Map::new();
    for (i, (c, v)) in s.columns.iter().zip(old).enumerate() {
        row.insert(c.name.clone(), value(s, i, v)?);
    }
    metadata(&mut row, tx, BEFORE, sequence);
    row.insert("_metadata_deleted".into(), true.into());
    Ok(Some(TableDataInsertAllRequestRows {
        insert_id: Some(format!("{}-{}-{sequence}-before", tx.run, tx.ordinal)),
        json: Json::Object(row),
    }))
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
    fn keyless_updates_carry_their_old_image_and_toasted_values_are_marked() {
        let mut update = Change {
            table: schema(vec![]),
            kind: ChangeKind::Update,
            row: vec![Value::text("1"), Value::Null],
            old: None,
        };
        let e = log_row(&update, &TX, 0).unwrap_err();
        assert!(e.fix().unwrap().contains("REPLICA IDENTITY FULL"), "{e:?}");
        update.old = Some(vec![Value::text("0"), Value::text("ff")]);
        let before = before_row(&update, &TX, 5).unwrap().unwrap();
        assert_eq!(before.insert_id.as_deref(), Some("r1-12-5-before"));
        assert_eq!(before.json["id"], "0");
        assert_eq!(before.json["_metadata_change_type"], "BEFORE");
        assert_eq!(before.json["_metadata_deleted"], true);
        assert_eq!(log_row(&update, &TX, 5).unwrap().json["id"], "1");
        let mut toasted = Change {
            table: schema(vec![0]),
            kind: ChangeKind::Update,
            row: vec![Value::text("1"), Value::Unchanged],
            old: None,
        };
        let row = log_row(&toasted, &TX, 0).unwrap().json;
        assert_eq!(row["b"], Json::Null);
        assert_eq!(row[UNCHANGED_COLUMN], serde_json::json!(["b"]));
        toasted.old = Some(vec![Value::text("0")]);
        let e = log_row(&toasted, &TX, 0).unwrap_err();
        assert!(e.to_string().contains("changed the primary key"), "{e}");
        assert!(e.fix().unwrap().contains("REPLICA IDENTITY FULL"), "{e:?}");
        let t = truncate_row(&TX, 4);
        assert_eq!(t.json["_metadata_change_type"], "TRUNCATE");
        assert_eq!(t.insert_id.as_deref(), Some("r1-12-4-truncate"));
    }
}
