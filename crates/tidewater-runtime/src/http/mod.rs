//! The HTTP endpoint of a running `tidewater run`:
//!
//! - `GET /health`: 200 while streaming and not stalled, else 503; the body says why (a body
//!   starting with `degraded:` while a selected table is not replicated, see `degraded`, or
//!   while tables are copied again beside replica tables that keep their rows);
//! - `GET /metrics`: Prometheus text format;
//! - `GET /status`: the status as JSON (what `tidewater status` prints);
//! - `GET /` (or `/status.html`): a small self-refreshing status page;
//! - `POST /query` `{"sql": "...", "limit": 100, "timeout_ms": 5000}`: one read-only statement
//!   on the live replica, answered as JSON; only for clients on the loopback interface;
//! - `POST /verify`: `tidewater verify` inside this process (see `verify::serve`);
//! - `POST /resnapshot` `{"tables": ["shop.*"]}`: copy tables again while streaming (see
//!   `resnapshot`).
//!
//! It listens on `[http] listen`, or else on an ephemeral loopback port that `tidewater query`
//! and `tidewater status` find through the status file.

mod metrics;
mod page;
pub mod resnapshot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tidewater_core::{Error, Result};
use tokio::net::TcpListener;
use tracing::debug;

use crate::monitor::Monitor;
use crate::query::exec::{
    self, Params, QueryError, QueryErrorKind, DEFAULT_LIMIT, DEFAULT_TIMEOUT, MAX_LIMIT,
    MAX_TIMEOUT,
};
use crate::query::gate::QueryGate;
use crate::status_view::StatusView;

/// Without `[http]`, `run` still serves `tidewater query` and `tidewater status` on an
/// ephemeral loopback port, published in the status file.
pub const LOCAL_ONLY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

const MAX_QUERY_BODY: usize = 1 << 20;
/// `/status` and the page collect row counts at most this often.
const REPORT_MAX_AGE: Duration = Duration::from_secs(1);

struct Server {
    monitor: Arc<Monitor>,
    queries: Arc<QueryGate>,
}

/// Binds `listen` and serves until the process ends; `POST /query` runs through `queries`.
/// Returns the bound address.
pub async fn start(
    listen: SocketAddr,
    monitor: Arc<Monitor>,
    queries: Arc<QueryGate>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        Error::config(format!(
            "http.listen = \"{listen}\": cannot listen there ({e}); choose a free address"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::config(format!("http.listen: {e}")))?;
    monitor.set_http_addr(addr);
    let server = Arc::new(Server { monitor, queries });
    tokio::spawn(accept(listener, server));
    Ok(addr)
}

async fn accept(listener: TcpListener, server: Arc<Server>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                debug!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(route(req, peer, &server).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!("http connection from {peer}: {e}");
            }
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Resp {
    let body = serde_json::to_vec_pretty(value).expect("serialises");
    respond(status, "application/json", body)
}

async fn route(req: Request<Incoming>, peer: SocketAddr, server: &Server) -> Resp {
    let m = &server.monitor;
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/health") => {
            let h = m.health();
            let status = if h.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(
                status,
                "text/plain; charset=utf-8",
                format!("{}\n", h.reason),
            )
        }
        (Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(m),
        ),
        (Method::GET, "/status") => json(StatusCode::OK, &status_view(m).await),
        (Method::GET, "/" | "/status.html") => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page::render(&status_view(m).await),
        ),
        (Method::POST, "/query") => {
            let (status, body) = match query(req, peer, server).await {
                Ok(r) => (StatusCode::OK, serde_json::to_vec(&r)),
                Err(e) => (error_status(e.kind), serde_json::to_vec(&e)),
            };
            respond(status, "application/json", body.expect("serialises"))
        }
        (Method::POST, "/verify") => {
            let (status, body) = crate::verify::serve::handle(req, peer, m).await;
            respond(status, "application/json", body)
        }
        (Method::POST, "/resnapshot") => {
            let (status, body) = resnapshot::handle(req, peer, m).await;
            respond(status, "application/json", body)
        }
        (_, "/health" | "/metrics" | "/status" | "/" | "/status.html" | "/query" | "/verify") => {
            respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            )
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /, /status, /metrics, /health, POST /query or POST /verify\n",
        ),
    }
}

fn error_status(kind: QueryErrorKind) -> StatusCode {
    match kind {
        QueryErrorKind::Refused | QueryErrorKind::Sql => StatusCode::BAD_REQUEST,
        QueryErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        QueryErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn status_view(m: &Arc<Monitor>) -> StatusView {
    let m2 = m.clone();
    let report = tokio::task::spawn_blocking(move || m2.report(REPORT_MAX_AGE))
        .await
        .ok()
        .and_then(|r| r.ok());
    let report = report
        .or_else(|| m.cached_report())
        .map(|r| (*r).clone())
        .unwrap_or_default();
    StatusView::live(m, report)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    limit: Option<usize>,
    timeout_ms: Option<u64>,
}

async fn query(
    req: Request<Incoming>,
    peer: SocketAddr,
    server: &Server,
) -> std::result::Result<exec::QueryResult, QueryError> {
    if !peer.ip().is_loopback() {
        return Err(QueryError::new(
            QueryErrorKind::Refused,
            "POST /query is only served to clients on this machine (loopback)",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_QUERY_BODY)
        .collect()
        .await
        .map_err(|e| QueryError::new(QueryErrorKind::Refused, format!("reading the request: {e}")))?
        .to_bytes();
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        QueryError::new(
            QueryErrorKind::Refused,
            format!("the body must be JSON like {{\"sql\": \"SELECT 1\", \"limit\": 100}}: {e}"),
        )
    })?;
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let timeout = request
        .timeout_ms
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
        .min(MAX_TIMEOUT);
    let result = server
        .queries
        .run(
            request.sql,
            Params::Values(Vec::new()),
            limit,
            timeout,
            exec::Cells::Json,
        )
        .await
        .map(exec::into_json);
    match &result {
        Ok(r) => debug!(rows = r.rows.len(), ms = r.elapsed_ms, "query served"),
        Err(e) => debug!(error = %e, "query refused or failed"),
    }
    result
}
