//! Partitioned tables whose partitions change while streaming. `ALTER TABLE p DETACH
//! PARTITION`, `DROP TABLE` of a partition and `ALTER TABLE p ATTACH PARTITION x` take rows out
//! of `p` or bring rows into it with no row change in the WAL, so logical decoding never
//! reports them. The discovery poll compares each replicated partitioned table's leaf
//! partitions with the last poll's; a leaf gone, or a new leaf that holds rows (attached with
//! them; a partition created empty brings none, and its later rows stream), has the table
//! copied again (`SourceContext::recopy`, the path verify repairs take).
//!
//! Why that copy is exact although it starts at whatever position the stream has reached:
//! every chunk of it is read after the poll saw the change, so after the change, and the
//! stream's changes of the table before a chunk's snapshot are the chunk's (`chunks`). Until
//! the poll (at most `DISCOVER_INTERVAL`) and the copy, the replica shows the rows as before
//! the change. Not seen: a change made while tidewater was stopped (the first poll of a run
//! takes the partitions as they are), and one undone before the next poll.

use std::collections::{BTreeMap, HashMap};

use tidewater_core::{Result, TableId};
use tokio_postgres::Client;
use tracing::warn;

use super::{State, Stream};
use crate::conn::pg_error;

/// Leaf partition OIDs of every partitioned table, and whether each holds rows (asked only
/// for leaves not in `known`).
pub(super) type Leaves = HashMap<TableId, BTreeMap<u32, bool>>;

impl Stream<'_> {
    /// Compares the replicated partitioned tables' leaves with the last look (the first one
    /// only takes them) and asks for a copy of each whose rows changed without row changes.
    pub(super) async fn check_partitions(&mut self, st: &mut State) -> Result<()> {
        let client = self.client;
        let before = st.partitions.take();
        let now = self
            .answering(st, leaf_partitions(client, before.as_ref()))
            .await?;
        if let Some(before) = &before {
            for (id, leaves) in &now {
                if !self.tables.contains_key(id) {
                    continue;
                }
                let old = before.get(id);
                let gone = old.is_some_and(|o| o.keys().any(|k| !leaves.contains_key(k)));
                let brought =
                    old.is_some_and(|o| leaves.iter().any(|(k, rows)| *rows && !o.contains_key(k)));
                if gone || brought {
                    warn!(table = %id, "partitions of a replicated table were detached, dropped or attached with rows (no row changes in the WAL): the table is copied again");
                    self.recopy_requests.request([id.clone()]);
                }
            }
        }
        st.partitions = Some(now);
        Ok(())
    }
}

async fn leaf_partitions(client: &Client, known: Option<&Leaves>) -> Result<Leaves> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, t.relid::oid, t.relid::regclass::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, \
             pg_partition_tree(c.oid) t \
             WHERE c.relkind = 'p' AND NOT c.relispartition AND t.isleaf",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "listing partitions"))?;
    let mut leaves = Leaves::new();
    for r in rows {
        let id = TableId::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let oid: u32 = r.get(2);
        let seen = known
            .and_then(|k| k.get(&id))
            .is_some_and(|l| l.contains_key(&oid));
        let rows = if seen || known.is_none() {
            false
        } else {
            let name: String = r.get(3);
            client
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[])
                .await
                .map_err(|e| pg_error(e, &format!("looking into partition {name}")))?
                .get(0)
        };
        leaves.entry(id).or_default().insert(oid, rows);
    }
    Ok(leaves)
}
