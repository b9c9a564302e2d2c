//! Partitioned tables whose partitions change. `ALTER TABLE p DETACH PARTITION`, `DROP TABLE`
//! of a partition and `ALTER TABLE p ATTACH PARTITION x` take rows out of `p` or bring rows
//! into it with no row change in the WAL, so logical decoding never reports them; nor is a
//! `TRUNCATE` of a single partition published when the publication publishes via the root
//! (`setup`). The discovery poll compares each replicated partitioned table's leaf partitions
//! with the last look; a leaf gone, a leaf with new storage (`relfilenode`: `TRUNCATE` gives
//! it new storage), or a new leaf that holds rows (attached with them; a partition created
//! empty brings none, and its later rows stream), has the table copied again. New storage
//! without a row removed (`VACUUM FULL`, `CLUSTER`, `SET TABLESPACE` of a partition, or a
//! `TRUNCATE` of the whole table, which is published) copies it needlessly, never wrongly.
//! A leaf gone that is now a replicated table of its own (a replicated table attached as a
//! partition, then detached) is copied again too: while attached, its changes were published
//! as the partitioned table's, so its own replica missed them; meanwhile it is listed as not
//! replicated (`list_attached`: health degraded, `status` names it).
//!
//! **Across stops.** The leaves the replica reflects are recorded in the destination
//! (`Sink::table_layouts`, OIDs and storage as text: [`layout_text`]), so the first look of a run
//! compares with them instead of taking the partitions as they are: a detach or attach made
//! while tidewater was stopped (or seen by a run that crashed before its copy committed) is
//! copied again at start. A layout is sent ([`SourceEvent::Layouts`]) only between
//! transactions, with no copy waiting, and after the look that found it: every copy that
//! change asked for has then been sent before it, so it commits with or before the layout
//! (events are applied in order). Until it commits the old layout stays recorded, and a crash
//! in between copies again at the next start (needless, never wrong). Tables recorded before
//! layouts were kept have none: their first look takes them as they are, as before.
//!
//! **Why the copy is exact.** The copy must not start at the stream's position when the look
//! sees the change: the stream may still deliver transactions from before a detach (it lags,
//! or replays after a restart), and their changes to the detached partition's rows, applied
//! as upserts after the copy's truncate, would bring those rows back with no later change to
//! remove them. So the look reads the server's WAL position L (`pg_current_wal_lsn()`) after it
//! saw the change, and the table is copied again in chunks (`recopy` with `delivered`, as for a
//! change the stream carries in a Relation message) only once the stream has passed L: a
//! transaction's BEGIN with a commit LSN at or past L, or a keepalive past L between
//! transactions (asked every second meanwhile), when every transaction committed before L
//! has been delivered ([`Stream::partitions_passed`]). The detach (drop, truncate, attach) had
//! committed when the look saw it, so its commit record is before L; every transaction that
//! changed the partition's rows through `p` commits before it (each takes a lock the detach
//! waits for), so all of them have been applied to the old replica rows, which the copy's
//! truncate then replaces. The copy itself is the chunked copy of the initial snapshot: short
//! source transactions, resumable, the replica table whole meanwhile (DuckDB's copy table).
//! A destination that does not copy in chunks takes the path for a change made while stopped
//! instead (`recopy` without `delivered`): a temporary slot's exported snapshot, taken after
//! the look, and the table's changes dropped until its consistent point C, in one source
//! transaction. Until the copy starts, the layout is not recorded, so a crash in between
//! finds the change again at the next start. Not seen: a change undone before the next look (a
//! partition detached and attached again keeps its OID; a replicated table attached, written
//! through and detached again between two looks, whose changes meanwhile reached only the
//! partitioned table's replica: nothing in the catalog or the WAL's decoded changes records
//! that it was ever attached).

use std::collections::{BTreeMap, HashMap};

