//! Tables that join at a restart: selected but not in the replica (`tables` globs widened, or
//! created while tidewater was stopped), and tables changed while it was stopped in a way the
//! binlog does not carry (`copy_again`: e.g. `ADD COLUMN ... DEFAULT`). Their rows are copied
//! at a position of the binlog stream. When the destination copies in chunks (MariaDB, MySQL with
//! GTIDs: the stream's `copy` is set), they go through the chunks ("In chunks" below);
//! otherwise (MySQL without GTIDs, or a destination without chunked copies) as one
//! transaction:
//!
//! 1. a consistent snapshot is opened (its exact binlog position `S`, see `snapshot`);
//! 2. the stream resumes from the stored position; the joining tables' changes in
//!    transactions that `S` includes are dropped (the copy holds them);
//! 3. before the first transaction that `S` does not include (or when an idle stream has
//!    passed `S`), the copy is sent as one transaction at position `S`.
//!
//! A crash before the copy commits leaves the tables outside the replica: the next run joins
//! them again. (Tables created while streaming need none of this: the binlog holds them from
//! their `CREATE TABLE` on.) A selected table the source user cannot read is listed as not
//! replicated, and joins the same way while streaming once it can be read (the snapshot is
//! opened between transactions, so its position is at or past the stream's).
//!
//! # In chunks
//!
//! The snapshot above stays open from the start until the stream reaches `S`, and then reads
//! whole tables: for a large table a long source transaction (InnoDB purges nothing behind
//! it), and a crash starts the copy over. When the stream copies in chunks, the tables go
//! through the chunked copy instead (`tidewater_core::copy`, "Copies again"), and no source
//! transaction stays open:
//!
//! 1. **The cut.** At start the tables are described, the cut `S` is taken (MariaDB: a
//!    consistent snapshot is opened only to learn its exact position and committed at once;
//!    MySQL: `gtid_executed`), and the tables are described again
//!    ([`Joining::open_in_chunks`]); when a definition differs, again. `S` covers the stored
//!    position `from` (`snapshot::snapshot_covering`; every transaction MySQL's stream
//!    delivered is in its `gtid_executed`). So the definition `D` of each table is the one in
//!    force when `S` was taken.
//! 2. **Before the cut.** The stream resumes at `from`, before the changes made while
//!    tidewater was stopped, and drops these tables' row events (no table map) and statements
//!    in every transaction `S` includes, as above. Dropping them is needed, not only allowed:
//!    row events logged before an `ALTER` have the table's old shape, which `D` does not
//!    decode (`TableMap::new` fails, and describing the table again finds `D` once more: the
//!    stream would stop as if more schema changes had followed), and a joining table's were
//!    never applied to a replica table.
//! 3. **At the cut.** Before the first transaction `S` does not include (or once an idle
//!    stream's position has reached `S`), at the stream's position `P` (every transaction `S`
//!    includes delivered, no other), one destination transaction truncates the tables with a
//!    truncate that carries `D` (creating a joining table's replica table, altering or
//!    re-creating a changed one's) and records a fresh copy progress for each
//!    (`Copying::restart`; `stream::recopy`, `join_in_chunks`).
//! 4. **After the cut** they are copied as any table copied again while streaming: their row
//!    events after `P` are applied leniently (keyed tables) or dropped until the copy and then
//!    while the copy shows them (keyless tables, rule 3 of `tidewater_core::copy`), and each
//!    chunk is read in its own short transaction whose snapshot covers the stream's position
//!    (rule 1), so at or after `S`.
//!
//! **Why the replica comes out exact.** At `P` each table's replica is empty, which is all
//! "Copies again" needs: every chunk shows every transaction delivered before it. The only
//! changes of these tables the stream did not apply are the ones it dropped in 2, of
//! transactions `S` includes, and every chunk, read at or after `S`, shows them. Row events
//! after `S` have the shape `D`: a transaction that wrote the old shape committed before the
//! `ALTER` could change the definition (the `ALTER` waits for the table's metadata lock),
//! hence before `D` was first read, before `S` was taken: `S` includes it. An `ALTER` logged
//! after `S` (seen after `P`) is checked as while streaming (`stream::recopy`): the one that
//! produced `D` (its definition changes before it is logged) finds `D` unchanged, a later
//! uncarried one copies the table again.
//!
//! **Crash safety.** The truncate and the progress commit in one destination transaction, at
//! `P`. A crash before that commit leaves the replica as it was (a joining table absent, a
//! changed table with its old definition and rows): the next run copies the tables again from
//! a new cut, whose snapshot includes every change the stream skipped (the stored position
//! may have moved into the transactions `S` includes, never past `P` without the commit at
//! `P`: it is sent first). After it, the replica holds the tables with their current
//! definitions, so the next run neither joins nor copies them again: it resumes their copy at
//! the next chunk (rule 5), and its stream at or after `P`, past every row event in an old
//! shape.

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidewater_core::{Error, Result, SourceEvent, TableId, Unreplicated};
use tokio::sync::mpsc;
use tracing::info;

