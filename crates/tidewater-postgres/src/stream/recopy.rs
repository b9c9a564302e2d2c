//! Re-copying a replicated table whose definition changed in a way the stream does not carry
//! (a column added or renamed, a type rewritten: see `tidewater_core::uncarried`). pgoutput
//! sends row changes only; what `ALTER TABLE ... ADD COLUMN ... DEFAULT`, a volatile default
//! or `ALTER COLUMN ... TYPE` does to the existing rows never appears in it.
//!
//! Why the re-copy is exact: the Relation message that shows the change arrives inside a
//! transaction T, before T's first change of the table, and the change committed before T
//! (pgoutput describes a table as of the point it decodes). T itself has committed at the
//! source (only committed transactions are decoded). The table then joins again exactly as a
//! new table does (`crate::join`): a temporary slot's exported snapshot, created now, has a
//! consistent point C after T's commit, so it holds the change and every transaction that
//! commits before C. The stream drops the table's changes of those transactions (T's
//! included) and sends the copy at C, before the first transaction after C; the copy starts
//! with a truncate carrying the copied definition, so the replica's old rows go in the same
//! destination transaction as the copied ones come. The table is described after the slot
//! exists, so its copied definition is at least as new as C; a later Relation message that
//! adds to it triggers another re-copy. If a copy already waits at C' (the stream is then
//! inside a transaction that commits before C', because the copy goes first), the table
//! joins that copy, whose snapshot includes the change as well.

use std::sync::Arc;

use tidewater_core::{CopyProgress, Error, Result, SourceEvent, TableId, TableSchema};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::chunks::current_snapshot;
use super::{State, Stream};
use crate::catalog::{describe_relation, SourceTable};
use crate::conn::{format_lsn, pg_error};

/// Why a table the runtime asked for (`SourceContext::recopy`) is copied again.
const REQUESTED: &str = "a copy was requested (verify found differences)";