use tidewater_core::{Result, SourceEvent, TableId};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::recopy::relation_oid;
use super::{State, Stream};
use crate::conn::{current_wal_lsn, pg_error};

/// Leaf partitions of every partitioned table, by OID.
pub(super) type Leaves = HashMap<TableId, BTreeMap<u32, Leaf>>;

/// A leaf partition as a look saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Leaf {
    /// Its storage (`relfilenode`): new after a `TRUNCATE`.
    storage: u32,
    /// Whether it holds rows (asked only for a new leaf of a table looked at before).
    rows: bool,
}

/// The leaves (OID to storage) each replicated partitioned table's replica reflects, as
/// recorded in the destination (`None` in [`Stream::layouts`]: it keeps no layouts).
pub type Recorded = HashMap<TableId, BTreeMap<u32, u32>>;

/// Why a table is copied again after its partitions changed.
pub(super) const PARTITIONS_CHANGED: &str = "partitions were detached, dropped, truncated, or \
     attached with rows (no row changes in the WAL)";

/// The recorded layouts the sink returned, parsed; one that does not parse is left out (its
/// table is taken as it is, as one recorded before layouts were kept).
pub fn parse_layouts(stored: &BTreeMap<TableId, String>) -> Recorded {
    let mut recorded = Recorded::new();
    for (id, text) in stored {
        let leaves: Option<BTreeMap<u32, u32>> = text
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (oid, storage) = s.split_once(':')?;
                Some((oid.parse().ok()?, storage.parse().ok()?))
            })
            .collect();
        match leaves {
            Some(leaves) => {
                recorded.insert(id.clone(), leaves);
            }
            None => {
                warn!(table = %id, layout = %text, "the recorded partitions of a table do not parse: taken as they are now")
            }
        }
    }
    recorded
}

/// A layout as recorded: `oid:storage` of each leaf in OID order, comma-separated.
fn layout_text(leaves: &BTreeMap<u32, u32>) -> String {
    let oids: Vec<String> = leaves.iter().map(|(o, s)| format!("{o}:{s}")).collect();
    oids.join(",")
}

