//! The BigQuery side of a rig: a throwaway emulator and SQL against it through the sink's own
//! REST client.
#![allow(dead_code)]

use serde_json::Value as Json;
use tidewater_bigquery::{sql_literal, table_names, BqClient, Connection, STATE_TABLE};
use tidewater_core::TableId;
use tidewater_harness::BqEmulator;

pub const DATASET: &str = "replica";
/// Short, so tests see merges quickly; the default (1000) is what users get.
pub const MERGE_INTERVAL_MS: u64 = 200;

pub struct BqTarget {
    pub emu: BqEmulator,
    client: BqClient,
    rt: tokio::runtime::Runtime,
    pub merge_interval_ms: u64,
}

impl BqTarget {
    pub fn start() -> BqTarget {
        let emu = BqEmulator::start().expect("start the BigQuery emulator");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connection = Connection {
            project: emu.project().to_string(),
            dataset: DATASET.to_string(),
            location: None,
            credentials: None,
            endpoint: Some(emu.endpoint()),
        };
        let client = rt.block_on(BqClient::connect(&connection)).expect("client");
        BqTarget {
            emu,
            client,
            rt,
            merge_interval_ms: MERGE_INTERVAL_MS,
        }
    }

    /// The `[sink]` section of a config writing to this emulator.
    pub fn sink_toml(&self) -> String {
        format!(
            "[sink]\ntype = \"bigquery\"\nproject = \"{}\"\ndataset = \"{DATASET}\"\nendpoint = \"{}\"\nmerge_interval_ms = {}\n",
            self.emu.project(),
            self.emu.endpoint(),
            self.merge_interval_ms
        )
    }

    pub fn try_rows(&self, sql: &str) -> Result<Vec<Vec<Json>>, String> {
        self.rt
            .block_on(self.client.query("test query", sql, None))
            .map_err(|e| e.to_string())
    }

    pub fn rows(&self, sql: &str) -> Vec<Vec<Json>> {
        self.try_rows(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Each row as text cells: strings as they are, NULL as the empty string.
    pub fn text_rows(&self, sql: &str) -> Vec<Vec<String>> {
        let rows = self.rows(sql);
        rows.iter()
            .map(|r| r.iter().map(cell_text).collect())
            .collect()
    }

    pub fn count(&self, sql: &str) -> i64 {
        let rows = self.text_rows(sql);
        rows[0][0]
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: {rows:?}"))
    }

    /// `project.dataset.<schema>_<table>` (or its `_log`), quoted.
    pub fn replica(&self, schema: &str, table: &str) -> String {
        self.client
            .qualified(&table_names(&TableId::new(schema, table)).replica)
    }

    pub fn log(&self, schema: &str, table: &str) -> String {
        self.client
            .qualified(&table_names(&TableId::new(schema, table)).log)
    }

    /// The committed (position, transaction ordinal), once the state row exists.
    pub fn state(&self) -> Option<(String, i64)> {
        let sql = format!(
            "SELECT position, tx_ordinal FROM {} WHERE name = {}",
            self.client.qualified(STATE_TABLE),
            sql_literal("default")
        );
        let rows = self.try_rows(&sql).ok()?;
        let row = rows.first()?;
        Some((cell_text(&row[0]), cell_text(&row[1]).parse().ok()?))
    }

    /// `_log` rows of a table that more than one row claims the place of.
    pub fn duplicated_log_rows(&self, schema: &str, table: &str) -> Vec<Vec<String>> {
        self.text_rows(&format!(
            "SELECT _metadata_tx, _metadata_sequence, COUNT(*) AS n FROM {} \
             GROUP BY _metadata_tx, _metadata_sequence HAVING COUNT(*) > 1",
            self.log(schema, table)
        ))
    }
}

pub fn cell_text(cell: &Json) -> String {
    match cell {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Makes source and replica text comparable: decimals without trailing zeros (the emulator
/// keeps NUMERIC as DECIMAL(38,9)), PostgreSQL's `t`/`f` as `true`/`false`.
pub fn normalise(s: &str) -> String {
    match s {
        "t" => return "true".into(),
        "f" => return "false".into(),
        _ => {}
    }
    let numeric = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        && s.matches('.').count() == 1;
    if numeric {
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s.to_string()
}
