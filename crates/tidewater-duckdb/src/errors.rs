//! DuckDB failures that callers act on. DuckDB names them only in its error text, so this is
//! the one place that reads it:
//!
//! - a file held by another process (`tidewater run` writes it): "Could not set lock on
//!   file ...". Errors built from such a failure carry [`Held`] as their source; callers ask
//!   [`is_held`] instead of reading messages;
//! - a full file system: the sink's error gets what to do about it ([`with_disk_full_fix`]);
//! - DuckDB's memory limit reached ([`is_out_of_memory`]): the same ([`with_memory_fix`]), or,
//!   under `memory_limit = "auto"`, a higher limit and a retry (`crate::memory`);
//! - a CHECKPOINT refused because another connection holds a transaction
//!   ([`is_checkpoint_conflict`]).

use std::path::Path;

use tidewater_core::{Error, ErrorKind};

pub use tidewater_core::replica::{is_held, Held};

/// The sink's error for a DuckDB file that did not open: held by another process (with
/// [`Held`] as its source), or any other reason.
pub(crate) fn open_error(path: &Path, e: duckdb::Error) -> Error {
    let msg = e.to_string();
    if is_lock_failure(&e) {
        Error::sink(format!(
            "DuckDB file {} is in use by another process ({msg}). Only one `tidewater run` may \
             write a replica; stop the other one, or use `tidewater status` to look at it",
            path.display()
        ))
        .with_source(Held)
    } else {
        Error::sink(format!("cannot open DuckDB file {}: {msg}", path.display()))
    }
}

/// Whether DuckDB failed because another process holds the file's lock.
pub fn is_lock_failure(e: &duckdb::Error) -> bool {
    e.to_string().contains("lock")
}

/// Whether DuckDB refused a (non-FORCE) CHECKPOINT because other transactions are running.
pub fn is_checkpoint_conflict(e: &duckdb::Error) -> bool {
    e.to_string().contains("Cannot CHECKPOINT")
}

/// `e` marked as caused by a held file when `cause` was one.
pub fn mark(e: Error, cause: &duckdb::Error) -> Error {
    if is_lock_failure(cause) {
        e.with_source(Held)
    } else {
        e
    }
}

/// A sink error caused by a full file system (DuckDB's message names the file it could not
/// write) gets what to do about it. A failed write fails its whole batch, so the replica stays
/// at the last committed batch and a later run resumes from there.
pub fn with_disk_full_fix(e: Error, db: &Path) -> Error {
    let full = ["No space left on device", "Disk quota exceeded"]
        .iter()
        .any(|m| e.message().contains(m));
    if !full || !matches!(e.kind, ErrorKind::Sink | ErrorKind::SinkRetryable) {
        return e;
    }
    let db = db.display();
    Error::new(
        e.kind,
        format!(
            "{}. The file system holding {db} is full; the replica stays at its last committed \
             batch",
            e.message()
        ),
    )
    .with_fix(format!(
        "free space on that file system, or move {db} and {db}.wal (if present) together to \
         one with room and set sink.path to the new place; then `tidewater run` resumes from \
         the last committed batch"
    ))
}

/// A sink error raised because DuckDB reached its `memory_limit` ("Out of Memory Error") gets
/// what to do about it. What DuckDB cannot evict under the limit is mostly the replicas'
/// PRIMARY KEY indexes (docs/performance.md, "Memory"). The failed batch is not applied, so a
/// later run resumes from the last committed one.
pub fn with_memory_fix(e: Error, memory_limit: &str) -> Error {
    if !is_out_of_memory(&e) || e.fix().is_some() {
        return e;
    }
    // (Under `auto` at its ceiling `crate::memory` gives its own fix.)
    let now = match memory_limit.trim() {
        "" => "DuckDB's default, 80 % of RAM".to_string(),
        limit => format!("\"{limit}\""),
    };
    e.with_fix(format!(
        "raise sink.memory_limit (now {now}), or set sink.primary_key = false (the replicas' key \
         indexes are what DuckDB cannot evict; updates and deletes of large tables get slower); \
         then `tidewater run` resumes from the last committed batch"
    ))
}

/// Whether a sink error is DuckDB's memory limit failing a statement.
pub(crate) fn is_out_of_memory(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Sink | ErrorKind::SinkRetryable)
        && e.message().contains("Out of Memory Error")
}

/// How to start a DuckDB replica over: `tidewater run` takes a new snapshot into a new file.
pub fn resnapshot_fix(db: &Path) -> String {
    format!(
        "move the DuckDB file {} (and its .wal, if any) aside, or set sink.path to a new file, \
         and run `tidewater run` again to take a new snapshot",
        db.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_gets_the_memory_fix_and_nothing_else_does() {
        let oom = Error::sink(
            "applying a batch: Out of Memory Error: could not allocate block of size 256.0 KiB \
             (244.1 MiB/244.1 MiB used)",
        );
        let fix = with_memory_fix(oom, "256MB").fix().map(str::to_owned);
        assert!(
            fix.as_deref()
                .is_some_and(|f| f.contains("sink.memory_limit (now \"256MB\")")
                    && f.contains("sink.primary_key = false")),
            "{fix:?}"
        );
        let other = with_memory_fix(Error::sink("Constraint Error"), "");
        assert_eq!(other.fix(), None);
        let config = with_memory_fix(Error::config("Out of Memory Error"), "");
        assert_eq!(config.fix(), None);
    }
}
