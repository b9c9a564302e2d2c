//! `tidewater check`: the preflight items of the configured source, each with its fix.

use std::path::Path;

use tidewater_core::check::{failed, render};
use tidewater_core::{Error, Result, SourceDriver};
use tidewater_runtime::config::Config;
use tidewater_runtime::registry;

pub async fn check(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let mut items = registry::driver(&config.source)?
        .check(config.snapshot.parallelism)
        .await;
    tidewater_runtime::own_run::recognise(&mut items, &config);
    crate::stdout::print(&render(&items))?;
    if failed(&items) {
        return Err(Error::check(
            "preflight check failed: fix the items marked FAIL",
        ));
    }
    Ok(())
}
