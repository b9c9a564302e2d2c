//! `tidewater resnapshot --tables GLOB`: asks the running `tidewater run` to copy the matching
//! replicated tables again while it keeps streaming (`POST /resnapshot`,
//! `tidewater_runtime::http::resnapshot`).

use std::path::Path;

use tidewater_core::{Error, Result};
use tidewater_runtime::config::Config;

pub async fn resnapshot(config: &Path, tables: Vec<String>) -> Result<()> {
    if tables.is_empty() {
        return Err(Error::config("name the tables to copy again")
            .with_fix("tidewater resnapshot --tables 'schema.table' (globs allowed, ! excludes)"));
    }
    let config = Config::load(config)?;
    let copied = tidewater_runtime::http::resnapshot::request(&config, tables).await?;
    crate::stdout::print(&format!(
        "copying again while streaming: {}\n",
        copied.join(", ")
    ))
}
