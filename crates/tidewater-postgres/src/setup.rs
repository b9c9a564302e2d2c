//! Publications and the replication slot: created when missing, checked when present.
//!
//! Tables that can replicate updates and deletes (a primary key, or REPLICA IDENTITY FULL)
//! go in the main publication. Keyless tables go in a separate insert-only publication:
//! putting them in one that publishes updates would make PostgreSQL reject the user's own
//! UPDATE/DELETE statements on them.
//!
//! Both publish a partitioned table's changes under the table itself
//! (`publish_via_partition_root`): otherwise PostgreSQL publishes each change as its leaf
//! partition's, a relation tidewater does not replicate, and the table's changes never reach
//! the replica. One side effect is checked elsewhere: a `TRUNCATE` of a single partition is
//! then not published at all (`stream::partitions` sees it by the partition's new storage).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tidewater_core::{Error, Result, TableId};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::catalog::SourceTable;
use crate::conn::{parse_lsn, pg_error};

/// The options of the main publication, and of the insert-only one.
pub(crate) const MAIN_OPTIONS: &str = " WITH (publish_via_partition_root = true)";
pub(crate) const INSERT_ONLY_OPTIONS: &str =
    " WITH (publish = 'insert, truncate', publish_via_partition_root = true)";

pub fn insert_only_publication(publication: &str) -> String {
    format!("{publication}_insert_only")
}

/// A quoted SQL identifier (the SQL standard's quoting, from the core).
pub(crate) use tidewater_core::sql::quote_ident;

pub fn quoted_table(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

async fn publication_tables(client: &Client, name: &str) -> Result<Option<BTreeSet<TableId>>> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .map_err(|e| pg_error(e, "reading publications"))?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = client
        .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[&name])
        .await
        .map_err(|e| pg_error(e, "reading publication tables"))?;
    Ok(Some(
        rows.iter()
            .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect(),
    ))
}

/// The publication that carries a table's changes.
pub(crate) fn publication_for(publication: &str, table: &SourceTable) -> String {
    if table.publishes_all_changes() {
        publication.to_string()
    } else {
        insert_only_publication(publication)
    }
}

/// Makes both publications hold exactly `tables`. Before the first snapshot they are
/// (re)created freely. Once streaming, only the `joining` tables (which are copied at a
/// position of the stream before their changes apply) may be missing from them, and only
/// tables the replica does not hold may leave them (`left_out`: held, not selected); any
/// other difference is an error, because a table added without a copy would lack its existing
/// rows, and a held table left out would miss its changes.
pub async fn ensure_publications(
    client: &Client,
    publication: &str,
    tables: &[SourceTable],
    streaming: bool,
    joining: &[TableId],
    left_out: &[TableId],
) -> Result<Vec<String>> {
    let full: BTreeSet<TableId> = tables
        .iter()
        .filter(|t| t.publishes_all_changes())
        .map(|t| t.schema.id.clone())
        .collect();
    let inserts: BTreeSet<TableId> = tables
        .iter()
        .filter(|t| !t.publishes_all_changes())
        .map(|t| t.schema.id.clone())
        .collect();
    let insert_only = insert_only_publication(publication);
    for (name, wanted, options) in [
        (publication.to_string(), &full, MAIN_OPTIONS),
        (insert_only.clone(), &inserts, INSERT_ONLY_OPTIONS),
    ] {
        let current = publication_tables(client, &name).await?;
        if current.as_ref() == Some(wanted) {
            continue;
        }
        if streaming {
            if let Some(current) = &current {
                let added: Vec<String> = wanted
                    .difference(current)
                    .filter(|t| !joining.contains(t))
                    .map(|t| t.to_string())
                    .collect();
                // A table no longer selected that the replica does not hold (never copied, or
                // forgotten: `tidewater forget`) simply leaves the publication.
                let removed: Vec<String> = current
                    .difference(wanted)
                    .filter(|t| left_out.contains(t))
                    .map(|t| t.to_string())
                    .collect();
                if added.is_empty() && removed.is_empty() {
                    continue;
                }
                return Err(Error::source_fatal(format!(
                    "publication {name} no longer matches source.tables (new: [{}], gone: [{}]): \
                     a table the replica holds left the publication (its changes since then are \
                     missing), or tables were removed from source.tables",
                    added.join(", "),
                    removed.join(", ")
                ))
                .with_fix(
                    "restore source.tables; or, to stop replicating a table, `tidewater forget \
                     --tables T` first; or start from an empty replica (a new sink.path or \
                     sink.dataset) to take a new snapshot",
                ));
            }
        }
        let list: Vec<String> = wanted.iter().map(quoted_table).collect();
        let mut sql = String::new();
        if current.is_some() {
            sql.push_str(&format!("DROP PUBLICATION {};", quote_ident(&name)));
        }
        sql.push_str(&format!("CREATE PUBLICATION {}", quote_ident(&name)));
        if !list.is_empty() {
            sql.push_str(&format!(" FOR TABLE {}", list.join(", ")));
        }
        sql.push_str(options);
        client.batch_execute(&sql).await.map_err(|e| {
            pg_error(e, &format!("creating publication {name}")).context(
                "tidewater needs the CREATE privilege on the database and ownership of the tables \
                 to create its publications (or create them yourself)",
            )
        })?;
        info!(publication = %name, tables = list.len(), "publication ready");
    }
    for t in tables.iter().filter(|t| !t.publishes_all_changes()) {
        warn!(
            table = %t.schema.id,
            "no primary key and no REPLICA IDENTITY FULL: only inserts are replicated; add a \
             primary key, or ALTER TABLE {} REPLICA IDENTITY FULL",
            quoted_table(&t.schema.id)
        );
    }
    Ok(vec![publication.to_string(), insert_only])
}

