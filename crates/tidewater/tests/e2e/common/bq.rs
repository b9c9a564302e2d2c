//! The BigQuery side of a rig: a throwaway emulator, and SQL against it through its REST API
//! (`jobs.query`) by plain HTTP, with table names written out by the tests: no code of the
//! sink (client, name mapping, state table access) sits between a test and what it checks.
//!
//! Strict mode, always: the sink talks to the emulator through the harness's `StrictProxy`,
//! which refuses DML on tables that received streamed rows (as BigQuery does for rows in its
//! streaming buffer) and records what went through insertAll and load jobs. A target fails
//! its test when dropped if the proxy refused any statement.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value as Json};
use tidewater_harness::{wait_until, BqEmulator, StrictLog, StrictProxy};

use super::http::http;

pub const DATASET: &str = "replica";
/// Short, so tests see merges quickly; the default (1000) is what users get.
pub const MERGE_INTERVAL_MS: u64 = 200;
/// Short, so a test's copy takes a few commits; the default (60000) is what users get.
pub const COPY_COMMIT_INTERVAL_MS: u64 = 1000;

pub struct BqTarget {
    pub emu: BqEmulator,
    /// What the sink's `endpoint` points at.
    pub strict: StrictProxy,
    pub merge_interval_ms: u64,
}

impl BqTarget {
    pub fn start() -> BqTarget {
        let emu = BqEmulator::start().expect("start the BigQuery emulator");
        let upstream = emu.endpoint().trim_start_matches("http://").to_string();
        let strict = StrictProxy::start(&upstream).expect("start the strict proxy");
        BqTarget {
            emu,
            strict,
            merge_interval_ms: MERGE_INTERVAL_MS,
        }
    }

    /// What the sink sent so far: streamed rows, load jobs, queries, refused DML.
    pub fn strict_log(&self) -> StrictLog {
        self.strict.log()
    }

    /// The `[sink]` section of a config writing to this emulator.
    pub fn sink_toml(&self) -> String {
        format!(
            "[sink]\ntype = \"bigquery\"\nproject = \"{}\"\ndataset = \"{DATASET}\"\nendpoint = \"{}\"\nmerge_interval_ms = {}\ncopy_commit_interval_ms = {COPY_COMMIT_INTERVAL_MS}\n",
            self.emu.project(),
            self.strict.endpoint(),
            self.merge_interval_ms
        )
    }

    /// `name` (as the test writes it, e.g. `public_items_log`) qualified and quoted.
    pub fn table(&self, name: &str) -> String {
        format!("`{}.{DATASET}.{name}`", self.emu.project())
    }

    /// The rows of `sql`, each a list of the REST API's cells (`f[].v`).
    pub fn try_rows(&self, sql: &str) -> Result<Vec<Vec<Json>>, String> {
        let addr = self
            .emu
            .endpoint()
            .trim_start_matches("http://")
            .to_string();
        let project = self.emu.project();
        let body = json!({"query": sql, "useLegacySql": false, "useQueryCache": false, "timeoutMs": 60000});
        let answer = http(
            &addr,
            "POST",
            &format!("/bigquery/v2/projects/{project}/queries"),
            Some(&body.to_string()),
        )?;
        let mut v: Json = serde_json::from_str(&answer.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e}): {}", answer.status, answer.body))?;
        // Failed queries answer 200 with `errors` too.
        if answer.status != 200 || v["errors"].as_array().is_some_and(|e| !e.is_empty()) {
            return Err(format!("HTTP {}: {}", answer.status, answer.body));
        }
        // A query that outlasts the call: poll its results.
        if v["jobComplete"] == json!(false) {
            let job = v["jobReference"]["jobId"]
                .as_str()
                .ok_or("no job id")?
                .to_string();
            let path = format!("/bigquery/v2/projects/{project}/queries/{job}?timeoutMs=10000");
            wait_until(Duration::from_secs(120), "the query job", || {
                http(&addr, "GET", &path, None).is_ok_and(|a| {
                    v = serde_json::from_str(&a.body).unwrap_or_default();
                    v["jobComplete"] == json!(true)
                })
            })
            .map_err(|e| e.to_string())?;
        }
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .iter()
            .map(|r| {
                r["f"]
                    .as_array()
                    .map(|cells| cells.iter().map(|c| c["v"].clone()).collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Runs a DML statement through the strict proxy, as a user changing the replica by hand
    /// would: strict mode refuses it (and the test fails) if its table received streamed rows.
    pub fn dml_by_hand(&self, sql: &str) {
        let addr = self
            .strict
            .endpoint()
            .trim_start_matches("http://")
            .to_string();
        let body = json!({"query": sql, "useLegacySql": false, "timeoutMs": 60000});
        let path = format!("/bigquery/v2/projects/{}/queries", self.emu.project());
        let answer = http(&addr, "POST", &path, Some(&body.to_string()))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let v: Json = serde_json::from_str(&answer.body).unwrap_or_default();
        let failed = v["errors"].as_array().is_some_and(|e| !e.is_empty());
        assert!(
            answer.status == 200 && !failed && v["jobComplete"] == json!(true),
            "{sql}: HTTP {}: {}",
            answer.status,
            answer.body
        );
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

    /// The committed (position, transaction ordinal) in the sink's state table, once it
    /// exists.
    pub fn state(&self) -> Option<(String, i64)> {
        let sql = format!(
            "SELECT position, tx_ordinal FROM {} WHERE name = 'default'",
            self.table("_tidewater_state")
        );
        let rows = self.try_rows(&sql).ok()?;
        let row = rows.first()?;
        Some((cell_text(&row[0]), cell_text(&row[1]).parse().ok()?))
    }

    /// Every table of the committed copy progress (`_tidewater_copies`) is consistent, and
    /// there is at least one.
    pub fn copies_consistent(&self) -> bool {
        let sql = format!("SELECT progress FROM {}", self.table("_tidewater_copies"));
        let Ok(rows) = self.try_rows(&sql) else {
            return false;
        };
        let consistent = |row: &Vec<Json>| {
            serde_json::from_str::<Json>(&cell_text(&row[0])).is_ok_and(|p| p["consistent"] == true)
        };
        !rows.is_empty() && rows.iter().all(consistent)
    }

    /// Rows of the change log `log` (e.g. `public_items_log`) that more than one row claims
    /// the place of.
    pub fn duplicated_log_rows(&self, log: &str) -> Vec<Vec<String>> {
        self.text_rows(&format!(
            "SELECT _metadata_tx, _metadata_sequence, COUNT(*) AS n FROM {} \
             GROUP BY _metadata_tx, _metadata_sequence HAVING COUNT(*) > 1",
            self.table(log)
        ))
    }
}

impl Drop for BqTarget {
    fn drop(&mut self) {
        let refused = self.strict.log().violations;
        if !std::thread::panicking() {
            assert!(
                refused.is_empty(),
                "strict mode: DML on tables with streamed rows (refused, as BigQuery would): \
                 {refused:#?}"
            );
        }
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
