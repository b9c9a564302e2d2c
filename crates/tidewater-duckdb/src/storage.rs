//! The storage format of the replica file (`[sink] storage_version`).
//!
//! DuckDB writes a new database file in the format of an old release unless told otherwise
//! (`storage_compatibility_version`, `v0.10.2` in DuckDB 1.5: files that DuckDB 1.0 can read).
//! That format predates DuckDB 1.3's string compression (`DICT_FSST`), whose checkpoint
//! analyses a row group's strings within the buffer pool's accounting; the old dictionary
//! analysis holds its copies of the strings beside it. On wide text that was most of the
//! process: 200,000 rows of 2 KiB text into a keyed table and a log table, 8,000 rows a
//! transaction, DuckDB 1.5.6 under `memory_limit = '200MB'`, peaked at 623 MiB in the old
//! format and 278 MiB in `v1.5.0` (docs/performance.md, "The replica file's storage format").
//!
//! So a new replica file is written in the newest format of the DuckDB tidewater links
//! (`latest`), which DuckDB 1.5.0 and later read; a user whose readers run an older DuckDB
//! sets the version they read. The setting only matters when the file is created: DuckDB
//! keeps an existing file's format whatever a later open asks (test below), so upgrading
//! tidewater never rewrites or re-versions a replica.

use std::path::Path;

use duckdb::{Config, Connection};
use tidewater_core::{Error, Result};

/// The format of a new replica file: the newest the linked DuckDB writes.
pub const DEFAULT_VERSION: &str = "latest";

/// `storage_version` is `latest` or a release (`v1.2.0`); DuckDB names the releases it knows
/// when the file is opened, so only the form is checked here, where the key can be named.
pub fn check_version(version: &str) -> Result<()> {
    let release = version.strip_prefix('v').is_some_and(|rest| {
        let parts: Vec<&str> = rest.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if version == DEFAULT_VERSION || release {
        return Ok(());
    }
    Err(
        Error::config(format!("sink.storage_version = {version:?} is not a DuckDB storage version"))
            .with_fix("use \"latest\" (the default) or the DuckDB release your readers run, e.g. storage_version = \"v1.0.0\""),
    )
}

/// Opens (or creates) the replica file; a new file is written in `version`'s format.
pub fn open(path: &Path, version: &str) -> Result<Connection> {
    let config = Config::default()
        .with("storage_compatibility_version", version)
        .map_err(|e| {
            Error::config(format!(
                "sink.storage_version = {version:?} is not a DuckDB storage version: {e}"
            ))
            .with_fix("use \"latest\" (the default) or a release DuckDB names, e.g. \"v1.0.0\"")
        })?;
    Connection::open_with_flags(path, config).map_err(|e| crate::errors::open_error(path, e))
}

/// The storage format DuckDB reports for the open file (`duckdb_databases()`'s tag, e.g.
/// `v1.5.0+`).
#[cfg(test)]
fn file_version(conn: &Connection) -> String {
    conn.query_row(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = current_database()",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::{check_version, file_version, open};

    #[test]
    fn a_new_file_takes_the_asked_format_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.duckdb");
        let conn = open(&new, "latest").unwrap();
        conn.execute_batch("CREATE TABLE t (i INT)").unwrap();
        let latest = file_version(&conn);
        drop(conn);
        // DuckDB's own default would be v1.0.0+ (the v0.10.2 format).
        assert!(latest.starts_with("v1.5"), "{latest}");

        let old = dir.path().join("old.duckdb");
        let conn = open(&old, "v1.0.0").unwrap();
        conn.execute_batch("CREATE TABLE t (i INT)").unwrap();
        assert_eq!(file_version(&conn), "v1.0.0+");
        drop(conn);
        let conn = open(&old, "latest").unwrap();
        assert_eq!(
            file_version(&conn),
            "v1.0.0+",
            "an existing file keeps its format"
        );
        drop(conn);
        let conn = open(&new, "v1.0.0").unwrap();
        assert_eq!(file_version(&conn), latest);
    }

    #[test]
    fn storage_versions_are_checked_by_form_and_by_duckdb() {
        for ok in ["latest", "v1.0.0", "v1.5.6", "v0.10.2"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1.5.0", "v1.5", "newest", "v1.x.0", "v1.5.0 "] {
            let e = check_version(bad).expect_err(bad);
            assert!(e.message().contains("storage_version"), "{}", e.message());
            assert!(e.fix().is_some());
        }
        let dir = tempfile::tempdir().unwrap();
        let e = match open(&dir.path().join("x.duckdb"), "v9.9.9") {
            Ok(_) => panic!("DuckDB took an unknown version"),
            Err(e) => e,
        };
        assert!(e.message().contains("storage_version"), "{}", e.message());
        assert!(e.fix().is_some());
    }
}