/// Publications created before tidewater set `publish_via_partition_root` (see the module
/// comment) are changed to set it. Returns whether any was: the changes of every replicated
/// partitioned table were published under its partitions until then, so they never reached
/// the replica, and such tables must be copied again.
pub async fn publish_via_root(client: &Client, publication: &str) -> Result<bool> {
    let names = [
        publication.to_string(),
        insert_only_publication(publication),
    ];
    let rows = client
        .query(
            "SELECT pubname::text FROM pg_publication WHERE pubname = ANY($1) AND NOT pubviaroot",
            &[&names.as_slice()],
        )
        .await
        .map_err(|e| pg_error(e, "reading publications"))?;
    for row in &rows {
        let name: String = row.get(0);
        let sql = format!(
            "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
            quote_ident(&name)
        );
        client.batch_execute(&sql).await.map_err(|e| {
            pg_error(e, &format!("changing publication {name}"))
                .context(
                    "tidewater needs ownership of its publications to publish partitioned \
                     tables' changes under the tables themselves",
                )
                .with_fix(format!("run `{sql}` as the publication's owner"))
        })?;
        info!(publication = %name, "publication now publishes partitioned tables' changes under the tables themselves (publish_via_partition_root)");
    }
    Ok(!rows.is_empty())
}

/// The OIDs of the partitioned tables among `oids`.
pub async fn partitioned(client: &Client, oids: &[u32]) -> Result<Vec<u32>> {
    let rows = client
        .query(
            "SELECT oid FROM pg_class WHERE relkind = 'p' AND oid = ANY($1)",
            &[&oids],
        )
        .await
        .map_err(|e| pg_error(e, "reading partitioned tables"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Adds a table joining while streaming to its publication (unless it is there already):
/// its changes are published from this transaction's commit on.
pub async fn add_to_publication(
    client: &Client,
    publication: &str,
    table: &SourceTable,
) -> Result<()> {
    let name = publication_for(publication, table);
    let id = &table.schema.id;
    let member = client
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
            &[&name, &id.schema, &id.name],
        )
        .await
        .map_err(|e| pg_error(e, "reading publication tables"))?;
    if member.is_some() {
        return Ok(());
    }
    let sql = format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(&name),
        quoted_table(id)
    );
    client.batch_execute(&sql).await.map_err(|e| {
        pg_error(e, &format!("adding {id} to publication {name}")).context(
            "tidewater needs ownership of a table to add it to its publication (or add it \
             yourself: ALTER PUBLICATION ... ADD TABLE ...)",
        )
    })?;
    info!(table = %id, publication = %name, "table added to the publication");
    Ok(())
}

#[derive(Debug)]
pub struct SlotInfo {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active_pid: Option<i32>,
    pub wal_status: Option<String>,
    /// Up to where the slot's consumer confirmed (NULL for an invalidated slot).
    pub confirmed_flush_lsn: Option<u64>,
    /// The oldest WAL the slot still holds.
    pub restart_lsn: Option<u64>,
}

pub async fn slot_info(client: &Client, slot: &str) -> Result<Option<SlotInfo>> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active_pid, wal_status, \
             confirmed_flush_lsn::text, restart_lsn::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| pg_error(e, "reading pg_replication_slots"))?;
    Ok(row.map(|r| SlotInfo {
        plugin: r.get(0),
        database: r.get(1),
        active_pid: r.get(2),
        wal_status: r.get(3),
        confirmed_flush_lsn: r.get::<_, Option<String>>(4).and_then(|l| parse_lsn(&l)),
        restart_lsn: r.get::<_, Option<String>>(5).and_then(|l| parse_lsn(&l)),
    }))
}

