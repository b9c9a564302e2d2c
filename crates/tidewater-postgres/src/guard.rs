//! The position guard and slot ownership: a replica never resumes past a gap in its stream,
//! and never replaces a replication slot another replica depends on.
//!
//! **Position guard** (at every start and every retry, before streaming resumes). The slot's
//! `confirmed_flush_lsn` F is how far the server believes this replica has applied: it
//! decodes nothing that commits before F again, and may discard that WAL. The sink stores
//! `position` P (the last applied transaction's commit LSN) and `acknowledged` A ≥ P (P, or
//! an idle point past P before which no selected transaction commits). The apply loop
//! publishes a position for confirmation only after the sink stored it, and the stream
//! confirms exactly what was published (`crate::stream`), so while this replica alone drives
//! the slot and its file is intact, F ≤ A (a new slot starts at its consistent point, the
//! snapshot's stored position). Hence F > A (or restart_lsn > A) means the slot was confirmed
//! by someone else (a second replica on the same slot, a slot recreated or advanced by hand)
//! or the sink lost committed data (its `.wal` deleted or truncated after a crash): the
//! transactions in (P, F) can never be streamed again, and resuming would silently skip them.
//! Conversely F ≤ A loses nothing: every transaction committing after P is decoded again
//! (none commits in (P, A], and the server starts at max(P, F)), and those at or below P are
//! skipped by their commit LSN. No false refusal: F ≤ A holds on every ordinary restart,
//! clean or after a crash. A sink that keeps no `acknowledged` (BigQuery, or a DuckDB file
//! written before it was kept) is not compared; the file's next commit starts keeping it.
//!
//! **Ownership.** A slot belongs to one replica, named by the UUID stored in its sink. The
//! claim is recorded where any replica of the database can read it: a line
//! `tidewater replica <uuid> owns replication slot <slot>` in the comment of the replica's
//! publication (tidewater writes no source table, and a slot has no comment of its own). It
//! is written before the slot is created, under an advisory lock. A replica without a
//! committed snapshot may drop and recreate an existing slot only when the slot is its own
//! (its previous attempt was interrupted) or nobody's (released, or made by an older
//! tidewater); a slot claimed by another replica is refused. A replica that finds its slot
//! unusable (a gap, WAL lost) releases its claim, so that a new snapshot into a new file can
//! take the slot over. A claim cannot be written without ownership of the publication (a
//! publication the user created): the replica then warns and runs unclaimed, and a second
//! replica is not told apart (its resume is still caught by the position guard).

use tidewater_core::sql::quote_literal;
use tidewater_core::{Error, Position, Result};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::conn::{format_lsn, pg_error};
use crate::setup::{quote_ident, SlotInfo};

/// Why a resume is refused when the slot cannot deliver the changes since the committed
/// position (the fix, how to re-snapshot, comes from the sink: `SourceContext::resnapshot_fix`).
pub const CANNOT_CATCH_UP: &str = "the replica cannot catch up from here";

/// What to do when a second replica is configured with a slot another one owns.
const SHARED_SLOT_FIX: &str = "Each replica needs its own slot. Fix: set source.slot (and \
     source.publication, if its tables differ) to names of its own for this replica; if the \
     owning replica is gone for good, drop its slot instead";

/// The advisory lock that serialises claims (any number: it only has to be the same for all).
const CLAIM_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('tidewater replication slot owners'))";

fn claim_line(replica: &str, slot: &str) -> String {
    format!("tidewater replica {replica} owns replication slot {slot}")
}

/// The replica a comment line claims `slot` for, if it is such a line.
fn claimed_by<'a>(line: &'a str, slot: &str) -> Option<&'a str> {
    let rest = line.trim().strip_prefix("tidewater replica ")?;
    let (replica, s) = rest.split_once(" owns replication slot ")?;
    (s == slot).then_some(replica)
}

