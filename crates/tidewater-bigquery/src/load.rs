//! Snapshot rows into the staging tables through load jobs, never insertAll: load jobs are
//! free, and they take a large table in a few big files instead of 500-row requests.
//!
//! Each staging table being copied has an open Parquet file (`loadfile`) that its rows are
//! written to, one row group at a time; each finished row group goes at once to a resumable
//! upload (`/upload/bigquery/v2/projects/<p>/jobs?uploadType=resumable`), in pieces that are
//! multiples of 256 KiB, so a file of any size (up to [`JOB_BYTES`]) takes the memory of a
//! few row groups. When the file is finished (the batch commits, the file is full, or more
//! than [`MAX_OPEN`] tables are being copied at once) its last bytes complete the upload,
//! BigQuery runs the load job, and the commit waits for the job to be done.
//!
//! Exactly once, with the sink's argument unchanged (`sink`): a loaded row is a staging row
//! like a streamed one, tagged with the run, the transaction ordinal and the sequence, and
//! the commit transaction copies and MERGEs it only if its run is the committing one.
//!
//! - A load job is atomic: all of its file's rows or none.
//! - The job runs only when the upload's last byte arrives, and the upload of a file is
//!   never started again in the same run: a failed upload fails the batch, the sink rolls back
//!   (new run), and whatever an abandoned upload or job did is never selected.
//! - A piece whose answer was lost is sent again after asking the upload how much it
//!   received (`Content-Range: bytes */*`); the final piece sent again returns the same job.
//! - Each job has a deterministic id (dataset, staging table, run, number): a retried
//!   request cannot start a second job with the same rows (BigQuery answers 409, and the
//!   sink then waits for the existing job). The emulator ignores client job ids; it runs the
//!   load inside the final request and forgets the upload, so a retry there fails the batch.
//!
//! Real BigQuery allows 1,500 load jobs per table per day; files of up to [`JOB_BYTES`] keep a
//! copy of a table far below that.

use std::collections::VecDeque;
use std::sync::Arc;

use gcp_bigquery_client::error::{BQError, ResponseError};
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use serde_json::{json, Map, Value as Json};
use tidewater_core::{Error, ErrorKind, Result};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::BqClient;
use crate::errors::{from_client, from_protos, with_retry};
use crate::loadfile::ParquetFile;

/// Buffered values per row group.
const ROW_GROUP_BYTES: usize = 4 << 20;
/// Parquet bytes per load job (BigQuery takes up to 15 TB per job; the emulator 1 GiB).
pub const JOB_BYTES: usize = 512 << 20;
/// Tables with an open file; one more finishes the oldest.
pub const MAX_OPEN: usize = 4;
/// Finished files whose upload or job is still running before a new one waits.
const MAX_FINISHING: usize = 2;
/// Resumable uploads take pieces in multiples of this (all but the last).
const UPLOAD_QUANTUM: usize = 256 << 10;
/// Row groups waiting for their upload.
const QUEUED_GROUPS: usize = 2;

enum Piece {
    Bytes(Vec<u8>),
    /// The file is complete: the upload ends and the job runs. An upload whose sender goes
    /// away without this is abandoned (no job).
    Finish,
}

/// A staging table's open file, and the upload its bytes go to.
struct OpenFile {
    staging: String,
    file: ParquetFile,
    bytes: usize,
    pieces: mpsc::Sender<Piece>,
    upload: JoinHandle<Result<()>>,
}

/// The load jobs of the open batch.
pub struct Loads {
    rt: Handle,
    client: Arc<BqClient>,
    open: Vec<OpenFile>,
    finishing: VecDeque<JoinHandle<Result<()>>>,
    /// Jobs started by this process: numbers them.
    started: u64,
}

impl Loads {
    pub fn new(rt: Handle, client: Arc<BqClient>) -> Loads {
        Loads {
            rt,
            client,
            open: Vec::new(),
            finishing: VecDeque::new(),
            started: 0,
        }
    }

