//! Copying a replicated table again after an `ALTER TABLE` whose effect on existing rows the
//! binlog does not carry, or after a `CREATE TABLE` / `RENAME` that gives its name to a new
//! table (dropped and created again, or swapped in by an online schema change tool: no row
//! event removes the old rows, and the new table's rows were written under another name),
//! and after statements that change rows without row events: partition operations, and data
//! changes logged as statements. A table renamed into the selection joins the same way. MySQL and MariaDB log `ALTER TABLE` as a statement, never as row
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

use std::collections::HashSet;

use tidewater_core::stats::now_us;
use tidewater_core::uncarried::uncarried_declared_change;
use tidewater_core::{Error, Position, Result, SourceEvent, TableId, TxInfo};
use tracing::{info, warn};

use super::Stream;
use crate::catalog::SourceTable;
use crate::conn::connect;
use crate::join::Joining;

/// Why a table the runtime asked for (`SourceContext::recopy`) is copied again.
const REQUESTED: &str = "a copy was requested (verify found differences)";
/// Why a table is copied again at a restart (`crate::join`, "In chunks").
const STOPPED: &str = "changed while tidewater was stopped, in a way the binlog does not carry";
/// A statement in the binlog that changed a table's rows without row events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoRowEvents {
    /// A `CREATE TABLE` (or a `RENAME` onto it) of a replicated name: the table was dropped or
    /// renamed away before, and a new one took its name. No row event removes the old rows,
    /// and the new table's rows were written under another name. (A `CREATE TABLE IF NOT
    /// EXISTS` that found the table in place, which MySQL logs all the same, is not one: the
    /// stream knows which names it saw dropped or renamed away, `Stream::gone`.)
    Created,
    /// A table renamed into the selection (`RENAME TABLE x.t TO shop.t`): unlike a table
    /// created while streaming, it arrives with rows no row event carries.
    RenamedIn,
    /// A partition operation that removes or moves rows (`ddl::Ddl::moves_rows`).
    Partitions,
    /// A data change logged as a statement (`binlog_format` STATEMENT in its session).
    Statement,
}

