//! `run`, `check` and `status`.

use std::path::Path;
use std::sync::Arc;

use tidewater_core::stats::Stats;
use tidewater_core::{Error, Result};
use tidewater_duckdb::status::{collect, open_read_only, StatusReport};
use tidewater_core::check::{failed, render, CheckStatus};
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::pipeline::{self, PIPELINE_NAME};
use crate::status_file::read_published;

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

pub async fn run(config_path: &Path) -> Result<()> {
    let shutdown = shutdown_signal();
    let config = Config::load(config_path)?;
    pipeline::run(&config, Arc::new(Stats::default()), shutdown).await
}

pub async fn check(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let items = crate::sources::checks(&config).await;
    print!("{}", render(&items));
    if failed(&items) {
        return Err(Error::check(
            "preflight check failed: fix the items marked FAIL",
        ));
    }
    Ok(())
}

pub async fn status(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let path = config.sink.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        open_read_only(&path).and_then(|conn| collect(&conn, PIPELINE_NAME))
    })
    .await
    .expect("status task");
    let shown = match opened {
        Ok(report) => {
            println!("replica: {} (not running)", config.sink.path.display());
            print_report(&report);
            Ok(())
        }
        Err(e) => match read_published(&config.sink.path) {
            Some(s) => {
                let age = (tidewater_core::stats::now_us() - s.published_at_us) / 1_000_000;
                println!(
                    "replica: {} (held by running tidewater pid {}; status published {age}s ago)",
                    config.sink.path.display(),
                    s.pid
                );
                println!("last lag:            {} ms", s.last_lag_ms);
                print_report(&s.report);
                Ok(())
            }
            None => Err(e),
        },
    };
    shown?;
    print_source(&config).await;
    Ok(())
}

/// What the source says about the slot: how far it is confirmed and how much WAL it holds
/// back (a stopped or stuck replicator shows here first).
async fn print_source(config: &Config) {
    let items = crate::sources::checks(config).await;
    for item in &items {
        if item.name == "slot" || item.status == CheckStatus::Fail {
            println!("source {:<13} {}", format!("{}:", item.name), item.detail);
        }
    }
}

fn print_report(r: &StatusReport) {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("position:            {}", or_dash(&r.position));
    println!("last source commit:  {}", or_dash(&r.last_source_commit));
    println!("last apply:          {}", or_dash(&r.last_apply));
    println!("transactions:        {}", r.transactions_applied);
    println!("changes:             {}", r.changes_applied);
    println!(
        "{:<40} {:>12} {:>12} {:>7}",
        "table", "rows", "changes", "schema"
    );
    for t in &r.tables {
        println!(
            "{:<40} {:>12} {:>12} {:>7}",
            t.table, t.rows, t.changes_applied, t.schema_version
        );
    }
}
