//! The MariaDB GTID state at a binlog position, for the chunked copy: each chunk opens a
//! consistent snapshot, whose exact position MariaDB gives as a binlog file and offset
//! (`binlog_snapshot_file/position`), and the copy needs it as a GTID state.
//!
//! `BINLOG_GTID_POS(file, pos)` answers that by reading the binlog file from its start up to
//! `pos` (MariaDB 10.11; 11.4 adds a GTID index). A copy asks once per chunk, so on a server
//! whose binlog file is large (up to `max_binlog_size`, 1 GB by default) every chunk cost a
//! read of up to that much: after the bench's 5M-row load, ~11 s of `mariadbd` CPU for 251
//! chunks. A copy therefore remembers its last answer ([`GtidMemo`]) and derives the next one
//! from it:
//!
//! - at the same position (nothing written between two chunks): the same answer;
//! - later in the same file: the remembered state, plus the GTID events between the two
//!   offsets, read with `SHOW BINLOG EVENTS IN file FROM pos` (a seek to `pos`, then only the
//!   events in between, paged);
//! - otherwise (another file, an earlier offset, a gap larger than the prefix it saves, or
//!   anything unexpected in the events read): `BINLOG_GTID_POS`.
//!
//! Why the derived state is `BINLOG_GTID_POS`'s exactly. Both positions are transaction
//! boundaries of the same file (a snapshot's position is the end of the last transaction it
//! holds; `SHOW BINLOG EVENTS` refuses an offset that is not an event's start). The state at a
//! position is, per replication domain, the last GTID written before it, starting from the
//! file's `Gtid_list` (the state at its start). So the state at `to` is the state at `from`
//! with each GTID event in `[from, to)` applied in file order, a later one of a domain
//! replacing an earlier one: what [`MariaState::apply`] does. The walk must end exactly at
//! `to` (an event starting there, or the file's end there); if an event straddles `to`, or
//! the events end before it, the derivation is abandoned for `BINLOG_GTID_POS`. The test
//! `tests/gtid_pos.rs` compares the two at every boundary of a binlog with two domains, DDL
//! and a transaction of many events.

use std::sync::Mutex;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tidewater_core::Result;
use tracing::debug;

use crate::conn::my_error;
use crate::gtid::{MariaGtid, MariaState};

/// Events per `SHOW BINLOG EVENTS` page.
const PAGE: usize = 1000;
/// Server errors that refuse `SHOW BINLOG EVENTS` to this user (access denied).
const REFUSED: [u16; 3] = [1044, 1142, 1227];

/// The last GTID state a copy derived, and whether `SHOW BINLOG EVENTS` may be used (a user
/// without `BINLOG MONITOR` cannot run it: such a copy asks `BINLOG_GTID_POS` each time).
/// Kept per copy, so per server.
#[derive(Debug, Default)]
pub struct GtidMemo(Mutex<Memo>);

#[derive(Debug, Default)]
struct Memo {
    last: Option<(String, u64, MariaState)>,
    no_events: bool,
}

/// How [`gtid_at`] found its answer (for the tests and the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    /// The remembered answer: nothing was written since.
    Same,
    /// The remembered answer and the GTID events after it.
    Forward,
    /// `BINLOG_GTID_POS`.
    Asked,
}