/// Whether the slot's server-side view is past what the replica stored: the refusal, with
/// both positions and the fix.
pub fn position_gap(
    slot: &str,
    info: &SlotInfo,
    stored: &Position,
    acknowledged: u64,
    resnapshot_fix: &str,
) -> Option<Error> {
    let lsn = |l: Option<u64>| l.map_or_else(|| "-".to_string(), format_lsn);
    let past = |l: Option<u64>| l.is_some_and(|l| l > acknowledged);
    if !past(info.confirmed_flush_lsn) && !past(info.restart_lsn) {
        return None;
    }
    Some(
        Error::source_fatal(format!(
        "replication slot {slot} is at confirmed_flush_lsn {} (restart_lsn {}), past what this \
         replica has stored: position {stored}, acknowledged up to {}. The source has discarded \
         the changes in between, so resuming would silently skip them. This happens when another \
         replica (another config with the same source.slot) used the slot, when the slot was \
         recreated or advanced by hand, or when the DuckDB file lost committed data (its .wal \
         deleted or truncated after a crash); {CANNOT_CATCH_UP}",
        lsn(info.confirmed_flush_lsn),
        lsn(info.restart_lsn),
        format_lsn(acknowledged),
    ))
        .with_fix(format!("{resnapshot_fix} (and replaces the slot)")),
    )
}

/// Reads and records slot claims for one replica.
pub struct Owner<'a> {
    pub client: &'a Client,
    pub slot: &'a str,
    pub publication: &'a str,
    /// This replica's UUID; `None` (a sink without one): claims are neither checked nor made.
    pub replica: Option<&'a str>,
}

