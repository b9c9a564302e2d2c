//! `tidewater forget --tables GLOB`: stops replicating tables without starting over. A run
//! refuses a `source.tables` that leaves out a table the replica holds (its changes would be
//! missed from then on, and selecting it again later would resume a stale replica); forgetting
//! the table first makes the replica stop holding it, so the narrowed selection starts, and a
//! table selected again later joins with a fresh copy. The replica and `_log` tables are kept
//! (as they were) unless `--drop-tables`. Without `--yes` it only lists what it would do.
//!
//! It refuses for a table `source.tables` still selects (the next run would take it back in
//! with a copy, which is what `tidewater resnapshot` is for), and while a `run` of the config
//! is running: for DuckDB the file's writer, for BigQuery (no file) the source's reader in use
//! (the slot active, the server_id connected). A run that slipped past that (another config
//! on the same dataset) keeps writing the table, and its next restart takes the table back
//! in with a copy: nothing is applied wrong either way.

use std::path::Path;

use tidewater_core::glob::selected;
use tidewater_core::{Error, Result, Sink, SourceDriver, TableId};

use crate::config::Config;
use crate::own_run::held_by_a_reader;
use crate::registry::{self, open_sink};
use crate::single_writer::live_writer;

/// What forget did (or, without `yes`, would do), as lines for the terminal.
pub async fn forget(
    config_path: &Path,
    globs: &[String],
    yes: bool,
    drop_tables: bool,
) -> Result<String> {
    if globs.is_empty() {
        return Err(Error::config("name the tables to forget")
            .with_fix("tidewater forget --tables 'schema.table' (globs allowed, ! excludes)"));
    }
    let config = Config::load(config_path)?;
    if let Some(writer) = live_writer(&config) {
        return Err(Error::config(format!(
            "{writer}: forget refuses while `tidewater run` is running"
        ))
        .with_fix("stop it first (SIGTERM), then run forget again"));
    }
    if config.sink.local_file().is_none() {
        refuse_reader_in_use(&config).await?;
    }
    let kind = config.source.kind();
    let sink = open_sink(&config.sink, kind, config.apply.log_tables)
        .await?
        .sink;
    // A sink's calls block (BigQuery's on its own runtime): off the async threads.
    let (globs, selection) = (globs.to_vec(), config.source.tables().to_vec());
    tokio::task::spawn_blocking(move || forget_in(sink, &globs, &selection, yes, drop_tables))
        .await
        .map_err(|e| Error::sink(format!("forgetting tables: {e}")))?
}

/// A remote sink has no file lock that tells a running `run`: its source reader does (the
/// PostgreSQL slot is active, the MySQL server_id belongs to a connected replica; the same
/// items `tidewater check` reports), so forget refuses while it is in use.
async fn refuse_reader_in_use(config: &Config) -> Result<()> {
    let items = registry::driver(&config.source)?
        .check(config.snapshot.parallelism)
        .await;
    match items.iter().find(|item| held_by_a_reader(item)) {
        None => Ok(()),
        Some(item) => Err(Error::config(format!(
            "the source's reader is in use ({}: {}): a `tidewater run` of this config is \
             probably running, and forget refuses while it is",
            item.name, item.detail
        ))
        .with_fix("stop it first (SIGTERM), then run forget again")),
    }
}

/// The part of [`forget`] that reads and writes the sink.
fn forget_in(
    mut sink: Box<dyn Sink>,
    globs: &[String],
    selection: &[String],
    yes: bool,
    drop_tables: bool,
) -> Result<String> {
    let held = sink.replicated_tables()?.unwrap_or_default();
    let matched: Vec<TableId> = held
        .iter()
        .filter(|id| selected(globs, id))
        .cloned()
        .collect();
    if matched.is_empty() {
        let held: Vec<String> = held.iter().map(|id| id.to_string()).collect();
        return Err(Error::config(format!(
            "no table the replica holds matches {globs:?} (it holds: [{}])",
            held.join(", ")
        ))
        .with_fix("name tables the replica holds, as schema.table"));
    }
    let selected_still: Vec<String> = matched
        .iter()
        .filter(|id| selected(selection, id))
        .map(|id| id.to_string())
        .collect();
    if !selected_still.is_empty() {
        return Err(Error::config(format!(
            "source.tables still selects {}: the next run would take it back in",
            selected_still.join(", ")
        ))
        .with_fix(
            "remove it from source.tables first (or, to copy a table again while streaming, \
             use `tidewater resnapshot --tables`)",
        ));
    }
    let (verb, tables) = match (yes, drop_tables) {
        (true, true) => ("forgot", "its replica and _log tables dropped"),
        (true, false) => ("forgot", "its replica and _log tables kept as they are"),
        (false, true) => ("would forget", "and drop its replica and _log tables"),
        (false, false) => (
            "would forget",
            "its replica and _log tables kept (add --drop-tables to drop them)",
        ),
    };
    if yes {
        sink.forget(&matched, drop_tables)?;
    }
    let mut out = String::new();
    for id in &matched {
        out.push_str(&format!("{verb} {id}: {tables}\n"));
    }
    if !yes {
        out.push_str("nothing was changed: run again with --yes to do the above\n");
    }
    Ok(out)
}