impl Stream<'_> {
    /// Compares the replicated partitioned tables' leaves with the last look (the first one
    /// of a run: with the recorded layouts) and returns the tables whose rows changed without
    /// row changes, to be copied again.
    pub(super) async fn check_partitions(&mut self, st: &mut State) -> Result<Vec<TableId>> {
        let client = self.client;
        let before = st.partitions.take().or_else(|| {
            self.layouts.as_ref().map(|recorded| {
                let leaf = |storage| Leaf {
                    storage,
                    rows: false,
                };
                recorded
                    .iter()
                    .map(|(id, leaves)| {
                        let leaves = leaves.iter().map(|(&o, &s)| (o, leaf(s))).collect();
                        (id.clone(), leaves)
                    })
                    .collect()
            })
        });
        let (now, names) = self
            .answering(st, leaf_partitions(client, before.as_ref()))
            .await?;
        self.list_attached(st, &names);
        let mut changed = Vec::new();
        let mut gone_leaves = Vec::new();
        if let Some(before) = &before {
            for (id, leaves) in &now {
                if !self.tables.contains_key(id) {
                    continue;
                }
                let Some(old) = before.get(id) else { continue };
                gone_leaves.extend(old.keys().filter(|k| !leaves.contains_key(k)));
                let gone_or_truncated = old
                    .iter()
                    .any(|(k, was)| leaves.get(k).is_none_or(|now| now.storage != was.storage));
                let brought = leaves
                    .iter()
                    .any(|(k, now)| now.rows && !old.contains_key(k));
                if gone_or_truncated || brought {
                    warn!(table = %id, "partitions of a replicated table were detached, dropped, truncated or attached with rows (no row changes in the WAL): the table is copied again");
                    changed.push(id.clone());
                }
            }
        }
        // A replicated table that was attached as a partition (its changes then published as
        // the partitioned table's) and is now detached: its replica missed those changes.
        for oid in gone_leaves {
            let Some(id) = self.answering(st, standalone_table(client, oid)).await? else {
                continue;
            };
            if self.tables.contains_key(&id) && !changed.contains(&id) {
                warn!(table = %id, "a replicated table was detached from a partitioned table (its changes meanwhile were published as the partitioned table's): the table is copied again");
                changed.push(id);
            }
        }
        st.partitions = Some(now);
        Ok(changed)
    }

    /// Lists the replicated tables that are leaves of a replicated partitioned table now
    /// (`names`: each leaf with its partitioned table) as not replicated, and takes off the
    /// list those that no longer are: while attached, a table's changes are published as the
    /// partitioned table's (`publish_via_partition_root`), so its own replica gets none of
    /// them until it is detached and copied again. Said, not only logged: `/health` is
    /// degraded and `status` names the table meanwhile.
    fn list_attached(&mut self, st: &mut State, names: &[(TableId, TableId)]) {
        let attached: std::collections::BTreeSet<TableId> = names
            .iter()
            .filter(|(root, leaf)| self.tables.contains_key(root) && self.tables.contains_key(leaf))
            .map(|(root, leaf)| {
                let reason = format!(
                    "attached as a partition of the replicated table {root}: its changes are \
                     published as {root}'s, so this table's replica receives none of them while \
                     it is attached (it is copied again once detached); if it stays a \
                     partition, stop tidewater and run `tidewater forget --tables {leaf}`"
                );
                if self.unreplicated.set(leaf, &reason) {
                    warn!(table = %leaf, partitioned = %root, "a replicated table was attached as a partition of a replicated table: its own replica receives no changes while it is attached");
                }
                leaf.clone()
            })
            .collect();
        for id in st.attached.difference(&attached) {
            self.unreplicated.clear(id);
        }
        st.attached = attached;
    }

    /// Copies again the tables `check_partitions` found changed: in chunks once the stream has
    /// passed the WAL position read now, or, for a destination that does not copy in chunks,
    /// at a new slot's consistent point (see the module comment).
    pub(super) async fn recopy_partitioned(
        &mut self,
        st: &mut State,
        changed: Vec<TableId>,
    ) -> Result<()> {
        if changed.is_empty() {
            return Ok(());
        }
        if self.copy.is_some() {
            let client = self.client;
            let lsn = self
                .answering(st, current_wal_lsn(client, "reading the WAL position"))
                .await?;
            let (barrier, tables) = st.partition_barrier.get_or_insert_with(|| (0, Vec::new()));
            *barrier = (*barrier).max(lsn);
            for id in changed {
                if !tables.contains(&id) {
                    tables.push(id);
                }
            }
            return Ok(());
        }
        for id in changed {
            let client = self.client;
            if let Some(oid) = self.answering(st, relation_oid(client, &id)).await? {
                self.recopy(st, oid, &id, PARTITIONS_CHANGED, false).await?;
            }
        }
        Ok(())
    }

    /// Starts the chunked copies that waited for the stream to pass their WAL position, once
    /// every transaction committed before `lsn` has been delivered (between transactions).
    pub(super) async fn partitions_passed(&mut self, st: &mut State, lsn: u64) -> Result<()> {
        let due = st
            .partition_barrier
            .as_ref()
            .is_some_and(|(l, _)| *l <= lsn);
        if st.in_tx.is_some() || !due {
            return Ok(());
        }
        let (_, tables) = st.partition_barrier.take().expect("due");
        for id in tables {
            let client = self.client;
            let oid = self.answering(st, relation_oid(client, &id)).await?;
            match oid.filter(|_| self.tables.contains_key(&id)) {
                Some(oid) => self.recopy(st, oid, &id, PARTITIONS_CHANGED, true).await?,
                None => {
                    info!(table = %id, "a table whose partitions changed is no longer replicated (dropped or renamed): nothing to copy")
                }
            }
        }
        Ok(())
    }

    /// Records the layouts that changed since the last record, in a transaction of their own
    /// at the stream's position: only between transactions with no copy waiting (see the
    /// module comment), right after a look.
    pub(super) async fn record_layouts(&mut self, st: &mut State) -> Result<()> {
        if st.in_tx.is_some() || st.joining.is_some() || st.partition_barrier.is_some() {
            return Ok(());
        }
        let (Some(recorded), Some(now)) = (self.layouts.as_mut(), st.partitions.as_ref()) else {
            return Ok(());
        };
        let mut layouts = Vec::new();
        for (id, leaves) in now {
            if !self.tables.contains_key(id) {
                continue;
            }
            let leaves: BTreeMap<u32, u32> = leaves.iter().map(|(&o, l)| (o, l.storage)).collect();
            if recorded.get(id) != Some(&leaves) {
                layouts.push((id.clone(), layout_text(&leaves)));
                recorded.insert(id.clone(), leaves);
            }
        }
        if layouts.is_empty() {
            return Ok(());
        }
        self.send_alone(st, SourceEvent::Layouts(layouts)).await
    }
}

