//! The BigQuery emulator the BigQuery scenarios replicate into (PyPI `bqemulator`, started by
//! `tidewater_harness::BqEmulator`), read and loaded through its REST API as a user's client
//! would: `jobs.query` for reads, a multipart upload for the baseline's load job. No code of
//! the sink stands between a scenario and what it measures.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tidewater_harness::BqEmulator;

use crate::error::{BenchError, Result};
use crate::http;
use crate::runner::{wait_for, Sink};

/// How long one query may run (the emulator answers `jobComplete: false` past `timeoutMs`).
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an upload may take: the emulator runs the load job inside its last request.
const LOAD_TIMEOUT: Duration = Duration::from_secs(900);
const MULTIPART_BOUNDARY: &str = "tidewater_bench_boundary";

pub struct Emulator {
    emu: BqEmulator,
    addr: SocketAddr,
}

impl Emulator {
    pub fn start() -> Result<Emulator> {
        let emu = BqEmulator::start()?;
        let addr = ([127, 0, 0, 1], emu.rest_port()).into();
        Ok(Emulator { emu, addr })
    }

    /// `bqemulator <version>`, as its `/healthz` reports it.
    pub fn version(&self) -> String {
        let answer = http::get(self.addr, "/healthz").ok();
        let body: Json = answer
            .and_then(|a| serde_json::from_str(&a.body).ok())
            .unwrap_or_default();
        format!(
            "bqemulator {}",
            body["version"].as_str().unwrap_or("unknown")
        )
    }

    /// The `[sink]` of a tidewater replicating into `dataset` (created by the sink).
    pub fn sink(&self, dataset: &str) -> Sink {
        Sink::BigQuery {
            endpoint: self.emu.endpoint(),
            project: self.emu.project().into(),
            dataset: dataset.into(),
        }
    }

    /// `table` of `dataset`, qualified and quoted for a query.
    pub fn table(&self, dataset: &str, table: &str) -> String {
        format!("`{}.{dataset}.{table}`", self.emu.project())
    }

    /// The rows of `sql` (`jobs.query`), each a list of the REST API's cells (`f[].v`: strings,
    /// numbers as text, `null`).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Json>>> {
        let project = self.emu.project();
        let body = json!({
            "query": sql,
            "useLegacySql": false,
            "useQueryCache": false,
            "timeoutMs": QUERY_TIMEOUT.as_millis() as u64,
        });
        let path = format!("/bigquery/v2/projects/{project}/queries");
        let answer = http::post(
            self.addr,
            &path,
            "application/json",
            body.to_string().as_bytes(),
            QUERY_TIMEOUT + Duration::from_secs(30),
        )?;
        let mut v = answer_json(answer, sql)?;
        if v["jobComplete"] == json!(false) {
            let job = v["jobReference"]["jobId"].as_str().unwrap_or_default();
            let poll = format!("{path}/{job}?timeoutMs=10000");
            wait_for(QUERY_TIMEOUT, &format!("the query job {sql:?}"), || {
                v = answer_json(http::get(self.addr, &poll)?, sql)?;
                Ok(v["jobComplete"] == json!(true))
            })?;
        }
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .iter()
            .map(|r| {
                let cells = r["f"].as_array().cloned().unwrap_or_default();
                cells.into_iter().map(|mut c| c["v"].take()).collect()
            })
            .collect())
    }

    /// `SELECT COUNT(*)` of a table named by [`table`](Self::table).
    pub fn count(&self, table: &str) -> Result<u64> {
        let rows = self.query(&format!("SELECT COUNT(*) FROM {table}"))?;
        rows.first()
            .and_then(|r| r.first())
            .and_then(cell_u64)
            .ok_or_else(|| BenchError::Other(format!("no count of {table}: {rows:?}")))
    }

    /// `datasets.insert`.
    pub fn create_dataset(&self, dataset: &str) -> Result<()> {
        let project = self.emu.project();
        let body = json!({"datasetReference": {"projectId": project, "datasetId": dataset}});
        let answer = http::post_json(
            self.addr,
            &format!("/bigquery/v2/projects/{project}/datasets"),
            &body.to_string(),
        )?;
        answer_json(answer, &format!("creating dataset {dataset}")).map(drop)
    }

    /// One load job of `csv` (no header) into a new table `dataset.table` with `schema`
    /// (name, BigQuery type), uploaded in one multipart request (`uploadType=multipart`). The
    /// upload starts with a header line (`skipLeadingRows: 1`): the emulator reads every CSV
    /// load's first line as a header, whatever the job says.
    pub fn load_csv(
        &self,
        dataset: &str,
        table: &str,
        schema: &[(&str, &str)],
        csv: &[u8],
    ) -> Result<()> {
        let project = self.emu.project();
        let fields: Vec<Json> = schema
            .iter()
            .map(|(name, kind)| json!({"name": name, "type": kind}))
            .collect();
        let job = json!({"configuration": {"load": {
            "destinationTable": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields},
            "sourceFormat": "CSV",
            "skipLeadingRows": 1,
            "createDisposition": "CREATE_IF_NEEDED",
            "writeDisposition": "WRITE_APPEND",
        }}});
        let header: Vec<&str> = schema.iter().map(|(name, _)| *name).collect();
        let mut body = format!(
            "--{MULTIPART_BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{job}\r\n\
             --{MULTIPART_BOUNDARY}\r\nContent-Type: text/csv\r\n\r\n{}\n",
            header.join(",")
        )
        .into_bytes();
        body.extend_from_slice(csv);
        body.extend_from_slice(format!("\r\n--{MULTIPART_BOUNDARY}--\r\n").as_bytes());
        let answer = http::post(
            self.addr,
            &format!("/upload/bigquery/v2/projects/{project}/jobs?uploadType=multipart"),
            &format!("multipart/related; boundary={MULTIPART_BOUNDARY}"),
            &body,
            LOAD_TIMEOUT,
        )?;
        let job = answer_json(answer, &format!("the load job into {dataset}.{table}"))?;
        match &job["status"] {
            s if s["state"] != json!("DONE") || !s["errorResult"].is_null() => {
                Err(BenchError::Other(format!(
                    "the load job into {dataset}.{table} did not succeed: {s}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The JSON of a REST answer; an error for a status other than 200 or a non-empty `errors`
/// (a failed query can answer 200).
fn answer_json(answer: http::Response, what: &str) -> Result<Json> {
    let v: Json = serde_json::from_str(&answer.body).map_err(|e| {
        BenchError::Other(format!(
            "BigQuery emulator, {what}: HTTP {} not JSON ({e}): {}",
            answer.status, answer.body
        ))
    })?;
    let failed = v["errors"].as_array().is_some_and(|e| !e.is_empty());
    if answer.status != 200 || failed {
        return Err(BenchError::Other(format!(
            "BigQuery emulator, {what}: HTTP {}: {}",
            answer.status, answer.body
        )));
    }
    Ok(v)
}

/// A REST cell holding an integer (INT64 arrives as a string).
pub fn cell_u64(cell: &Json) -> Option<u64> {
    cell.as_u64().or_else(|| cell.as_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_cells_arrive_as_text_or_numbers() {
        assert_eq!(cell_u64(&json!("42")), Some(42));
        assert_eq!(cell_u64(&json!(7)), Some(7));
        assert_eq!(cell_u64(&Json::Null), None);
        assert_eq!(cell_u64(&json!("x")), None);
    }
}
