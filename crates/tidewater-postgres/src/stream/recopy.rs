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

use tidewater_core::{Error, Result, TableId, TableSchema};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::{State, Stream};
use crate::catalog::describe_relation;
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
        for id in self.recopy_requests.take() {
            let client = self.client;
            let oid = self.answering(st, relation_oid(client, &id)).await?;
            match oid.filter(|_| self.tables.contains_key(&id)) {
                Some(oid) => self.recopy(st, oid, &id, REQUESTED).await?,
                None => {
                    warn!(table = %id, "a copy was requested for a table that is not replicated (dropped, renamed, or joining); nothing to copy")
                }
            }
        }
        Ok(())
    }

    /// Copies `id` again at a point of the stream after its change `reason` (seen at
    /// relation `oid` in the open transaction); its changes until then are dropped.
    pub(super) async fn recopy(
        &mut self,
        st: &mut State,
        oid: u32,
        id: &TableId,
        reason: &str,
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
async fn relation_oid(client: &Client, id: &TableId) -> Result<Option<u32>> {
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