    /// Writes rows (insertAll's JSON objects) to `staging`, whose columns are `fields`, for
    /// the run `run`. A table's columns must not change while it has an open file: the sink
    /// calls [`Loads::complete`] before any DDL on a staging table.
    pub fn add(
        &mut self,
        run: &str,
        staging: &str,
        fields: &[TableFieldSchema],
        rows: &[Map<String, Json>],
    ) -> Result<()> {
        let mut i = match self.open.iter().position(|o| o.staging == staging) {
            Some(i) => i,
            None => self.start(run, staging, fields)?,
        };
        for row in rows {
            self.open[i].file.push(row)?;
            if self.open[i].file.buffered_bytes() >= ROW_GROUP_BYTES {
                let bytes = self.open[i].file.flush()?;
                self.send(i, bytes)?;
                if self.open[i].bytes >= JOB_BYTES {
                    self.finish(i)?;
                    i = self.start(run, staging, fields)?;
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, run: &str, staging: &str, fields: &[TableFieldSchema]) -> Result<usize> {
        if self.open.len() >= MAX_OPEN {
            self.finish(0)?;
        }
        self.started += 1;
        let job_id = job_id(&self.client.dataset, staging, run, self.started);
        let (pieces, received) = mpsc::channel(QUEUED_GROUPS);
        let (client, table) = (self.client.clone(), staging.to_string());
        let upload = self
            .rt
            .spawn(async move { upload(&client, &table, &job_id, received).await });
        self.open.push(OpenFile {
            staging: staging.to_string(),
            file: ParquetFile::new(fields)?,
            bytes: 0,
            pieces,
            upload,
        });
        Ok(self.open.len() - 1)
    }

    fn send(&mut self, i: usize, bytes: Vec<u8>) -> Result<()> {
        let o = &mut self.open[i];
        o.bytes += bytes.len();
        if self
            .rt
            .block_on(o.pieces.send(Piece::Bytes(bytes)))
            .is_err()
        {
            // The upload ended early: its error says why.
            let o = self.open.remove(i);
            return self
                .join(o.upload)
                .and_then(|()| Err(ended_early(&o.staging)));
        }
        Ok(())
    }

    /// Completes the open file `i`: its job runs in the background.
    fn finish(&mut self, i: usize) -> Result<()> {
        let o = self.open.remove(i);
        let rest = o.file.finish()?;
        let sent = self.rt.block_on(async {
            o.pieces.send(Piece::Bytes(rest)).await?;
            o.pieces.send(Piece::Finish).await
        });
        if sent.is_err() {
            // The upload ended early: its error says why.
            return self
                .join(o.upload)
                .and_then(|()| Err(ended_early(&o.staging)));
        }
        while self.finishing.len() >= MAX_FINISHING {
            let oldest = self.finishing.pop_front().expect("not empty");
            self.join(oldest)?;
        }
        self.finishing.push_back(o.upload);
        Ok(())
    }

    fn join(&self, task: JoinHandle<Result<()>>) -> Result<()> {
        self.rt
            .block_on(task)
            .map_err(|e| Error::sink(format!("loading into a staging table: {e}")))?
    }

    /// Completes every open file and waits for every job: their rows are in staging.
    pub fn complete(&mut self) -> Result<()> {
        while !self.open.is_empty() {
            self.finish(0)?;
        }
        while let Some(task) = self.finishing.pop_front() {
            self.join(task)?;
        }
        Ok(())
    }

    /// Drops the batch's files and stops their uploads: no job of theirs runs (a job already
    /// running loads rows of a run that never commits).
    pub fn abandon(&mut self) {
        for o in self.open.drain(..) {
            o.upload.abort();
        }
        for task in self.finishing.drain(..) {
            task.abort();
        }
    }
}

fn ended_early(staging: &str) -> Error {
    Error::sink(format!("loading into {staging}: the upload ended early"))
}

/// `tidewater_<dataset>_<table>_<run>_<n>`: BigQuery job ids take letters, digits, `_` and
/// `-`, up to 1,024 characters.
fn job_id(dataset: &str, staging: &str, run: &str, n: u64) -> String {
    let id = format!("tidewater_{dataset}_{staging}_{run}_{n}");
    let clean = |c: char| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        }
    };
    id.chars().map(clean).take(1024).collect()
}

/// Runs one load job: starts a resumable upload, sends the pieces as they come, and waits
/// for the job.
async fn upload(
    client: &BqClient,
    staging: &str,
    job_id: &str,
    mut pieces: mpsc::Receiver<Piece>,
) -> Result<()> {
    let what = format!("loading into {}.{staging}", client.dataset);
    let session = start_upload(client, &what, staging, job_id).await?;
    let (mut pending, mut offset) = (Vec::new(), 0usize);
    loop {
        match pieces.recv().await {
            Some(Piece::Bytes(bytes)) => {
                pending.extend_from_slice(&bytes);
                let whole = pending.len() / UPLOAD_QUANTUM * UPLOAD_QUANTUM;
                if whole > 0 {
                    put(client, &what, &session, &pending[..whole], offset, None).await?;
                    pending.drain(..whole);
                    offset += whole;
                }
            }
            Some(Piece::Finish) => break,
            None => return Err(Error::sink(format!("{what}: abandoned"))),
        }
    }
    let total = offset + pending.len();
    let answer = put(client, &what, &session, &pending, offset, Some(total)).await?;
    let job = answer.unwrap_or_default();
    let id = job["jobReference"]["jobId"].as_str().unwrap_or(job_id);
    let mut status = job["status"].clone();
    while status["state"] != "DONE" {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        status = client.job_status(&what, id).await?;
    }
    // A done job failed if it has an `errorResult`; `errors` then has the details.
    if !status["errorResult"].is_null() {
        let errors: Vec<_> = [&status["errorResult"]]
            .into_iter()
            .chain(status["errors"].as_array().into_iter().flatten())
            .filter_map(|e| serde_json::from_value(e.clone()).ok())
            .collect();
        return Err(from_protos(&what, &errors));
    }
    tracing::debug!(table = staging, bytes = total, job = id, "load job done");
    Ok(())
}

/// An error answer of the upload host, classified like the client library's.
async fn refused(what: &str, answer: reqwest::Response) -> Error {
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap_or_default();
    match serde_json::from_str::<ResponseError>(&body) {
        Ok(error) => from_client(what, BQError::ResponseError { error }),
        Err(_) => {
            let kind = if status == 429 || status >= 500 {
                ErrorKind::SinkRetryable
            } else {
                ErrorKind::Sink
            };
            let shown: String = body.chars().take(200).collect();
            Error::new(kind, format!("{what}: HTTP {status}: {shown}"))
        }
    }
}

async fn token(client: &BqClient, what: &str) -> Result<String> {
    client
        .auth
        .access_token()
        .await
        .map_err(|e| from_client(what, e))
}

fn transport(what: &str, e: reqwest::Error) -> Error {
    from_client(what, BQError::RequestError(e))
}

/// Starts the resumable upload of a load job into `staging`; returns its URL.
async fn start_upload(
    client: &BqClient,
    what: &str,
    staging: &str,
    job_id: &str,
) -> Result<String> {
    let (project, dataset) = (&client.project, &client.dataset);
    let mut reference = json!({"projectId": project, "jobId": job_id});
    if let Some(l) = &client.location {
        reference["location"] = json!(l);
    }
    let job = json!({
        "jobReference": reference,
        "configuration": {"load": {
            "destinationTable": {"projectId": project, "datasetId": dataset, "tableId": staging},
            "sourceFormat": "PARQUET",
            "parquetOptions": {"enableListInference": true},
            "writeDisposition": "WRITE_APPEND",
            "createDisposition": "CREATE_NEVER",
        }},
    });
    let url = format!(
        "{}/upload/bigquery/v2/projects/{project}/jobs?uploadType=resumable",
        client.api_root
    );
    with_retry(what, |_| async {
        let answer = client
            .http
            .post(&url)
            .bearer_auth(token(client, what).await?)
            .header("X-Upload-Content-Type", "application/octet-stream")
            .json(&job)
            .send()
            .await
            .map_err(|e| transport(what, e))?;
        if !answer.status().is_success() {
            return Err(refused(what, answer).await);
        }
        let location = answer.headers().get(reqwest::header::LOCATION);
        let location = location.and_then(|l| l.to_str().ok());
        location
            .map(str::to_string)
            .ok_or_else(|| Error::sink(format!("{what}: the upload answer has no Location")))
    })
    .await
}

/// How many bytes the upload at `session` holds (`Content-Range: bytes */*`).
async fn received(client: &BqClient, what: &str, session: &str) -> Result<usize> {
    let answer = client
        .http
        .put(session)
        .bearer_auth(token(client, what).await?)
        .header(reqwest::header::CONTENT_RANGE, "bytes */*")
        .send()
        .await
        .map_err(|e| transport(what, e))?;
    if answer.status().as_u16() != 308 {
        return Err(refused(what, answer).await);
    }
    // `Range: bytes=0-<last>`; none when nothing arrived yet.
    let range = answer.headers().get(reqwest::header::RANGE);
    let last = range
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.rsplit('-').next())
        .and_then(|n| n.parse::<usize>().ok());
    Ok(last.map_or(0, |l| l + 1))
}

