//! `POST /resnapshot` `{"tables": ["shop.orders", "shop.audit_*"]}` on a running
//! `tidewater run` (what `tidewater resnapshot` calls): the replicated tables matching the
//! globs are copied again while the stream goes on. The request goes to the source through
//! `tidewater_core::recopy` (the path continuous verification's repair takes), which it
//! serves between transactions by the re-copy it uses for a schema change the stream does
//! not carry; exact for the same reasons (each source's `stream/recopy.rs`).
//!
//! The answer says which tables were asked for, once the source has taken the request
//! (within seconds while it streams). Only for clients on the loopback interface: a copy
//! reads whole tables at the source. [`request`] is the client side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use tidewater_core::glob::selected;
use tidewater_core::{Error, Result, TableId};

use crate::config::Config;
use crate::monitor::Monitor;

const MAX_BODY: usize = 64 << 10;
/// How long the answer waits for the source to take the request.
const TAKEN_WITHIN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResnapshotRequest {
    /// `schema.table` globs (`!` excludes), matched against the replicated tables.
    pub tables: Vec<String>,
}

/// The answer: the tables asked for, or why none were.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ResnapshotAnswer {
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn refused(error: impl Into<String>, fix: Option<&str>) -> ResnapshotAnswer {
    ResnapshotAnswer {
        tables: Vec::new(),
        error: Some(error.into()),
        fix: fix.map(String::from),
    }
}

/// The status code and JSON body answering `req`.
pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    monitor: &Arc<Monitor>,
) -> (StatusCode, Vec<u8>) {
    let (status, answer) = resnapshot(req, peer, monitor).await;
    (
        status,
        serde_json::to_vec_pretty(&answer).expect("answer serialises"),
    )
}

async fn resnapshot(
    req: Request<Incoming>,
    peer: SocketAddr,
    monitor: &Arc<Monitor>,
) -> (StatusCode, ResnapshotAnswer) {
    if !peer.ip().is_loopback() {
        let e = "POST /resnapshot is only served to clients on this machine (loopback)";
        return (StatusCode::FORBIDDEN, refused(e, None));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let e = format!("reading the request: {e}");
            return (StatusCode::BAD_REQUEST, refused(e, None));
        }
    };
    let request: ResnapshotRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let e = format!("the body must be JSON like {{\"tables\": [\"shop.orders\"]}}: {e}");
            return (StatusCode::BAD_REQUEST, refused(e, None));
        }
    };
    let m = monitor.clone();
    let report = tokio::task::spawn_blocking(move || m.report(Duration::from_secs(1))).await;
    let replicated: Vec<TableId> = match report {
        Ok(Ok(r)) => r
            .tables
            .iter()
            .filter_map(|t| t.table.split_once('.'))
            .map(|(schema, name)| TableId::new(schema, name))
            .collect(),
        Ok(Err(e)) => {
            let e = format!("reading the replicated tables: {}", e.message());
            return (StatusCode::SERVICE_UNAVAILABLE, refused(e, None));
        }
        Err(e) => {
            let e = format!("reading the replicated tables: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, refused(e, None));
        }
    };
    let ids: Vec<TableId> = replicated
        .into_iter()
        .filter(|id| selected(&request.tables, id))
        .collect();
    let tables: Vec<String> = ids.iter().map(ToString::to_string).collect();
    if ids.is_empty() {
        let e = format!("no replicated table matches {}", request.tables.join(", "));
        let fix =
            "name replicated tables as schema.table (globs allowed); `tidewater status` lists them";
        return (StatusCode::NOT_FOUND, refused(e, Some(fix)));
    }
    tracing::info!(tables = %tables.join(", "), "resnapshot requested: the tables are copied again while streaming");
    let recopy = &monitor.stats.recopy;
    recopy.request(ids.iter().cloned());
    let deadline = tokio::time::Instant::now() + TAKEN_WITHIN;
    while ids.iter().any(|id| recopy.pending().contains(id)) {
        if tokio::time::Instant::now() >= deadline {
            let e = format!(
                "the source has not started copying {} within {} s: it takes requests between \
                 transactions while it streams (the request stays pending)",
                tables.join(", "),
                TAKEN_WITHIN.as_secs()
            );
            let fix = "check `tidewater status`: the pipeline must be streaming, into a \
                       destination that copies tables while streaming";
            return (StatusCode::SERVICE_UNAVAILABLE, refused(e, Some(fix)));
        }
        tokio::time::sleep(POLL).await;
    }
    (
        StatusCode::OK,
        ResnapshotAnswer {
            tables,
            ..Default::default()
        },
    )
}

/// Asks the `tidewater run` of `config`'s replica to copy the tables matching `tables` again;
/// returns the tables it copies.
pub async fn request(config: &Config, tables: Vec<String>) -> Result<Vec<String>> {
    let db = config.sink.duckdb_path("resnapshot")?;
    let not_running = || {
        Error::config(format!(
            "no `tidewater run` is running for {}: resnapshot asks the running process",
            db.display()
        ))
        .with_fix("start `tidewater run` with this config, then run resnapshot again")
    };
    let published = crate::status_file::read_published(db).ok_or_else(not_running)?;
    let addr = published
        .live
        .and_then(|l| l.http)
        .ok_or_else(not_running)?;
    let body = serde_json::to_vec(&ResnapshotRequest { tables }).expect("request serialises");
    let timeout = TAKEN_WITHIN + Duration::from_secs(15);
    let (status, bytes) = crate::client::call(
        &addr,
        hyper::Method::POST,
        "/resnapshot",
        Some(body),
        timeout,
    )
    .await
    .map_err(|e| Error::sink(format!("asking the running tidewater at {addr}: {e}")))?;
    let answer: ResnapshotAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        Error::sink(format!(
            "unreadable answer from {addr} (HTTP {status}): {e}"
        ))
    })?;
    match answer.error {
        None if status == 200 => Ok(answer.tables),
        error => {
            let e = Error::config(error.unwrap_or_else(|| format!("HTTP {status}")));
            Err(match answer.fix {
                Some(f) => e.with_fix(f),
                None => e,
            })
        }
    }
}
