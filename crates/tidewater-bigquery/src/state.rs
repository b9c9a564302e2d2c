//! `_tidewater_state`: per pipeline the committed source position and transaction ordinal.
//! The commit script (`merge`) writes it in the same transaction as the replicas.

use serde_json::Value as Json;
use tidewater_core::{Error, Result};

use crate::client::BqClient;
use crate::merge::literal;
use crate::tables::STATE_TABLE;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    pub position: Option<String>,
    /// Ordinal of the last applied source transaction (0: none yet).
    pub tx_ordinal: i64,
}

fn int(cell: &Json, what: &str) -> Result<i64> {
    match cell {
        Json::String(s) => s.parse().ok(),
        Json::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| Error::sink(format!("{what}: not an integer: {cell}")))
}

pub async fn read(client: &BqClient, pipeline: &str) -> Result<Option<StoredState>> {
    let what = format!("reading {STATE_TABLE}");
    let sql = format!(
        "SELECT position, tx_ordinal FROM {} WHERE name = {}",
        client.qualified(STATE_TABLE),
        literal(pipeline)
    );
    let rows = client.query(&what, &sql, None).await?;
    match rows.as_slice() {
        [] => Ok(None),
        [row] => Ok(Some(StoredState {
            position: row.first().and_then(Json::as_str).map(str::to_string),
            tx_ordinal: int(row.get(1).unwrap_or(&Json::Null), &what)?,
        })),
        _ => Err(Error::sink(format!(
            "{what}: pipeline {pipeline:?} has {} rows; delete all but one",
            rows.len()
        ))),
    }
}

/// The row of a new pipeline: no position, ordinal 0.
pub async fn insert(client: &BqClient, pipeline: &str, source_type: &str) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (name, source_type, tx_ordinal) VALUES ({}, {}, 0)",
        client.qualified(STATE_TABLE),
        literal(pipeline),
        literal(source_type)
    );
    client
        .query(&format!("writing {STATE_TABLE}"), &sql, None)
        .await
        .map(drop)
}
