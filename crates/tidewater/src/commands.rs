//! `run`, `check` and `status`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::check::{failed, render, CheckStatus};
use tidewater_core::stats::Stats;
use tidewater_core::{Error, Result};
use tidewater_duckdb::status::{collect, open_read_only};
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::http::{self, client};
use crate::monitor::Monitor;
use crate::pipeline::{self, PIPELINE_NAME};
use crate::query::gate::QueryGate;
use crate::sql_endpoint;
use crate::status_file::read_published;
use crate::status_view::StatusView;

/// Without `[http]`, `run` still serves `tidewater query` and `tidewater status` on an
/// ephemeral loopback port, published in the status file.
pub const LOCAL_ONLY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A watch that turns true on SIGINT or SIGTERM. The handlers are registered before this
/// returns, so a signal that arrives at any later moment is never lost.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        info!("shutdown requested: finishing the open batch");
        let _ = tx.send(true);
    });
    rx
}

/// `progress_bars`: draw snapshot progress bars (a terminal); else log progress lines.
pub async fn run(config_path: &Path, progress_bars: bool) -> Result<()> {
    let shutdown = shutdown_signal();
    let config = Config::load(config_path)?;
    crate::single_writer::ensure_no_other_writer(&config, config_path)?;
    let monitor = Arc::new(Monitor::new(
        Arc::new(Stats::default()),
        &config.source.kind,
        config.sink.path.clone(),
    ));
    monitor.set_config(config.clone());
    let queries = QueryGate::new(monitor.clone());
    let listen = config.http_listen()?.unwrap_or(LOCAL_ONLY);
    let addr = http::start(listen, monitor.clone(), queries.clone()).await?;
    info!(http = %addr, "serving / (status page), /status, /metrics, /health and POST /query");
    if let Some(sql) = config.sql_endpoint()? {
        let addr = sql_endpoint::start(sql, queries).await?;
        monitor.set_sql_addr(addr);
        info!(sql = %addr, "sql endpoint listening (PostgreSQL wire protocol, read-only)");
    }
    let progress = crate::progress::spawn(monitor.clone(), progress_bars);
    let result = pipeline::run(&config, monitor, shutdown).await;
    progress.abort();
    result
}

pub async fn check(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let mut items = crate::sources::checks(&config).await;
    crate::own_run::recognise(&mut items, &config);
    crate::stdout::print(&render(&items))?;
    if failed(&items) {
        return Err(Error::check(
            "preflight check failed: fix the items marked FAIL",
        ));
    }
    Ok(())
}

pub async fn status(config_path: &Path, json: bool) -> Result<()> {
    let config = Config::load(config_path)?;
    let view = current_view(config.sink.duckdb_path("status")?).await?;
    if json {
        let json = serde_json::to_string_pretty(&view).expect("serialises");
        return crate::stdout::print(&format!("{json}\n"));
    }
    crate::stdout::print(&view.render_text())?;
    print_source(&config).await
}

/// The running process's `/status` (fresh), else its status file, else the replica itself.
async fn current_view(db: &Path) -> Result<StatusView> {
    let published = read_published(db);
    if let Some(p) = &published {
        if let Some(addr) = p.live.as_ref().and_then(|l| l.http.as_deref()) {
            let answer = client::call(
                addr,
                hyper::Method::GET,
                "/status",
                None,
                Duration::from_secs(5),
            )
            .await;
            if let Ok((200, body)) = answer {
                if let Ok(view) = serde_json::from_slice(&body) {
                    return Ok(view);
                }
            }
        }
        return Ok(published.expect("checked"));
    }
    let path = db.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        open_read_only(&path).and_then(|conn| collect(&conn, PIPELINE_NAME))
    })
    .await
    .expect("status task");
    match opened {
        Ok(report) => Ok(StatusView::stopped(db, report)),
        // `run` may have taken the file in the meantime.
        Err(e) => read_published(db).ok_or(e),
    }
}

/// What the source says about the slot: how far it is confirmed and how much WAL it holds
/// back (a stopped or stuck replicator shows here first).
async fn print_source(config: &Config) -> Result<()> {
    let mut items = crate::sources::checks(config).await;
    crate::own_run::recognise(&mut items, config);
    let mut out = String::new();
    for item in &items {
        if item.name == "slot" || item.status == CheckStatus::Fail {
            let name = format!("{}:", item.name);
            out.push_str(&format!("source {name:<13} {}\n", item.detail));
        }
    }
    crate::stdout::print(&out)
}