use crate::catalog::{describe, SourceTable};
use crate::conn::{my_error, Flavor};
use crate::position::BinlogPosition;
use crate::snapshot::{copy_tables, gtid_executed_while_chunked, quote_ident, snapshot_covering};
use crate::value::ZeroDates;

/// How often the cut of a join in chunks is taken again when a definition changed meanwhile.
const CUT_TRIES: usize = 5;

pub struct Joining {
    /// The snapshot's position.
    pub at: BinlogPosition,
    pub ids: HashSet<TableId>,
    tables: Vec<SourceTable>,
    /// Tables the replica holds already, copied again after a schema change the binlog does
    /// not carry (see `Stream::recopy`): their replica rows are replaced by the copy.
    recopy: HashSet<TableId>,
    copy: Copy,
}

/// How the tables are copied once the stream reaches the snapshot's position.
enum Copy {
    /// In the snapshot transaction, held open on this connection until then.
    Held(Conn),
    /// In chunks from then on ("In chunks" in the module doc): nothing is held.
    Chunks,
}

impl Joining {
    pub fn new(at: BinlogPosition, tables: Vec<SourceTable>, conn: Conn) -> Joining {
        if !tables.is_empty() {
            let names: Vec<String> = tables.iter().map(|t| t.schema.id.to_string()).collect();
            info!(tables = %names.join(", "), at = %at, "tables join the replica: their rows are copied when the stream reaches this position");
        }
        Joining {
            at,
            ids: tables.iter().map(|t| t.schema.id.clone()).collect(),
            tables,
            recopy: HashSet::new(),
            copy: Copy::Held(conn),
        }
    }

    /// The cut of the tables copied in chunks at a restart ("In chunks" in the module doc):
    /// `join` (selected, not in the replica) and `recopy` (changed while tidewater was stopped
    /// in a way the binlog does not carry), described before and after the cut `S`: MariaDB,
    /// the exact position of a consistent snapshot that covers the stored position `from`,
    /// committed at once; MySQL (with GTIDs), `gtid_executed`. Either holds every transaction
    /// that wrote a table in an older shape: such a transaction ended (its GTID added to
    /// `gtid_executed`, its metadata lock released) before the `ALTER` that followed it could
    /// change the definition, before the first description was read.
    pub async fn open_in_chunks(
        conn: &mut Conn,
        from: &BinlogPosition,
        join: &[TableId],
        recopy: &[TableId],
        flavor: Flavor,
    ) -> Result<Joining> {
        let ids: Vec<TableId> = join.iter().chain(recopy).cloned().collect();
        let mut before = describe_all(conn, &ids).await?;
        for _ in 0..CUT_TRIES {
            let at = match flavor {
                Flavor::MySql => BinlogPosition::MySql(gtid_executed_while_chunked(conn).await?),
                Flavor::MariaDb => {
                    let at = snapshot_covering(conn, flavor, from, None).await?;
                    conn.query_drop("COMMIT")
                        .await
                        .map_err(|e| my_error(e, "ending the snapshot transaction"))?;
                    at
                }
            };
            let after = describe_all(conn, &ids).await?;
            if before.iter().zip(&after).all(|(b, a)| b.schema == a.schema) {
                let names: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
                info!(tables = %names.join(", "), at = %at, "tables to copy at this start (joining, or changed while stopped): copied in chunks once the stream reaches this position (their changes until then are in the copy)");
                return Ok(Joining {
                    at,
                    ids: ids.into_iter().collect(),
                    tables: after,
                    recopy: recopy.iter().cloned().collect(),
                    copy: Copy::Chunks,
                });
            }
            before = after;
        }
        Err(Error::source_retryable(
            "the definitions of the tables to copy kept changing while their copy's position \
             was taken",
        ))
    }