/// The name of relation `oid` if it is a table that is not a partition (a leaf detached).
async fn standalone_table(client: &Client, oid: u32) -> Result<Option<TableId>> {
    let row = client
        .query_opt(
            "SELECT n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = $1 AND c.relkind = 'r' AND NOT c.relispartition",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, "looking up a detached partition"))?;
    Ok(row.map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1))))
}

/// The leaves of every partitioned table, and the name of each leaf with its table's.
async fn leaf_partitions(
    client: &Client,
    known: Option<&Leaves>,
) -> Result<(Leaves, Vec<(TableId, TableId)>)> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, t.relid::oid, t.relid::regclass::text, l.relfilenode, \
                    ln.nspname, l.relname \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, \
             pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid \
             JOIN pg_namespace ln ON ln.oid = l.relnamespace \
             WHERE c.relkind = 'p' AND NOT c.relispartition AND t.isleaf",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "listing partitions"))?;
    let mut leaves = Leaves::new();
    let mut names = Vec::new();
    for r in rows {
        let id = TableId::new(r.get::<_, String>(0), r.get::<_, String>(1));
        names.push((
            id.clone(),
            TableId::new(r.get::<_, String>(5), r.get::<_, String>(6)),
        ));
        let oid: u32 = r.get(2);
        // Rows matter only for a new leaf of a table looked at before.
        let new_leaf = known
            .and_then(|k| k.get(&id))
            .is_some_and(|l| !l.contains_key(&oid));
        let rows = if new_leaf {
            let name: String = r.get(3);
            client
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[])
                .await
                .map_err(|e| pg_error(e, &format!("looking into partition {name}")))?
                .get(0)
        } else {
            false
        };
        let storage: u32 = r.get(4);
        leaves
            .entry(id)
            .or_default()
            .insert(oid, Leaf { storage, rows });
    }
    Ok((leaves, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_read_back_as_written() {
        let leaves = BTreeMap::from([(16390, 16390), (16384, 17001), (4_000_000_000, 1)]);
        let id = TableId::new("public", "events");
        let stored = BTreeMap::from([
            (id.clone(), layout_text(&leaves)),
            (TableId::new("public", "none"), String::new()),
            (TableId::new("public", "bad"), "12:1,13".into()),
        ]);
        let recorded = parse_layouts(&stored);
        assert_eq!(recorded.get(&id), Some(&leaves));
        assert_eq!(layout_text(&leaves), "16384:17001,16390:16390,4000000000:1");
        assert_eq!(
            recorded.get(&TableId::new("public", "none")),
            Some(&BTreeMap::new())
        );
        assert!(!recorded.contains_key(&TableId::new("public", "bad")));
    }
}
