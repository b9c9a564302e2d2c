//! `tidewater status`: the replica's state (from the running process, its status file, or the
//! replica itself; a BigQuery dataset's from its state table) and what the source says about
//! the slot.

use std::path::Path;

use tidewater_core::check::CheckStatus;
use tidewater_core::{Result, SourceDriver};
use tidewater_runtime::config::Config;
use tidewater_runtime::{own_run, registry, status_file};

pub async fn status(config_path: &Path, json: bool) -> Result<()> {
    let config = Config::load(config_path)?;
    let view = status_file::of_config(&config).await?;
    if json {
        let json = serde_json::to_string_pretty(&view).expect("serialises");
        return crate::stdout::print(&format!("{json}\n"));
    }
    crate::stdout::print(&view.render_text())?;
    print_source(&config).await
}

/// What the source says about the slot: how far it is confirmed and how much WAL it holds
/// back (a stopped or stuck replicator shows here first). Without the source's secrets (an
/// unset variable in source.url) it says so and the status stands.
async fn print_source(config: &Config) -> Result<()> {
    let driver = match registry::driver(&config.source) {
        Ok(driver) => driver,
        Err(e) => {
            return crate::stdout::print(&format!("source        not checked: {}\n", e.message()))
        }
    };
    let mut items = driver.check(config.snapshot.parallelism).await;
    own_run::recognise(&mut items, config);
    let mut out = String::new();
    for item in &items {
        if item.name == "slot" || item.status == CheckStatus::Fail {
            let name = format!("{}:", item.name);
            out.push_str(&format!("source {name:<13} {}\n", item.detail));
        }
    }
    crate::stdout::print(&out)
}