impl NoRowEvents {
    fn reason(self) -> &'static str {
        match self {
            NoRowEvents::Created => "created again at the source (a new table under the name)",
            NoRowEvents::RenamedIn => "renamed into source.tables (with rows no row event carries)",
            NoRowEvents::Partitions => {
                "rows removed or moved by a partition operation (no row events)"
            }
            NoRowEvents::Statement => {
                "changed by a statement logged without row events (binlog_format STATEMENT)"
            }
        }
    }
}

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
        if self.copy.is_some() {
            // Every table asked for starts in one transaction (all or none after a crash).
            let mut tables = Vec::new();
            for id in self.recopy_requests.take() {
                let table = self.describe(id.clone()).await?;
                let key = (id.schema.clone(), id.name.clone());
                if !self.tables.contains_key(&key) || table.schema.columns.is_empty() {
                    warn!(table = %id, "a copy was requested for a table that is not replicated (dropped, renamed, or not readable); nothing to copy");
                    continue;
                }
                tables.push(table);
            }
            return self.recopy_in_chunks(tables, REQUESTED).await;
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
        self.copy_again_after(id, now, query, &reason).await
    }

    /// `query`, read in the binlog, changed the rows of table `id` without row events (`why`):
    /// the table is copied again as it is now, or, when it is gone again since, not (its later
    /// statements tell).
    pub(super) async fn copy_again_as_now(
        &mut self,
        id: TableId,
        query: &str,
        why: NoRowEvents,
    ) -> Result<()> {
        let now = self.describe(id.clone()).await?;
        if now.schema.columns.is_empty() {
            return Ok(());
        }
        if why == NoRowEvents::Statement {
            warn!(table = %id, statement = %query, "a change of a replicated table was logged as a statement, not as row events (binlog_format is not ROW in the session that made it): the table is copied again; set binlog_format = ROW for every session");
        }
        self.copy_again_after(id, now, query, why.reason()).await
    }

    /// A data-changing statement read in the binlog (`binlog_format` STATEMENT or MIXED in
    /// the session that ran it, never row events): the replicated tables it names are copied
    /// again, since their changed rows are not in the stream. (Its effects through triggers
    /// or views on other tables are not seen: `check` and the docs require ROW for every
    /// session.)
    pub(super) async fn check_statement_change(&mut self, query: &str, db: &str) -> Result<()> {
        let Some(named) = crate::ddl::changed_tables(query, db, |k| self.tables.contains_key(k))
        else {
            return Ok(());
        };
        for (schema, name) in named {
            let id = TableId::new(schema, name);
            if !self.held(&id) {
                self.copy_again_as_now(id, query, NoRowEvents::Statement)
                    .await?;
            }
        }
        Ok(())
    }

    /// Copies replicated table `id` again after `query` (read in the binlog, `reason`: why
    /// the replica's rows are not the table's): in chunks from here, or at a snapshot opened
    /// now that the stream then passes. `now`: the table as described after the statement.
    async fn copy_again_after(
        &mut self,
        id: TableId,
        now: SourceTable,
        query: &str,
        reason: &str,
    ) -> Result<()> {
        let key = (id.schema.clone(), id.name.clone());
        let Some(flavor) = self.recopy else {
            return Err(Error::source_fatal(format!(
                "{id} changed at the source ({reason}) by `{query}` at {}: existing rows may have \
                 changed without row events in the binlog, and this destination cannot copy a \
                 table again while streaming. Nothing of it was applied. Fix: re-snapshot into a \
                 new destination (a new sink.path or dataset), or remove {id} from source.tables",
                self.position
            )));
        };
        if self.copy.is_some() && !self.held(&id) {
            return self.recopy_in_chunks(vec![now], reason).await;
        }
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

    /// The stream has reached the cut of tables copied in chunks at a restart (see `join`,
    /// "In chunks"): they join, or (`recopy`: the replica holds them) are copied again, in
    /// chunks from this position, in one transaction of their own between transactions: a
    /// truncate carrying each table's definition (creating, altering or re-creating its
    /// replica table) and their fresh copy progress. A table gone since it was described
    /// (dropped, renamed, or unreadable) is not copied: it is not replicated from here on.
    pub(super) async fn join_in_chunks(
        &mut self,
        tables: Vec<SourceTable>,
        recopy: &HashSet<TableId>,
    ) -> Result<()> {
        let at = self.position.clone();
        let copy = self.copy.as_mut().expect("copying in chunks");
        let (mut schemas, mut progress, mut joined) = (Vec::new(), Vec::new(), Vec::new());
        for t in tables {
            let id = t.schema.id.clone();
            let key = (id.schema.clone(), id.name.clone());
            if t.schema.columns.is_empty() {
                warn!(table = %id, "a table to copy at this start was dropped, renamed or made unreadable since: it is not copied");
                self.tables.remove(&key);
                continue;
            }
            progress.push(copy.restart(id.clone(), !t.schema.has_key()));
            schemas.push(t.schema.clone());
            if recopy.contains(&id) {
                info!(table = %id, change = STOPPED, at = %at, "the table is copied again in chunks while streaming (its replica rows are replaced from here)");
            } else {
                joined.push(id.to_string());
            }
            if self.unreplicated.clear(&id) {
                info!(table = %id, "a table that could not be replicated has joined the replica");
            }
            self.tables.insert(key, t);
        }
        if !joined.is_empty() {
            info!(tables = %joined.join(", "), at = %at, "tables join the replica: copied in chunks while streaming, their changes applied from here");
        }
        if schemas.is_empty() {
            return Ok(());
        }
        let tx = TxInfo {
            position: Position(at.to_string()),
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        };
        self.send(SourceEvent::Begin(tx)).await?;
        self.send(SourceEvent::Truncate(schemas)).await?;
        self.send(SourceEvent::Progress(progress)).await?;
        self.send(SourceEvent::Commit).await
    }

    /// Copies `tables` again in chunks (`tidewater_core::copy`, "Copies again"): their replica
    /// rows are removed at this point of the stream, in the open statement's transaction (an
    /// `ALTER` read in the binlog) or in one of their own between transactions, together
    /// with a fresh copy progress each. Every chunk is read by a snapshot that has reached the
    /// stream's position, so after the `ALTER`.
    async fn recopy_in_chunks(&mut self, tables: Vec<SourceTable>, reason: &str) -> Result<()> {
        if tables.is_empty() {
            return Ok(());
        }
        let copy = self.copy.as_mut().expect("copying in chunks");
        let mut progress = Vec::new();
        for t in &tables {
            progress.push(copy.restart(t.schema.id.clone(), !t.schema.has_key()));
            info!(table = %t.schema.id, change = %reason, at = %self.position, "the table is copied again in chunks while streaming (its replica rows are replaced from here)");
        }
        let open = match self.tx.as_mut() {
            Some(tx) => {
                let begin = (!tx.begun).then(|| tx.info.clone());
                tx.begun = true;
                begin.map(|info| (info, false))
            }
            None => Some((
                TxInfo {
                    position: Position(self.position.to_string()),
                    commit_time_us: now_us(),
                    backlog: tidewater_core::Backlog::Unknown,
                },
                true,
            )),
        };
        let own = open.as_ref().is_some_and(|(_, own)| *own);
        if let Some((info, _)) = open {
            self.send(SourceEvent::Begin(info)).await?;
        }
        let schemas = tables.iter().map(|t| t.schema.clone()).collect();
        self.send(SourceEvent::Truncate(schemas)).await?;
        self.send(SourceEvent::Progress(progress)).await?;
        if own {
            self.send(SourceEvent::Commit).await?;
        }
        for t in tables {
            let id = &t.schema.id;
            self.tables.insert((id.schema.clone(), id.name.clone()), t);
        }
        Ok(())
    }
}
