//! `tidewater teardown`: removes a pipeline's slot and publications at the source (and the
//! replica with `--drop-replica`); see `tidewater_runtime::teardown`. And `tidewater forget`,
//! which removes tables from a pipeline (`tidewater_runtime::forget`).

use std::path::Path;

use tidewater_core::Result;

pub async fn command(config_path: &Path, yes: bool, drop_replica: bool) -> Result<()> {
    let out = tidewater_runtime::teardown::teardown(config_path, yes, drop_replica).await?;
    crate::stdout::print(&out)
}

pub async fn forget(config_path: &Path, tables: &[String], yes: bool, drop: bool) -> Result<()> {
    let out = tidewater_runtime::forget::forget(config_path, tables, yes, drop).await?;
    crate::stdout::print(&out)
}
