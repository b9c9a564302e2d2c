//! The source driver contract: everything the runtime asks of a kind of source, so that the
//! runtime names a source kind in one place only (its registry).
//!
//! A driver is built from its configuration and does not connect until asked. It gives:
//! - [`SourceDriver::connect`]: the replication [`Source`] (snapshot, then the stream);
//! - [`SourceDriver::check`]: the preflight items of `tidewater check`;
//! - [`SourceDriver::row_estimates`]: best-effort row counts for snapshot progress;
//! - [`SourceDriver::reader`]: a [`ConsistentReader`], what `verify` reads the source with.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use crate::check::CheckItem;
use crate::error::Result;
use crate::glob::selected;
use crate::model::{Position, TableId, TableSchema, Value};
use crate::source::{RowConsumer, Source};

pub trait SourceDriver: Send + Sync {
    type Stream: Source;
    type Reader: ConsistentReader;

    /// Connects and resolves the tables (the preflight part of every run).
    fn connect(&self) -> impl Future<Output = Result<Self::Stream>> + Send;

    /// `tidewater check` items: connectivity, privileges, server settings, tables, keys, types,
    /// and whether the sessions a run opens fit the source's connection limits with
    /// `copy_readers` chunk readers (`[snapshot] parallelism`).
    fn check(&self, copy_readers: usize) -> impl Future<Output = Vec<CheckItem>> + Send;

    /// Row estimates per replicated table ("schema.table") for snapshot progress. Best effort:
    /// a table without an estimate is missing, and an unreadable catalog gives an empty map.
    fn row_estimates(
        &self,
        tables: &[Arc<TableSchema>],
    ) -> impl Future<Output = BTreeMap<String, u64>> + Send;

    /// A reader of the replicated tables (narrowed to the `only` globs when not empty) at
    /// consistent snapshots of its own, for `verify`.
    fn reader(&self, only: &[String]) -> impl Future<Output = Result<Self::Reader>> + Send;
}

/// Reads a source's tables at consistent snapshots, in key order (what `verify` compares).
pub trait ConsistentReader: Send {
    /// The tables this reader reads, by index.
    fn tables(&self) -> Vec<Arc<TableSchema>>;

    /// Opens a consistent snapshot; returns its position in the source's stream.
    fn begin(&mut self) -> impl Future<Output = Result<Position>> + Send;

    /// Closes the open snapshot.
    fn end(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Streams table `table` (or only the rows of `keys`) in key order at the open snapshot;
    /// returns the rows read.
    fn read<C: RowConsumer>(
        &mut self,
        table: usize,
        keys: Option<&[Vec<Value>]>,
        out: &mut C,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Whether a replica applied up to `applied` holds everything up to `target` (positions
    /// of this source's stream).
    fn reached(&self, applied: &Position, target: &Position) -> bool;
}

/// Rows per chunk a [`ConsistentReader`] hands to `verify`'s comparison.
pub const READ_CHUNK_ROWS: usize = 8192;

/// [`SourceDriver::row_estimates`] out of what a source's catalog answered (`schema.table`,
/// estimate): the positive estimates of `tables`. When reading them failed there are none
/// (logged at debug level): estimates only drive the snapshot's progress display.
pub fn estimates_of(
    tables: &[Arc<TableSchema>],
    answer: Result<Vec<(String, i64)>>,
) -> BTreeMap<String, u64> {
    let wanted = table_names(tables);
    match answer {
        Ok(all) => all
            .into_iter()
            .filter(|(t, n)| *n > 0 && wanted.contains(t))
            .map(|(t, n)| (t, n as u64))
            .collect(),
        Err(e) => {
            tracing::debug!("reading row estimates: {e}");
            BTreeMap::new()
        }
    }
}

/// `schema.table` of each of `tables`.
pub fn table_names(tables: &[Arc<TableSchema>]) -> HashSet<String> {
    tables.iter().map(|t| t.id.to_string()).collect()
}

/// Keeps the tables a [`SourceDriver::reader`] was narrowed to: those matching the `only`
/// globs, or all when `only` is empty.
pub fn retain_selected<T>(tables: &mut Vec<T>, only: &[String], id: impl Fn(&T) -> &TableId) {
    if !only.is_empty() {
        tables.retain(|t| selected(only, id(t)));
    }
}