impl GtidMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The GTID state at binlog `file`:`pos` (a transaction boundary), `None` where MariaDB has
/// none (`BINLOG_GTID_POS` answers NULL: a position it does not know). `memo` (one per
/// copy) makes consecutive calls cheap; see the module comment.
pub async fn gtid_at(
    conn: &mut Conn,
    file: &str,
    pos: u64,
    memo: Option<&GtidMemo>,
) -> Result<(Option<MariaState>, Derived)> {
    let Some(memo) = memo else {
        return Ok((ask(conn, file, pos).await?, Derived::Asked));
    };
    let (last, no_events) = {
        let m = memo.lock();
        (m.last.clone(), m.no_events)
    };
    if let Some((f, p, state)) = &last {
        if f == file && *p == pos {
            return Ok((Some(state.clone()), Derived::Same));
        }
        // Forward only while the events between are fewer bytes than the prefix that
        // BINLOG_GTID_POS would read.
        if f == file && *p < pos && pos - p <= *p && !no_events {
            match forward(conn, file, *p, pos, state.clone()).await {
                Ok(Some(state)) => {
                    memo.lock().last = Some((file.to_string(), pos, state.clone()));
                    return Ok((Some(state), Derived::Forward));
                }
                Ok(None) => {
                    debug!(
                        file,
                        from = p,
                        to = pos,
                        "binlog events do not end at the snapshot position; asking BINLOG_GTID_POS"
                    );
                }
                // Refused (no BINLOG MONITOR): the copy asks BINLOG_GTID_POS from now on.
                Err(mysql_async::Error::Server(e)) if REFUSED.contains(&e.code) => {
                    debug!(error = %e.message, "SHOW BINLOG EVENTS refused; asking BINLOG_GTID_POS for every chunk");
                    memo.lock().no_events = true;
                }
                // Any other answer of the server (an offset it calls wrong, a file purged
                // meanwhile): BINLOG_GTID_POS decides, as for a walk that does not end at `pos`.
                Err(mysql_async::Error::Server(e)) => {
                    debug!(error = %e.message, "SHOW BINLOG EVENTS failed; asking BINLOG_GTID_POS");
                }
                Err(e) => {
                    return Err(my_error(
                        e,
                        "reading binlog events for the snapshot's GTID position",
                    ))
                }
            }
        }
    }
    let state = ask(conn, file, pos).await?;
    if let Some(s) = &state {
        memo.lock().last = Some((file.to_string(), pos, s.clone()));
    }
    Ok((state, Derived::Asked))
}

async fn ask(conn: &mut Conn, file: &str, pos: u64) -> Result<Option<MariaState>> {
    let gtid: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .map_err(|e| my_error(e, "reading the snapshot's GTID position"))?;
    gtid.map(|g| MariaState::parse(&g))
        .transpose()
        .map_err(tidewater_core::Error::source_fatal)
}

/// `state` (at `from`) with the GTID events of `[from, to)` applied, or `None` if the events
/// read do not end exactly at `to`.
async fn forward(
    conn: &mut Conn,
    file: &str,
    from: u64,
    to: u64,
    mut state: MariaState,
) -> std::result::Result<Option<MariaState>, mysql_async::Error> {
    let quoted = file.replace('\\', "\\\\").replace('\'', "\\'");
    let mut at = from;
    while at < to {
        let rows: Vec<Row> = conn
            .query(format!(
                "SHOW BINLOG EVENTS IN '{quoted}' FROM {at} LIMIT {PAGE}"
            ))
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        for row in rows {
            // Log_name, Pos, Event_type, Server_id, End_log_pos, Info
            let (Some(start), Some(kind), Some(end), Some(info)) = (
                row.get::<u64, _>(1),
                row.get::<String, _>(2),
                row.get::<u64, _>(4),
                row.get::<Option<String>, _>(5),
            ) else {
                return Ok(None);
            };
            if start != at || end <= start {
                return Ok(None);
            }
            if start >= to {
                break;
            }
            if kind == "Gtid" {
                let Some(gtid) = info.as_deref().and_then(gtid_of_info) else {
                    return Ok(None);
                };
                state.apply(gtid);
            }
            at = end;
        }
    }
    Ok((at == to).then_some(state))
}

/// The GTID in the `Info` column of a `Gtid` event: `GTID 0-1-5`, `BEGIN GTID 0-1-5`,
/// `BEGIN GTID 0-1-5 cid=12`, `XA START X'31',X'',1 GTID 0-1-6`.
pub fn gtid_of_info(info: &str) -> Option<MariaGtid> {
    let mut words = info.split_whitespace();
    words.find(|w| *w == "GTID")?;
    let mut parts = words.next()?.splitn(3, '-');
    let domain = parts.next()?.parse().ok()?;
    let server = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some(MariaGtid {
        domain,
        server,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gtid_of_every_info_form() {
        let g = |d, s, n| {
            Some(MariaGtid {
                domain: d,
                server: s,
                seq: n,
            })
        };
        assert_eq!(gtid_of_info("GTID 0-1-5"), g(0, 1, 5));
        assert_eq!(gtid_of_info("BEGIN GTID 2-10-77"), g(2, 10, 77));
        assert_eq!(gtid_of_info("BEGIN GTID 0-1-5 cid=12"), g(0, 1, 5));
        assert_eq!(gtid_of_info("XA START X'31',X'',1 GTID 0-1-6"), g(0, 1, 6));
        assert_eq!(gtid_of_info("BEGIN GTID x-1-5"), None);
        assert_eq!(gtid_of_info("BEGIN"), None);
        assert_eq!(gtid_of_info("GTID 0-1"), None);
    }
}
