//! `tidewater status`: the replica's state (from the running process, its status file, or the
//! replica itself) and what the source says about the slot.

use std::path::Path;

use tidewater_core::check::CheckStatus;
use tidewater_core::{Result, SourceDriver};
use tidewater_runtime::config::Config;
use tidewater_runtime::{registry, status_view};

pub async fn status(config_path: &Path, json: bool) -> Result<()> {
    let config = Config::load(config_path)?;
    let view = status_view::current(config.sink.duckdb_path("status")?).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("serialises")
        );
        return Ok(());
    }
    print!("{}", view.render_text());
    print_source(&config).await;
    Ok(())
}

/// What the source says about the slot: how far it is confirmed and how much WAL it holds
/// back (a stopped or stuck replicator shows here first). Without the source's secrets (an
/// unset variable in source.url) it says so and the status stands.
async fn print_source(config: &Config) {
    let driver = match registry::driver(config) {
        Ok(driver) => driver,
        Err(e) => {
            println!("source        not checked: {}", e.message());
            return;
        }
    };
    let items = driver.check().await;
    for item in &items {
        if item.name == "slot" || item.status == CheckStatus::Fail {
            println!("source {:<13} {}", format!("{}:", item.name), item.detail);
        }
    }
}