/// Sends `bytes` at `offset` of the upload; `total` on the last piece. Returns the job the
/// last piece answers with. A retry first asks how much arrived and sends only the rest.
async fn put(
    client: &BqClient,
    what: &str,
    session: &str,
    bytes: &[u8],
    offset: usize,
    total: Option<usize>,
) -> Result<Option<Json>> {
    with_retry(what, |attempt| async move {
        let mut from = offset;
        if attempt > 0 {
            from = received(client, what, session).await?;
            if from < offset || from > offset + bytes.len() {
                return Err(Error::sink(format!(
                    "{what}: the upload holds {from} bytes, {offset} were sent before this piece"
                )));
            }
        }
        let rest = &bytes[from - offset..];
        let end = match total {
            Some(t) => t.to_string(),
            None => "*".into(),
        };
        let range = if rest.is_empty() {
            format!("bytes */{end}")
        } else {
            format!("bytes {from}-{}/{end}", from + rest.len() - 1)
        };
        let answer = client
            .http
            .put(session)
            .bearer_auth(token(client, what).await?)
            .header(reqwest::header::CONTENT_RANGE, range)
            .body(rest.to_vec())
            .send()
            .await
            .map_err(|e| transport(what, e))?;
        match answer.status().as_u16() {
            308 if total.is_none() => Ok(None),
            200 | 201 if total.is_some() => {
                let job = answer.json().await.map_err(|e| transport(what, e))?;
                Ok(Some(job))
            }
            // The job exists already: a retry of a request that started it.
            409 if total.is_some() => Ok(None),
            _ => Err(refused(what, answer).await),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_deterministic_and_valid() {
        let id = job_id("my.ds", "public_items_staging", "18a2f", 3);
        assert_eq!(id, "tidewater_my_ds_public_items_staging_18a2f_3");
        assert_eq!(id, job_id("my.ds", "public_items_staging", "18a2f", 3));
    }
}