impl Owner<'_> {
    /// Every publication of the database with its comment ('' for none).
    async fn comments(&self) -> Result<Vec<(String, String)>> {
        let rows = self
            .client
            .query(
                "SELECT pubname::text, coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication",
                &[],
            )
            .await
            .map_err(|e| pg_error(e, "reading publication comments"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every (publication, replica) that claims the slot.
    async fn claims(&self) -> Result<Vec<(String, String)>> {
        let mut claims = Vec::new();
        for (publication, comment) in self.comments().await? {
            for line in comment.lines() {
                if let Some(replica) = claimed_by(line, self.slot) {
                    claims.push((publication.clone(), replica.to_string()));
                }
            }
        }
        Ok(claims)
    }

    /// Another replica's claim on the slot, if any (a replica without an identity has no
    /// claim of its own: every claim is another's).
    async fn other_owner(&self) -> Result<Option<(String, String)>> {
        Ok(self.others(self.claims().await?))
    }

    fn others(&self, claims: Vec<(String, String)>) -> Option<(String, String)> {
        claims
            .into_iter()
            .find(|(_, r)| Some(r.as_str()) != self.replica)
    }

    /// Before a snapshot, with the slot existing: whether this replica may replace it. An
    /// error when it is another replica's.
    pub async fn may_replace(&self) -> Result<()> {
        if let Some((publication, other)) = self.other_owner().await? {
            let slot = self.slot;
            return Err(Error::source_fatal(format!(
                "replication slot {slot} belongs to another replica ({other}, recorded in the \
                 comment of publication {publication}), which resumes from it: replacing it would \
                 make that replica lose changes. {SHARED_SLOT_FIX}: \
                 SELECT pg_drop_replication_slot('{slot}')"
            )));
        }
        Ok(())
    }

    /// Before resuming: the slot must not have been claimed by another replica since.
    /// Returns whether this replica's claim is recorded.
    pub async fn still_mine(&self, stored: &Position) -> Result<bool> {
        let claims = self.claims().await?;
        let claimed = !claims.is_empty();
        if let Some((publication, other)) = self.others(claims) {
            let slot = self.slot;
            let me = self.replica.unwrap_or("a replica without an id");
            return Err(Error::source_fatal(format!(
                "replication slot {slot} now belongs to another replica ({other}, recorded in the \
                 comment of publication {publication}), not to this one ({me}, applied up to \
                 {stored}): the other replica's snapshot replaced the slot, so the changes this \
                 replica needs are gone. {SHARED_SLOT_FIX}; this replica then takes a new \
                 snapshot: set source.slot to a new name and sink.path to a new file"
            )));
        }
        Ok(claimed)
    }

    /// Records this replica as the slot's owner in its publication's comment (replacing any
    /// other claim on the slot). Best effort: without ownership of the publication it warns.
    pub async fn claim(&self) {
        let Some(me) = self.replica else {
            return;
        };
        if let Err(e) = self.rewrite(Some(me)).await {
            warn!(slot = %self.slot, publication = %self.publication, error = %e, "cannot record this replica as the owner of its replication slot (in the publication's comment, which needs ownership of the publication): a second replica configured with the same slot will not be told apart");
        } else {
            info!(slot = %self.slot, replica = %me, "replication slot claimed");
        }
    }

    /// Removes this replica's claim (it cannot use the slot any more), so that a new snapshot
    /// may take the slot over. Best effort.
    pub async fn release(&self) {
        if self.replica.is_some() {
            if let Err(e) = self.rewrite(None).await {
                warn!(slot = %self.slot, error = %e, "cannot release this replica's claim on its replication slot");
            }
        }
    }

    /// Drops every claim on the slot, then adds `owner`'s to our publication, in one
    /// transaction under the claim lock.
    async fn rewrite(&self, owner: Option<&str>) -> Result<()> {
        self.client
            .batch_execute(&format!("BEGIN; {CLAIM_LOCK}"))
            .await
            .map_err(|e| pg_error(e, "locking slot claims"))?;
        let result = self.rewrite_locked(owner).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self
            .client
            .batch_execute(end)
            .await
            .map_err(|e| pg_error(e, "recording the slot claim"));
        result.and(ended)
    }

    async fn rewrite_locked(&self, owner: Option<&str>) -> Result<()> {
        for (publication, comment) in self.comments().await? {
            let mut lines: Vec<String> = comment
                .lines()
                .filter(|l| claimed_by(l, self.slot).is_none())
                .map(str::to_string)
                .collect();
            let ours = publication == self.publication;
            match owner {
                Some(me) if ours => lines.push(claim_line(me, self.slot)),
                _ if lines.len() == comment.lines().count() => continue,
                _ => {}
            }
            let text = lines.join("\n");
            let value = if text.is_empty() {
                "NULL".to_string()
            } else {
                quote_literal(&text)
            };
            let sql = format!(
                "COMMENT ON PUBLICATION {} IS {value}",
                quote_ident(&publication)
            );
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error(e, &format!("commenting publication {publication}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(confirmed: u64, restart: u64) -> SlotInfo {
        SlotInfo {
            plugin: Some("pgoutput".into()),
            database: Some("postgres".into()),
            active_pid: None,
            wal_status: Some("reserved".into()),
            confirmed_flush_lsn: Some(confirmed),
            restart_lsn: Some(restart),
        }
    }

    #[test]
    fn a_slot_at_or_behind_the_acknowledged_position_is_no_gap() {
        let p = Position("0/100".into());
        assert!(position_gap("s", &info(0x100, 0x80), &p, 0x100, "fix").is_none());
        assert!(position_gap("s", &info(0x180, 0x80), &p, 0x200, "fix").is_none());
        let e = position_gap("s", &info(0x300, 0x80), &p, 0x200, "use a new sink.path").unwrap();
        let m = e.to_string();
        assert!(
            m.contains("confirmed_flush_lsn 0/300") && m.contains("position 0/100"),
            "{m}"
        );
        assert!(
            m.contains("acknowledged up to 0/200") && m.contains("sink.path"),
            "{m}"
        );
        assert!(position_gap("s", &info(0x100, 0x300), &p, 0x200, "fix").is_some());
    }

    #[test]
    fn claim_lines_name_their_slot_exactly() {
        let line = claim_line("abc", "tidewater");
        assert_eq!(claimed_by(&line, "tidewater"), Some("abc"));
        assert_eq!(claimed_by(&line, "tide"), None);
        assert_eq!(claimed_by("some user comment", "tidewater"), None);
    }
}
