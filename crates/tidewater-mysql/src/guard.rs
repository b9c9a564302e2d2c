//! The position guard for MySQL/MariaDB: before streaming resumes (at every start and every
//! retry), the source must still hold every transaction after the stored position.
//!
//! A binlog reader has no server-side slot: the server keeps binlogs by time and size, not
//! for a replica, so the stored position is all there is to compare. The source can still
//! tell what it no longer has:
//! - MySQL with GTIDs: `@@gtid_purged`, the transactions no longer in any binlog. A stored
//!   executed set that does not include it is behind a gap.
//! - MariaDB: the GTID list at the start of the oldest binlog (the state before it): the
//!   stored state must be at or past it in every replication domain, including a domain the
//!   stored state does not know (one whose first transactions were written and purged while
//!   tidewater was stopped).
//!
//! The servers refuse such a resume themselves too (error 1236, with tidewater's
//! `@slave_gtid_strict_mode` on MariaDB; tested for an unseen domain), but only once the binlog
//! stream starts and without saying what is gone; this check runs before anything streams and
//! names both sides.
//! - A file:offset position (GTIDs off): the file must still be listed by `SHOW BINARY LOGS`.
//!
//! What cannot be detected: a binlog that was never written (`sql_log_bin = 0` sessions,
//! or a server replaced by a restored backup that reuses GTIDs the replica already has), and
//! a DuckDB file restored to an older state while the binlogs since then still exist, which
//! is not a gap at all: the stream replays from the older position, data and position having
//! gone back together. So a lost `.wal` after a crash is repaired by replay on MySQL/MariaDB,
//! unless the binlogs since the older position were purged, which the checks above catch.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidewater_core::{Error, Result};

use crate::conn::{my_error, Flavor, RETENTION_FIX};
use crate::gtid::{MariaState, MySqlGtidSet};
use crate::position::BinlogPosition;

/// The refusal: the stored position, what the source no longer has, and the fix.
fn gap(from: &BinlogPosition, purged: &str, resnapshot_fix: &str) -> Error {
    Error::source_fatal(format!(
        "the source has purged binlogs holding transactions this replica never applied: the \
         replica is at {from}, the source no longer has {purged}, so resuming would silently skip \
         them; the replica cannot catch up from here"
    ))
    .with_fix(format!("{resnapshot_fix}; {RETENTION_FIX}"))
}

/// The binlog files the source still has, oldest first.
async fn binlog_files(conn: &mut Conn) -> Result<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| my_error(e, "listing the binlog files (SHOW BINARY LOGS)"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get::<String, _>(0))
        .collect())
}

/// MariaDB: the GTID state before the oldest binlog (its GTID list event).
async fn mariadb_purged(conn: &mut Conn) -> Result<Option<MariaState>> {
    let Some(oldest) = binlog_files(conn).await?.into_iter().next() else {
        return Ok(None);
    };
    let sql = format!(
        "SHOW BINLOG EVENTS IN '{}' LIMIT 4",
        oldest.replace('\'', "''")
    );
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .map_err(|e| my_error(e, "reading the oldest binlog's GTID list"))?;
    for r in rows {
        let (kind, info): (Option<String>, Option<String>) = (r.get(2), r.get(5));
        if kind.as_deref() == Some("Gtid_list") {
            let list = info.unwrap_or_default();
            let inner = list.trim().trim_start_matches('[').trim_end_matches(']');
            let state = MariaState::parse(inner).map_err(|e| {
                Error::source_fatal(format!("the GTID list of binlog {oldest} ({list}): {e}"))
            })?;
            return Ok(Some(state));
        }
    }
    Ok(None)
}

/// Refuses to resume from `from` when the source no longer holds everything after it.
pub async fn check_resume(
    conn: &mut Conn,
    flavor: Flavor,
    from: &BinlogPosition,
    resnapshot_fix: &str,
) -> Result<()> {
    match (flavor, from) {
        (Flavor::MariaDb, BinlogPosition::MariaDb(state)) => {
            if let Some(purged) = mariadb_purged(conn).await? {
                if !state.includes(&purged) {
                    return Err(gap(
                        from,
                        &format!("the transactions up to mariadb-gtid:{purged} (the GTID state before its oldest binlog)"),
                        resnapshot_fix,
                    ));
                }
            }
        }
        (Flavor::MySql, BinlogPosition::MySql(set)) => {
            let purged: Option<String> = conn
                .query_first("SELECT @@GLOBAL.gtid_purged")
                .await
                .map_err(|e| my_error(e, "reading @@gtid_purged"))?;
            let text = purged.unwrap_or_default().replace('\n', "");
            let purged = MySqlGtidSet::parse(&text)
                .map_err(|e| Error::source_fatal(format!("@@gtid_purged {text}: {e}")))?;
            if !set.includes(&purged) {
                return Err(gap(
                    from,
                    &format!("the transactions in mysql-gtid:{purged} (@@gtid_purged)"),
                    resnapshot_fix,
                ));
            }
        }
        (_, BinlogPosition::File { file, .. }) => {
            let files = binlog_files(conn).await?;
            if !files.iter().any(|f| f == file) {
                let oldest = files.first().map_or("none", String::as_str);
                return Err(gap(
                    from,
                    &format!("binlog file {file} (its oldest binlog is {oldest})"),
                    resnapshot_fix,
                ));
            }
        }
        // A position of the other flavor is refused where the stream starts.
        _ => {}
    }
    Ok(())
}