impl Stream<'_> {
    /// Tables the runtime asked to copy again (`SourceContext::recopy`), taken between
    /// transactions on the discovery tick, go through `recopy` as a table whose change the
    /// stream does not carry does: outside a transaction every change seen so far has
    /// committed, so a copy at a later point of the stream replaces the replica rows exactly.
    /// Left untaken when the destination cannot copy tables while streaming.
    pub(super) async fn recopy_requested(&mut self, st: &mut State) -> Result<()> {
        if self.joiner.is_none() || st.in_tx.is_some() {
            return Ok(());
        }
        // Copied in chunks: every table asked for starts in one transaction (all or none of
        // them after a crash).
        let mut chunked = Vec::new();
        for id in self.recopy_requests.take() {
            let client = self.client;
            let oid = self.answering(st, relation_oid(client, &id)).await?;
            let joining = st.joining.as_ref().is_some_and(|j| j.ids.contains(&id));
            match oid.filter(|_| self.tables.contains_key(&id)) {
                Some(oid) if self.copy.is_some() && !joining => {
                    chunked.extend(self.restart_copy(st, oid, &id, REQUESTED).await?);
                }
                Some(oid) => self.recopy(st, oid, &id, REQUESTED, true).await?,
                None => {
                    warn!(table = %id, "a copy was requested for a table that is not replicated (dropped, renamed, or joining); nothing to copy")
                }
            }
        }
        self.send_restarts(st, chunked).await
    }

    /// Copies `id` again at a point of the stream after its change `reason` (seen at
    /// relation `oid` in the open transaction); its changes until then are dropped.
    ///
    /// `delivered`: the stream has delivered every change of the table so far, and delivers
    /// the rest with its current definition. Then, when the destination copies in chunks, so
    /// does the re-copy: each chunk shows every delivered transaction (rule 1 of
    /// `tidewater_core::copy`). Otherwise the table is copied at the consistent point of a new
    /// slot's exported snapshot, which waits for every earlier commit, and its changes until
    /// then are dropped:
    /// - changes that were never published (a table that was out of its publication) are not
    ///   delivered, and a snapshot taken right after the table is put back may still miss one
    ///   that committed just before (its commit logged, not yet visible);
    /// - at start, the stream replays transactions from before a change made while stopped,
    ///   with the table's old definition.
    pub(super) async fn recopy(
        &mut self,
        st: &mut State,
        oid: u32,
        id: &TableId,
        reason: &str,
        delivered: bool,
    ) -> Result<()> {
        let at = format_lsn(st.tx_lsn);
        // (before, held) of a copy that waits; no reference to it lives across an await.
        let waiting = st
            .joining
            .as_ref()
            .map(|j| (st.tx_lsn < j.lsn, j.ids.contains(id)));
        match waiting {
            // Held by the waiting copy, which is taken after this change.
            Some((true, true)) => return Ok(()),
            _ if delivered && self.copy.is_some() => {
                return self.recopy_in_chunks(st, oid, id, reason).await
            }
            Some((false, _)) => {
                return Err(Error::source_fatal(format!(
                    "internal: {id} must be copied again at {at}, past the waiting copy"
                )))
            }
            _ => {}
        }
        let Some(joiner) = self.joiner.take() else {
            return Err(Error::source_fatal(format!(
                "{id} changed at the source ({reason}; seen in the transaction at {at}): existing \
                 rows may have changed without row changes in the stream, and this destination \
                 cannot copy a table again while streaming. Nothing of this transaction was \
                 applied. Fix: re-snapshot into a new destination (a new sink.path or dataset), \
                 or remove {id} from source.tables"
            )));
        };
        let opened = if st.joining.is_none() {
            self.answering(st, joiner.begin(Vec::new()))
                .await
                .map(|j| st.joining = Some(j))
        } else {
            Ok(())
        };
        self.joiner = Some(joiner);
        opened?;
        let client = self.client;
        let table = self.answering(st, describe_relation(client, oid)).await?;
        match table {
            Some(t) if t.schema.id == *id => {
                let joining = st.joining.as_ref().expect("opened above");
                let copy_at = joining.lsn;
                info!(table = %id, change = %reason, seen_at = %at, copy_at = %format_lsn(copy_at), "the stream does not carry what this change did to existing rows: the table is copied again at a later position (its changes until then are in the copy)");
                self.adopt_key(st, oid, &t.schema);
                st.joining.as_mut().expect("opened above").add_recopy(t);
            }
            _ => {
                // Dropped or renamed since: nothing can be copied. Its changes are not applied
                // any more; the replica keeps the table as it was before the change.
                warn!(table = %id, change = %reason, "a replicated table changed and was then dropped or renamed at the source: the replica keeps it as it was before the change");
                st.relations.insert(oid, None);
            }
        }
        self.send_status(st, true).await
    }

    /// Copies `id` again in chunks (`tidewater_core::copy`, "Copies again"): its replica rows
    /// are removed at this point of the stream, in the open transaction (the change was seen
    /// in it) or in one of their own between transactions, together with a fresh copy
    /// progress; the copy's chunks follow between later transactions.
    async fn recopy_in_chunks(
        &mut self,
        st: &mut State,
        oid: u32,
        id: &TableId,
        reason: &str,
    ) -> Result<()> {
        let restart = self.restart_copy(st, oid, id, reason).await?;
        self.send_restarts(st, restart.into_iter().collect()).await
    }

    /// Starts the copy of `id` over (its definition as the stream applies it from here, and
    /// its fresh progress), for `send_restarts`; `None` when the table is gone.
    async fn restart_copy(
        &mut self,
        st: &mut State,
        oid: u32,
        id: &TableId,
        reason: &str,
    ) -> Result<Option<(Arc<TableSchema>, CopyProgress)>> {
        let client = self.client;
        let described = self.answering(st, describe_relation(client, oid)).await?;
        let Some(t) = described.filter(|t| t.schema.id == *id) else {
            warn!(table = %id, change = %reason, "a replicated table changed and was then dropped or renamed at the source: the replica keeps it as it was before the change");
            st.relations.insert(oid, None);
            return Ok(None);
        };
        self.adopt_key(st, oid, &t.schema);
        // The definition the stream applies from here (its changes carry it).
        let schema = self.tables.get(id).cloned().unwrap_or(t.schema);
        let copy = self.copy.as_mut().expect("copying in chunks");
        let progress = copy.restart(id.clone(), !schema.has_key());
        let at = if st.in_tx == Some(false) {
            st.tx_lsn
        } else {
            st.stream_position()
        };
        info!(table = %id, change = %reason, at = %format_lsn(at), "the table is copied again in chunks while streaming (its replica rows are replaced from here)");
        Ok(Some((schema, progress)))
    }

    /// Tables just published (`join`) are copied in chunks, each behind its barrier (see
    /// `chunks::Copying::join`): their replica tables are created (a truncate carrying the
    /// definition) with a fresh progress, in one transaction at the stream's position.
    pub(super) async fn join_in_chunks(
        &mut self,
        st: &mut State,
        tables: Vec<SourceTable>,
    ) -> Result<()> {
        let client = self.client;
        let barrier = self.answering(st, current_snapshot(client)).await?;
        let copy = self.copy.as_mut().expect("copying in chunks");
        let mut restarts = Vec::new();
        for t in &tables {
            let id = &t.schema.id;
            restarts.push((
                t.schema.clone(),
                copy.join(id.clone(), !t.schema.has_key(), &barrier),
            ));
            // A table refused before has joined: the cause was fixed.
            if self.unreplicated.clear(id) {
                info!(table = %id, "a table that could not join has joined the replica");
            }
        }
        let names: Vec<String> = tables.iter().map(|t| t.schema.id.to_string()).collect();
        info!(tables = %names.join(", "), at = %format_lsn(st.stream_position()), "tables join the replica: copied in chunks while streaming, their changes applied from here");
        self.send_restarts(st, restarts).await
    }

    /// A replicated table put back into its publication after changes were missed (see
    /// `republish`) is copied again in chunks behind a barrier, like a joining table: its
    /// missed changes are not delivered, only in its rows. It takes the key of its current
    /// definition (`table`, described after it was put back).
    pub(super) async fn recopy_missed(&mut self, st: &mut State, table: SourceTable) -> Result<()> {
        let client = self.client;
        let barrier = self.answering(st, current_snapshot(client)).await?;
        self.adopt_key(st, table.oid, &table.schema);
        let id = &table.schema.id;
        let schema = self.tables.get(id).cloned().unwrap_or(table.schema.clone());
        let copy = self.copy.as_mut().expect("copying in chunks");
        let progress = copy.join(id.clone(), !schema.has_key(), &barrier);
        info!(table = %id, change = %super::republish::MISSED, at = %format_lsn(st.stream_position()), "the table is copied again in chunks while streaming (its replica rows are replaced from here)");
        self.send_restarts(st, vec![(schema, progress)]).await
    }

    /// Removes the replica rows of the tables whose copy starts over and stores their fresh
    /// progress: in the open transaction, or in one transaction of their own between
    /// transactions.
    async fn send_restarts(
        &mut self,
        st: &mut State,
        restarts: Vec<(Arc<TableSchema>, CopyProgress)>,
    ) -> Result<()> {
        if restarts.is_empty() {
            return Ok(());
        }
        let in_tx = st.in_tx == Some(false);
        if in_tx {
            // The open transaction's changes so far go first: none of them is of these
            // tables' new definitions.
            self.flush_chunk(st).await?;
        } else {
            let tx = st.position_tx();
            self.send(st, SourceEvent::Begin(tx)).await?;
        }
        let (schemas, progress): (Vec<_>, Vec<_>) = restarts.into_iter().unzip();
        self.send(st, SourceEvent::Truncate(schemas)).await?;
        self.send(st, SourceEvent::Progress(progress)).await?;
        if !in_tx {
            self.send(st, SourceEvent::Commit).await?;
        }
        Ok(())
    }

    /// The stream's definition of the table takes the copied one's primary key (a key added
    /// or changed at the source): pgoutput's Relation messages flag replica identity columns,
    /// not the key, so the stream keeps the key it knows until a copy tells it.
    fn adopt_key(&mut self, st: &mut State, oid: u32, copied: &TableSchema) {
        let Some(current) = self.tables.get(&copied.id) else {
            return;
        };
        let key: Option<Vec<usize>> = copied
            .key
            .iter()
            .map(|&k| {
                let name = &copied.columns[k].name;
                current.columns.iter().position(|c| &c.name == name)
            })
            .collect();
        match key {
            Some(key) if key != current.key => {
                let mut schema = (**current).clone();
                schema.key = key;
                let schema = Arc::new(schema);
                self.tables.insert(copied.id.clone(), schema.clone());
                st.relations.insert(oid, Some(schema));
            }
            _ => {}
        }
    }
}

/// The relation OID of table `id`, if it exists.
pub(super) async fn relation_oid(client: &Client, id: &TableId) -> Result<Option<u32>> {
    let row = client
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&id.schema, &id.name],
        )
        .await
        .map_err(|e| pg_error(e, &format!("looking up {id}")))?;
    Ok(row.map(|r| r.get(0)))
}
