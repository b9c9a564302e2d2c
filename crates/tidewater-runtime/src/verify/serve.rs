//! `POST /verify` `{"tables": ["public.*"], "max_examples": 10}` on a running `tidewater run`:
//! the comparison on a connection of its own to the live replica (`Replica::comparison`), waiting for the apply loop
//! to pass each source snapshot. Answers the report as JSON; one verification at a time, only
//! for clients on the loopback interface (it reads every replicated row of the source).

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tidewater_core::{Error, ErrorKind};
use tokio::sync::Mutex;

use super::engine::{self, Replica, VerifyRequest};
use super::wire::ErrorAnswer;
use crate::monitor::Monitor;

const MAX_BODY: usize = 64 << 10;

/// Held while a verification runs (a request here, or a continuous verification pass).
pub(super) static RUNNING: Mutex<()> = Mutex::const_new(());

/// The status code and JSON body answering `req`.
pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    monitor: &Arc<Monitor>,
) -> (StatusCode, Vec<u8>) {
    match verify(req, peer, monitor).await {
        Ok(report) => (
            StatusCode::OK,
            serde_json::to_vec_pretty(&report).expect("report serialises"),
        ),
        Err((status, e)) => (
            status,
            serde_json::to_vec_pretty(&ErrorAnswer::from_error(&e)).expect("error serialises"),
        ),
    }
}

async fn verify(
    req: Request<Incoming>,
    peer: SocketAddr,
    monitor: &Arc<Monitor>,
) -> Result<super::report::VerifyReport, (StatusCode, Error)> {
    let refuse = |status: StatusCode, e: Error| (status, e);
    if !peer.ip().is_loopback() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            Error::config("POST /verify is only served to clients on this machine (loopback)"),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                Error::config(format!("reading the request: {e}")),
            )
        })?
        .to_bytes();
    let request: VerifyRequest = serde_json::from_slice(&body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            Error::config(format!(
                "the body must be JSON like {{\"tables\": [\"public.*\"], \"max_examples\": 10}}: {e}"
            )),
        )
    })?;
    let _running = RUNNING.try_lock().map_err(|_| {
        refuse(
            StatusCode::CONFLICT,
            Error::sink(
                "another verify is running in this process (a POST /verify, or a continuous \
                 verification pass of [verify]); try again when it is done",
            ),
        )
    })?;
    let unavailable = |m: String| refuse(StatusCode::SERVICE_UNAVAILABLE, Error::sink(m));
    let config = monitor
        .config()
        .ok_or_else(|| unavailable("this process serves no verification".into()))?;
    let comparer = monitor
        .replica()
        .ok_or_else(|| unavailable("the replica is not open yet; try again in a moment".into()))?
        .comparison()
        .map_err(|e| unavailable(e.to_string()))?;
    engine::verify(
        &config,
        comparer,
        Replica::Live(monitor.stats.clone()),
        &request,
        None,
    )
    .await
    .map_err(|e| {
        let status = match e.kind {
            ErrorKind::Config => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, e)
    })
}
