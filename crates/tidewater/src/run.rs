//! `tidewater run`: the servers, the progress display, and the pipeline until SIGINT/SIGTERM.

mod progress;

pub use progress::LogMakeWriter;

use std::path::Path;
use std::sync::Arc;

use tidewater_core::stats::Stats;
use tidewater_core::Result;
use tidewater_runtime::config::Config;
use tidewater_runtime::http::{self, LOCAL_ONLY};
use tidewater_runtime::monitor::Monitor;
use tidewater_runtime::pipeline;
use tidewater_runtime::query::gate::QueryGate;
use tidewater_runtime::shutdown::shutdown_signal;
use tidewater_runtime::sql_endpoint;
use tidewater_runtime::verify::continuous;
use tracing::info;

/// `progress_bars`: draw snapshot progress bars (a terminal); else log progress lines.
pub async fn run(config_path: &Path, progress_bars: bool) -> Result<()> {
    let shutdown = shutdown_signal();
    let config = Config::load(config_path)?;
    // Before any port is bound: a second writer is named as such, not as a busy address.
    tidewater_runtime::single_writer::ensure_no_other_writer(&config, config_path)?;
    let monitor = Arc::new(Monitor::for_config(Arc::new(Stats::default()), &config));
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
    let progress = progress::spawn(monitor.clone(), progress_bars);
    let verifying = config
        .continuous_verify()?
        .map(|settings| continuous::spawn(monitor.clone(), settings, shutdown.clone()));
    let result = pipeline::run(&config, monitor, shutdown).await;
    progress.abort();
    if let Some(v) = verifying {
        v.abort();
    }
    result
}