    /// Whether the tables are copied in chunks (nothing held), not in a held snapshot.
    pub fn chunked(&self) -> bool {
        matches!(self.copy, Copy::Chunks)
    }

    /// The tables, and which of them the replica holds already (copied again).
    pub fn into_tables(self) -> (Vec<SourceTable>, HashSet<TableId>) {
        (self.tables, self.recopy)
    }

    /// Adds a table the replica holds already: its replica rows are replaced by the copy's.
    /// Sound while the stream is inside a transaction the snapshot holds (every open one, as
    /// long as the copy waits): the snapshot includes the change that asked for the copy.
    pub fn add_recopy(&mut self, table: SourceTable) {
        let id = table.schema.id.clone();
        self.tables.retain(|t| t.schema.id != id);
        self.tables.push(table);
        self.ids.insert(id.clone());
        self.recopy.insert(id);
    }

    /// Whether the copy holds the transaction that ends at `after`.
    pub fn holds(&self, after: &BinlogPosition) -> bool {
        self.at.reached(after)
    }

    /// Sends the copy, read in the held snapshot, as one transaction at the snapshot's
    /// position; the copied tables leave `unreplicated` (a table listed there joins once its
    /// cause is fixed).
    pub async fn copy(
        self,
        zero: ZeroDates,
        events: &mpsc::Sender<SourceEvent>,
        unreplicated: &Unreplicated,
    ) -> Result<()> {
        let Copy::Held(mut conn) = self.copy else {
            return Err(Error::source_fatal(
                "internal: a join in chunks has no snapshot to copy in",
            ));
        };
        let started = std::time::Instant::now();
        let rows = copy_tables(
            &mut conn,
            &self.tables,
            &self.recopy,
            &self.at,
            zero,
            events,
        )
        .await?;
        info!(rows, seconds = format!("{:.1}", started.elapsed().as_secs_f64()), at = %self.at, "joining tables copied; their changes stream from here");
        for id in &self.ids {
            if unreplicated.clear(id) {
                info!(table = %id, "a table that could not be replicated has joined the replica");
            }
        }
        Ok(())
    }
}

async fn describe_all(conn: &mut Conn, ids: &[TableId]) -> Result<Vec<SourceTable>> {
    let mut tables = Vec::with_capacity(ids.len());
    for id in ids {
        tables.push(describe(conn, id.clone()).await?);
    }
    Ok(tables)
}

/// Why a selected table the binlog names cannot be replicated, or `None` when it can: the
/// source user sees no column of it (no privilege on it: MySQL hides such tables from
/// `information_schema`), so neither its definition nor its rows can be read.
pub async fn unreadable(conn: &mut Conn, table: &SourceTable) -> Result<Option<String>> {
    if !table.schema.columns.is_empty() {
        return Ok(None);
    }
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| my_error(e, "reading the current user"))?;
    let user = match user.as_deref().and_then(|u| u.rsplit_once('@')) {
        Some((name, host)) => format!("'{name}'@'{host}'"),
        None => user.unwrap_or_default(),
    };
    let id = &table.schema.id;
    Ok(Some(format!(
        "the source user {user} cannot see it (no privilege on it, or it was dropped), so its \
         definition and rows cannot be read. Fix: GRANT SELECT ON {}.{} TO {user}; it joins \
         within seconds, no restart needed",
        quote_ident(&id.schema),
        quote_ident(&id.name)
    )))
}