pub fn slot_in_use(slot: &str, pid: i32, waited: Duration) -> Error {
    Error::source_fatal(format!(
        "replication slot {slot} is in use by another process (walsender pid {pid}, still after \
         {} s): is another tidewater running with the same slot?",
        waited.as_secs()
    ))
    .with_fix(
        "stop the other process using the slot (SELECT active_pid FROM pg_replication_slots), or \
         set source.slot to another name",
    )
}

/// How long a start waits for a slot's walsender beyond the server's `wal_sender_timeout`.
const SLOT_WAIT_MARGIN: Duration = Duration::from_secs(5);
/// How long a start waits for a slot's walsender when the server has no `wal_sender_timeout`.
const SLOT_WAIT_DEFAULT: Duration = Duration::from_secs(60);

/// The slot's state once no walsender holds it, or the error naming the one that still does.
///
/// A walsender outlives its client: after `kill -9` (or a crash, or a lost network) it only
/// notices that nobody reads when a send fails or `wal_sender_timeout` passes without a reply,
/// and until then the slot is active and `START_REPLICATION` is refused. So a restart waits
/// for it, at most `wal_sender_timeout` plus a margin: a walsender still there after that has a
/// live client (another process using the slot), and the start is refused. Waiting changes
/// nothing at the source: the slot is only read.
pub async fn inactive_slot_info(client: &Client, slot: &str) -> Result<Option<SlotInfo>> {
    let started = Instant::now();
    let mut limit = None;
    loop {
        let info = slot_info(client, slot).await?;
        let Some(pid) = info.as_ref().and_then(|i| i.active_pid) else {
            return Ok(info);
        };
        let limit = match limit {
            Some(limit) => limit,
            None => {
                let l = wal_sender_timeout(client)
                    .await?
                    .map_or(SLOT_WAIT_DEFAULT, |t| t + SLOT_WAIT_MARGIN);
                info!(slot = %slot, walsender_pid = pid, wait_up_to_s = l.as_secs(), "the replication slot is still held by a walsender (of a previous run that ended without closing its connection?): waiting for it to end");
                *limit.insert(l)
            }
        };
        if started.elapsed() >= limit {
            return Err(slot_in_use(slot, pid, started.elapsed()));
        }
        tokio::time::sleep(SLOT_POLL).await;
    }
}

/// How often a start looks whether a slot's walsender has ended.
const SLOT_POLL: Duration = Duration::from_millis(200);

/// The server's `wal_sender_timeout`; `None` when it is 0 (disabled).
async fn wal_sender_timeout(client: &Client) -> Result<Option<Duration>> {
    let row = client
        .query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading wal_sender_timeout"))?;
    let ms: i64 = row.get(0);
    Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
}

pub async fn drop_slot(client: &Client, slot: &str) -> Result<()> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(|e| pg_error(e, &format!("dropping replication slot {slot}")))?;
    Ok(())
}
