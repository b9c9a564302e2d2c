//! Copying a replicated table again after an `ALTER TABLE` whose effect on existing rows the
//! binlog does not carry. MySQL and MariaDB log `ALTER TABLE` as a statement, never as row
//! events: the default an added column gets in every existing row (explicit, or the type's
//! implicit one for a NOT NULL column), a generated column's values, a `MODIFY` that
//! converts or truncates, a renamed column's values. Which changes are such is decided by
//! `tidewater_core::uncarried` from the table's definition before and after.
//!
//! Why the re-copy is exact: the statement is read at its place in the binlog, so it has
//! committed. A consistent snapshot opened now has a position `S` at or after it, and holds
//! every transaction up to `S` (see `snapshot`). From here the table joins again as a table
//! joining at a restart does (`crate::join`): its changes in transactions before `S` are
//! dropped, and the copy, whose first event is a truncate carrying the copied definition, is
//! sent before the first transaction after `S`. The definition is read after the snapshot
//! opens (at least as new as `S`); a later `ALTER` is checked in its turn. If a copy already
//! waits, the stream is inside a transaction it holds (the copy goes before the first one it
//! does not), so its snapshot includes this statement too and the table joins that copy.

use tidewater_core::uncarried::uncarried_declared_change;
use tidewater_core::{Error, Result, TableId};
use tracing::{info, warn};

use super::Stream;
use crate::conn::connect;
use crate::join::Joining;

/// Why a table the runtime asked for (`SourceContext::recopy`) is copied again.
const REQUESTED: &str = "a copy was requested (verify found differences)";

impl Stream {
    /// Between transactions, with no copy waiting: tables the runtime asked to copy again
    /// (`SourceContext::recopy`) join a snapshot opened now, as after an `ALTER` the binlog
    /// does not carry. The stream has read only committed transactions, so the snapshot's
    /// position is at or past it: the tables' changes up to there are in the copy, the
    /// later ones stream after it. Left untaken when the destination cannot copy tables
    /// while streaming.
    pub(super) async fn recopy_requested(&mut self) -> Result<()> {
        let Some(flavor) = self.recopy else {
            return Ok(());
        };
        if self.tx.is_some() || self.joining.is_some() || self.recopy_requests.is_empty() {
            return Ok(());
        }
        let mut conn = connect(&self.url).await?;
        let at = self.snapshot_covering_stream(&mut conn, flavor).await?;
        let mut joining = Joining::new(at, Vec::new(), conn);
        let mut copied = 0;
        for id in self.recopy_requests.take() {
            let key = (id.schema.clone(), id.name.clone());
            // The definition as of the snapshot or later (see the module comment).
            let table = self.describe(id.clone()).await?;
            if !self.tables.contains_key(&key) || table.schema.columns.is_empty() {
                warn!(table = %id, "a copy was requested for a table that is not replicated (dropped, renamed, or not readable); nothing to copy");
                continue;
            }
            info!(table = %id, change = REQUESTED, copy_at = %joining.at, "the table is copied again at a later position (its changes until then are in the copy)");
            joining.add_recopy(table.clone());
            self.tables.insert(key, table);
            copied += 1;
        }
        if copied > 0 {
            self.joining = Some(joining);
        }
        Ok(())
    }

    /// An `ALTER TABLE` of replicated table `id` read in the binlog: copies the table again
    /// when what it did to existing rows is not carried by row events.
    pub(super) async fn check_alter(&mut self, id: TableId, query: &str) -> Result<()> {
        let key = (id.schema.clone(), id.name.clone());
        let Some(known) = self.tables.get(&key).map(|t| t.schema.clone()) else {
            return Ok(());
        };
        let now = self.describe(id.clone()).await?;
        if now.schema.columns.is_empty() {
            // Dropped or renamed since: its later statements tell.
            return Ok(());
        }
        let Some(reason) = uncarried_declared_change(&known, &now.schema) else {
            return Ok(());
        };
        let Some(flavor) = self.recopy else {
            return Err(Error::source_fatal(format!(
                "{id} changed at the source ({reason}) by `{query}` at {}: existing rows may have \
                 changed without row events in the binlog, and this destination cannot copy a \
                 table again while streaming. Nothing of it was applied. Fix: re-snapshot into a \
                 new destination (a new sink.path or dataset), or remove {id} from source.tables",
                self.position
            )));
        };
        if self.joining.is_none() {
            let mut conn = connect(&self.url).await?;
            let at = self.snapshot_covering_stream(&mut conn, flavor).await?;
            self.joining = Some(Joining::new(at, Vec::new(), conn));
        }
        // The definition as of the snapshot or later (see the module comment).
        let table = self.describe(id.clone()).await?;
        if table.schema.columns.is_empty() {
            warn!(table = %id, change = %reason, "a replicated table changed and was then dropped or renamed at the source");
            return Ok(());
        }
        let joining = self.joining.as_mut().expect("opened above");
        info!(table = %id, change = %reason, statement = %query, copy_at = %joining.at, "the binlog does not carry what this statement did to existing rows: the table is copied again at a later position (its changes until then are in the copy)");
        joining.add_recopy(table.clone());
        self.tables.insert(key, table);
        Ok(())
    }
}
