//! Streaming: pgoutput messages become source-neutral events; standby status feedback
//! reports as flushed only what the sink has committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pg_walstream::{CancellationToken, PgReplicationConnection};
use tidewater_core::apply::{change_bytes, AckReceiver, MAX_EVENT_BYTES};
use tidewater_core::{
    Change, ChangeKind, Column, ColumnType, Error, Position, RecopyRequests, Result, SourceEvent,
    TableId, TableSchema, TxInfo, Unreplicated, Value,
};
use tokio::sync::mpsc;
use tokio::time::{interval, Interval, MissedTickBehavior};
use tokio_postgres::Client;
use tracing::{debug, info, warn};

use crate::backlog::WalEnd;
use crate::catalog::{selected_tables, SourceTable};
use crate::conn::{format_lsn, parse_lsn, replication_error};
use crate::join::{Joiner, Joining};
use crate::pgoutput::{
    decode, decode_copy_data, OldTuple, PgOutputMessage, ReplicationMessage, Tuple, TupleValue,
};
use crate::read::CHUNK_ROWS;
use crate::snapshot::copy_tables;
use crate::types::{canonical, column_type};
use tidewater_core::uncarried::uncarried_change;

pub(crate) mod chunks;
pub(crate) mod partitions;
mod recopy;
mod republish;

/// Standby status is sent at least this often (wal_sender_timeout defaults to 60 s).
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// How often the catalog is asked for new tables that the globs select.
const DISCOVER_INTERVAL: Duration = Duration::from_secs(5);
/// While joining tables wait for the stream to pass their snapshot, the server is asked this
/// often for its position (an idle server would otherwise report it only every 30 s).
const NUDGE_INTERVAL: Duration = Duration::from_secs(1);

pub struct Stream<'a> {
    pub conn: &'a mut PgReplicationConnection,
    /// SQL session: finds new tables and copies joining ones.
    pub client: &'a Client,
    pub tables: HashMap<TableId, Arc<TableSchema>>,
    /// The `tables` globs, to find tables created while streaming.
    pub patterns: &'a [String],
    /// Adds tables while streaming; `None` when the sink cannot take them in.
    pub joiner: Option<Joiner>,
    /// Tables to join right away (selected, but not in the replica yet).
    pub join_now: Vec<SourceTable>,
    /// Replicated tables to copy again right away (changes were missed while stopped: see
    /// `crate::placement`), by relation OID. Copied at a new slot's consistent point, not in
    /// chunks: the stream replays transactions from before the change with the table's old
    /// definition, which a copy at that point drops (see `recopy`).
    pub recopy_now: Vec<(u32, TableId)>,
    /// The layouts the destination has recorded (`partitions`); `None` when it keeps none.
    pub layouts: Option<partitions::Recorded>,
    pub events: mpsc::Sender<SourceEvent>,
    pub acks: AckReceiver,
    /// Transactions whose commit LSN is at or below this were applied already: skip them.
    pub applied_lsn: u64,
    /// Selected tables that could not join, with why: listed here for health and status,
    /// asked again at every discovery poll, removed once copied or no longer selected.
    pub unreplicated: Unreplicated,
    /// The chunked copies (`chunks`): the initial snapshot while a table is not consistent
    /// yet, and tables copied again while streaming. `None` when the destination does not copy
    /// in chunks.
    pub copy: Option<chunks::Copying>,
    /// The acknowledged position the replica stored (an idle point at or after
    /// `applied_lsn`): the stream's position starts there (see `State::stream_position`).
    pub acknowledged_lsn: u64,
    /// Replicated tables the runtime asks to copy again (see `recopy`).
    pub recopy_requests: RecopyRequests,
    /// The server's end of WAL, polled: tells the apply loop whether the stream is behind.
    pub wal_end: WalEnd,
}

struct State {
    /// The LSN confirmed to the server (flushed): what the apply loop acknowledged.
    confirmed: u64,
    relations: HashMap<u32, Option<Arc<TableSchema>>>,
    /// The open transaction: `Some(true)` when it is a replay being skipped.
    in_tx: Option<bool>,
    /// Commit LSN of the open transaction.
    tx_lsn: u64,
    /// Xid of the open transaction.
    tx_xid: u32,
    /// Commit LSN of the last transaction handed to the apply loop (or the position it
    /// resumed from): the position of a chunk sent now.
    delivered_lsn: u64,
    /// Tables whose copy waits for the stream to pass its snapshot.
    joining: Option<Joining>,
    discover: Interval,
    nudge: Interval,
    chunk: Vec<Change>,
    /// Estimated bytes of `chunk` (`tidewater_core::apply::change_bytes`).
    chunk_bytes: usize,
    idle_sent: u64,
    status: Interval,
    /// The replicated partitioned tables' leaves at the last look (`partitions`).
    partitions: Option<partitions::Leaves>,
    /// Tables whose partitions changed, copied again in chunks once the stream has passed
    /// this WAL position (`partitions`, "Why the copy is exact").
    partition_barrier: Option<(u64, Vec<TableId>)>,
    /// Replicated tables attached as partitions of a replicated partitioned table, listed as
    /// not replicated meanwhile (`partitions`).
    attached: std::collections::BTreeSet<TableId>,
}

impl State {
    /// The stream's position between transactions: everything up to it has been handed to
    /// the apply loop (the last delivered commit, or a later idle position sent since, which
    /// the apply loop may already have acknowledged). A chunk or progress transaction is sent
    /// at it, so the stored position never goes back.
    fn stream_position(&self) -> u64 {
        self.delivered_lsn.max(self.idle_sent)
    }

    /// A transaction of tidewater's own (a chunk, copy progress, a re-copy's start) at
    /// [`State::stream_position`], stamped now.
    fn position_tx(&self) -> TxInfo {
        TxInfo {
            position: Position(format_lsn(self.stream_position())),
            commit_time_us: tidewater_core::stats::now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        }
    }
}

enum Wake {
    Chunk,
    Ack,
    Tick,
    Discover,
    Nudge,
    Data(pg_walstream::Result<bytes::Bytes>),
}

impl Stream<'_> {
    /// What may be confirmed to the server: exactly what the apply loop acknowledged, which
    /// the sink stored first (a committed transaction's commit LSN, or an idle position).
    /// Nothing more, not even a committed transaction's end LSN: the position guard relies
    /// on the slot's confirmed_flush_lsn never passing what the replica has stored (see
    /// `crate::guard`). The server then resends the last applied transaction after a
    /// restart, which is skipped by its commit LSN; the keepalive that follows it (sent
    /// because the write position below is behind the server's) moves the slot past it.
    fn confirmed(&self, st: &mut State) -> u64 {
        let acked = self
            .acks
            .borrow()
            .as_ref()
            .and_then(|p| parse_lsn(&p.0))
            .unwrap_or(0);
        st.confirmed = st.confirmed.max(acked).max(self.applied_lsn);
        st.confirmed
    }

    async fn send_status(&mut self, st: &mut State, reply: bool) -> Result<()> {
        let acked = self.confirmed(st);
        self.conn
            .send_standby_status_update(acked, acked, acked, reply)
            .await
            .map_err(|e| replication_error(e, "sending standby status"))
    }

    pub async fn run(mut self) -> Result<()> {
        let mut status = interval(STATUS_INTERVAL);
        status.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut st = State {
            confirmed: 0,
            relations: HashMap::new(),
            in_tx: None,
            tx_lsn: 0,
            tx_xid: 0,
            delivered_lsn: self.applied_lsn,
            joining: None,
            discover: interval(DISCOVER_INTERVAL),
            nudge: interval(NUDGE_INTERVAL),
            chunk: Vec::with_capacity(CHUNK_ROWS),
            chunk_bytes: 0,
            idle_sent: self.acknowledged_lsn,
            status,
            partitions: None,
            partition_barrier: None,
            attached: Default::default(),
        };
        let mut changed = self.check_partitions(&mut st).await?;
        st.discover
            .set_missed_tick_behavior(MissedTickBehavior::Delay);
        st.nudge.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let join_now = std::mem::take(&mut self.join_now);
        if !join_now.is_empty() {
            self.join(&mut st, join_now).await?;
        }
        for (oid, id) in std::mem::take(&mut self.recopy_now) {
            changed.retain(|c| *c != id);
            self.recopy(&mut st, oid, &id, republish::MISSED, false)
                .await?;
        }
        // Partitions changed while stopped: copied again as other changes made then are.
        self.recopy_partitioned(&mut st, changed).await?;
        let token = CancellationToken::new();
        loop {
            // New tables are looked for between transactions, one set of them at a time.
            let discover = self.joiner.is_some() && st.joining.is_none() && st.in_tx.is_none();
            // Keepalives say how far the server's WAL goes; an idle server sends one only
            // when asked once the client has confirmed everything it sent. Joining tables and
            // copied tables waiting for their horizon ask every second.
            let nudge = st.joining.is_some()
                || st.partition_barrier.is_some()
                || self.copy.as_ref().is_some_and(|c| c.waiting_for_horizon());
            // A chunk is read between transactions: when it is due (the stream is busy), or
            // when nothing else is ready (the stream is idle).
            // While a joining table waits for transactions to end, only when it is looked at
            // again.
            let copying = st.in_tx.is_none()
                && st.joining.is_none()
                && self.copy.as_ref().is_some_and(|c| c.copying());
            let held = self.copy.as_ref().and_then(|c| c.held_until());
            let chunk = copying && held.is_none();
            let due = held.unwrap_or_else(|| {
                self.copy
                    .as_ref()
                    .map_or_else(std::time::Instant::now, |c| c.due)
            });
            let wake = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(due.into()), if copying => Wake::Chunk,
                r = self.acks.changed() => { if r.is_err() { return Err(Error::shutdown()) } Wake::Ack }
                _ = st.status.tick() => Wake::Tick,
                _ = st.discover.tick(), if discover => Wake::Discover,
                _ = st.nudge.tick(), if nudge => Wake::Nudge,
                d = self.conn.get_copy_data_async(&token) => Wake::Data(d),
                _ = std::future::ready(()), if chunk => Wake::Chunk,
            };
            match wake {
                Wake::Chunk => self.copy_chunk(&mut st).await?,
                Wake::Ack => self.send_status(&mut st, false).await?,
                Wake::Tick => self.send_status(&mut st, false).await?,
                Wake::Discover => {
                    self.forget_visible(&mut st).await?;
                    self.discover(&mut st).await?;
                    self.recopy_requested(&mut st).await?;
                    self.record_layouts(&mut st).await?;
                }
                Wake::Nudge => self.send_status(&mut st, true).await?,
                Wake::Data(d) => {
                    let payload =
                        d.map_err(|e| replication_error(e, "reading the replication stream"))?;
                    let msg = decode_copy_data(payload).map_err(|e| {
                        Error::source_fatal(format!("malformed replication message: {e}"))
                    })?;
                    match msg {
                        ReplicationMessage::XLogData { data, .. } => {
                            let m = decode(data).map_err(|e| {
                                Error::source_fatal(format!("malformed pgoutput message: {e}"))
                            })?;
                            self.handle(&mut st, m).await?;
                        }
                        ReplicationMessage::Keepalive {
                            wal_end,
                            reply_requested,
                            ..
                        } => {
                            if st.in_tx.is_none()
                                && st.joining.as_ref().is_some_and(|j| wal_end >= j.lsn)
                            {
                                // Every transaction that commits before the joining tables'
                                // snapshot has been received.
                                self.copy_joining(&mut st).await?;
                            }
                            if st.in_tx.is_none() && self.copy.is_some() {
                                self.passed(&mut st, wal_end).await?;
                                self.partitions_passed(&mut st, wal_end).await?;
                            }
                            if st.in_tx.is_none()
                                && wal_end > st.idle_sent
                                && wal_end > st.confirmed
                            {
                                // Nothing of ours is pending before wal_end: it may be confirmed once
                                // everything received so far is committed.
                                st.idle_sent = wal_end;
                                self.send(
                                    &mut st,
                                    SourceEvent::Idle(Position(format_lsn(wal_end))),
                                )
                                .await?;
                            }
                            if reply_requested {
                                self.send_status(&mut st, false).await?;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs `work` (which must not borrow the stream), answering the server meanwhile.
    async fn answering<T>(
        &mut self,
        st: &mut State,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = st.status.tick() => self.send_status(st, false).await?,
            }
        }
    }

    /// Looks for selected tables the replica does not hold: created since the stream
    /// started, or refused before (asked again, so a fixed cause needs no restart). A refused
    /// table that is no longer selected (dropped, renamed) leaves the list.
    async fn discover(&mut self, st: &mut State) -> Result<()> {
        let known: HashSet<TableId> = self.tables.keys().cloned().collect();
        let (client, patterns) = (self.client, self.patterns);
        let new = self
            .answering(st, selected_tables(client, patterns, &known))
            .await?;
        for (id, _) in self.unreplicated.list() {
            // (A held table attached as a partition is listed by `check_partitions`.)
            let gone = !known.contains(&id) && !new.iter().any(|t| t.schema.id == id);
            if gone && self.unreplicated.clear(&id) {
                info!(table = %id, "a table that could not join is no longer selected (dropped or renamed)");
            }
        }
        let changed = self.check_partitions(st).await?;
        if new.is_empty() {
            self.republish(st).await?;
        } else {
            self.join(st, new).await?;
        }
        self.recopy_partitioned(st, changed).await
    }

    /// Publishes `tables` and copies them: in chunks when the destination copies in chunks
    /// (`join_in_chunks`), otherwise at a new slot's exported snapshot, their changes held
    /// back until the stream passes it (see `crate::join`).
    async fn join(&mut self, st: &mut State, tables: Vec<SourceTable>) -> Result<()> {
        let Some(joiner) = self.joiner.take() else {
            return Err(Error::source_fatal(
                "tables must join while streaming, but this destination cannot take in tables",
            ));
        };
        let client = self.client;
        let chunked = self.copy.is_some();
        let begun = async {
            let (published, refused) = self.answering(st, joiner.publish(client, tables)).await?;
            for (id, reason) in refused {
                // Asked again every poll: warn when the reason is new, not every 5 s.
                if self.unreplicated.set(&id, &reason) {
                    warn!(table = %id, reason = %reason, "a selected table cannot join the replica (the other tables replicate on; /health reports degraded); it joins once the cause is fixed, no restart needed");
                }
            }
            if published.is_empty() || chunked {
                return Ok((published, None));
            }
            let joining = self.answering(st, joiner.begin(published)).await?;
            Ok((Vec::new(), Some(joining)))
        }
        .await;
        self.joiner = Some(joiner);
        let (published, joining) = begun?;
        let tables = joining.as_ref().map_or(&published, |j| &j.tables);
        for t in tables {
            self.tables.insert(t.schema.id.clone(), t.schema.clone());
            // Described before it was selected (a rename): from now on it is replicated.
            if let Some(rel) = st.relations.get_mut(&t.oid) {
                *rel = Some(t.schema.clone());
            }
        }
        if !published.is_empty() {
            return self.join_in_chunks(st, published).await;
        }
        st.joining = joining;
        self.send_status(st, true).await
    }

    /// Sends the joining tables' copy as one transaction at their snapshot's position.
    async fn copy_joining(&mut self, st: &mut State) -> Result<()> {
        let Some(joining) = st.joining.take() else {
            return Ok(());
        };
        let lsn = joining.lsn;
        let ids: Vec<TableId> = joining.ids.iter().cloned().collect();
        let (client, events) = (self.client, self.events.clone());
        let started = std::time::Instant::now();
        let rows = self
            .answering(st, async move {
                let position = Position(format_lsn(joining.lsn));
                copy_tables(
                    client,
                    &joining.snapshot,
                    position,
                    &joining.tables,
                    &joining.recopy,
                    &events,
                )
                .await
            })
            .await?;
        for id in &ids {
            // A table refused before has joined: the cause was fixed.
            if self.unreplicated.clear(id) {
                info!(table = %id, "a table that could not join has joined the replica");
            }
        }
        info!(rows, seconds = format!("{:.1}", started.elapsed().as_secs_f64()), at = %format_lsn(lsn), "joining tables copied; their changes stream from here");
        Ok(())
    }

    /// Sends an event, answering the server meanwhile if the apply loop is busy.
    async fn send(&mut self, st: &mut State, event: SourceEvent) -> Result<()> {
        let events = self.events.clone();
        let reserve = async { events.reserve().await.map_err(|_| Error::shutdown()) };
        self.answering(st, reserve).await?.send(event);
        Ok(())
    }

    /// Sends `event` (sink state: copy progress, table layouts) as a transaction of its own at
    /// the stream's position; between stream transactions only.
    async fn send_alone(&mut self, st: &mut State, event: SourceEvent) -> Result<()> {
        let tx = st.position_tx();
        self.send(st, SourceEvent::Begin(tx)).await?;
        self.send(st, event).await?;
        self.send(st, SourceEvent::Commit).await
    }

    async fn flush_chunk(&mut self, st: &mut State) -> Result<()> {
        if !st.chunk.is_empty() {
            let chunk = std::mem::replace(&mut st.chunk, Vec::with_capacity(CHUNK_ROWS));
            st.chunk_bytes = 0;
            self.send(st, SourceEvent::Changes(chunk)).await?;
        }
        Ok(())
    }

    async fn push(&mut self, st: &mut State, change: Change) -> Result<()> {
        st.chunk_bytes += change_bytes(&change);
        st.chunk.push(change);
        if st.chunk.len() >= CHUNK_ROWS || st.chunk_bytes >= MAX_EVENT_BYTES {
            self.flush_chunk(st).await?;
        }
        Ok(())
    }

    /// The replicated table a change of `relation` goes to: `None` for a table that is not
    /// replicated, and for a joining table in a transaction its copy already holds.
    fn table(&self, st: &State, relation: u32) -> Result<Option<Arc<TableSchema>>> {
        let table = st.relations.get(&relation).cloned().ok_or_else(|| {
            Error::source_fatal(format!(
                "pgoutput sent a change for relation {relation} before describing it"
            ))
        })?;
        let held = |t: &Arc<TableSchema>| {
            st.joining
                .as_ref()
                .is_some_and(|j| st.tx_lsn < j.lsn && j.ids.contains(&t.id))
                || self
                    .copy
                    .as_ref()
                    .is_some_and(|c| c.drops(&t.id, st.tx_xid))
        };
        Ok(table.filter(|t| !held(t)))
    }

    async fn handle(&mut self, st: &mut State, m: PgOutputMessage) -> Result<()> {
        let skipping = st.in_tx == Some(true);
        match m {
            PgOutputMessage::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => {
                if st.joining.as_ref().is_some_and(|j| final_lsn > j.lsn) {
                    self.copy_joining(st).await?;
                }
                // Every transaction committed before this one has been delivered.
                self.passed(st, final_lsn).await?;
                self.partitions_passed(st, final_lsn).await?;
                let skip = final_lsn <= self.applied_lsn;
                st.in_tx = Some(skip);
                st.tx_lsn = final_lsn;
                st.tx_xid = xid;
                // Tracked whether or not a copy runs: a copy started later must show it too.
                if let Some(copy) = self.copy.as_mut().filter(|_| !skip) {
                    copy.delivered(xid);
                }
                if skip {
                    debug!(lsn = %format_lsn(final_lsn), "skipping a transaction applied before");
                } else {
                    let tx = TxInfo {
                        position: Position(format_lsn(final_lsn)),
                        commit_time_us,
                        backlog: self.wal_end.backlog(final_lsn),
                    };
                    self.send(st, SourceEvent::Begin(tx)).await?;
                }
            }
            PgOutputMessage::Commit { .. } => {
                if st.in_tx.take() == Some(false) {
                    self.flush_chunk(st).await?;
                    self.send(st, SourceEvent::Commit).await?;
                    st.delivered_lsn = st.tx_lsn;
                }
            }
            PgOutputMessage::Relation(rel) => {
                let id = TableId::new(rel.namespace.clone(), rel.name.clone());
                let schema = self.tables.get(&id).cloned();
                let mut schema = schema;
                if let Some(known) = &schema {
                    // pgoutput describes the table as of this point in the WAL: a definition
                    // that differs is a schema change, which the changes carry to the sink.
                    let current = relation_schema(&rel, known);
                    if current != **known {
                        info!(
                            table = %id,
                            columns = %current.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                            "table definition changed at the source; the replica follows"
                        );
                        let uncarried = uncarried_change(known, &current);
                        let current = Arc::new(current);
                        self.tables.insert(id.clone(), current.clone());
                        schema = Some(current);
                        if let Some(reason) = uncarried {
                            st.relations.insert(rel.oid, schema);
                            return self.recopy(st, rel.oid, &id, &reason, true).await;
                        }
                    }
                } else {
                    debug!(table = %id, "publication sends a table that is not replicated; ignoring it");
                }
                st.relations.insert(rel.oid, schema);
            }
            _ if skipping => {}
            PgOutputMessage::Insert { relation, new } => {
                if let Some(t) = self.table(st, relation)? {
                    let row = values(&new, &t)?;
                    self.push(
                        st,
                        Change {
                            table: t,
                            kind: ChangeKind::Insert,
                            row,
                            old: None,
                        },
                    )
                    .await?;
                }
            }
            PgOutputMessage::Update { relation, old, new } => {
                if let Some(t) = self.table(st, relation)? {
                    let change = update(t, old, &new)?;
                    self.push(st, change).await?;
                }
            }
            PgOutputMessage::Delete { relation, old } => {
                if let Some(t) = self.table(st, relation)? {
                    let (OldTuple::Key(tuple) | OldTuple::Full(tuple)) = &old;
                    let row = values(tuple, &t)?;
                    self.push(
                        st,
                        Change {
                            table: t,
                            kind: ChangeKind::Delete,
                            row,
                            old: None,
                        },
                    )
                    .await?;
                }
            }
            PgOutputMessage::Truncate { relations, .. } => {
                let mut tables = Vec::new();
                for r in relations {
                    if let Some(t) = self.table(st, r)? {
                        tables.push(t);
                    }
                }
                if !tables.is_empty() {
                    self.flush_chunk(st).await?;
                    info!(tables = tables.len(), "truncate");
                    self.send(st, SourceEvent::Truncate(tables)).await?;
                }
            }
            PgOutputMessage::Origin { .. }
            | PgOutputMessage::Type { .. }
            | PgOutputMessage::Message { .. } => {}
        }
        Ok(())
    }
}

fn values(tuple: &Tuple, schema: &TableSchema) -> Result<Vec<Value>> {
    if tuple.0.len() != schema.columns.len() {
        return Err(Error::source_fatal(format!(
            "pgoutput sent {} values for {}, which has {} columns",
            tuple.0.len(),
            schema.id,
            schema.columns.len()
        )));
    }
    tuple
        .0
        .iter()
        .zip(&schema.columns)
        .map(|(v, col)| match v {
            TupleValue::Null => Ok(Value::Null),
            TupleValue::Unchanged => Ok(Value::Unchanged),
            TupleValue::Text(b) => canonical(&col.ty, b.clone())
                .map_err(|e| e.context(format!("{}.{}", schema.id, col.name))),
            TupleValue::Binary(_) => Err(Error::source_fatal(
                "pgoutput sent a binary value; tidewater requests text",
            )),
        })
        .collect()
}

/// An update: `old` carries the old key only when the key changed, or the whole old row for
/// keyless tables; unchanged (TOAST) values are filled from a full old row when there is one.
fn update(t: Arc<TableSchema>, old: Option<OldTuple>, new: &Tuple) -> Result<Change> {
    let mut row = values(new, &t)?;
    let old_values = match &old {
        Some(OldTuple::Key(tuple)) | Some(OldTuple::Full(tuple)) => Some(values(tuple, &t)?),
        None => None,
    };
    if let (Some(OldTuple::Full(_)), Some(old_row)) = (&old, &old_values) {
        for (v, o) in row.iter_mut().zip(old_row) {
            if *v == Value::Unchanged {
                *v = o.clone();
            }
        }
    }
    let old = match old_values {
        None => None,
        Some(old_row) if t.has_key() => {
            let old_key: Vec<Value> = t.key.iter().map(|&k| old_row[k].clone()).collect();
            let new_key: Vec<Value> = t.key.iter().map(|&k| row[k].clone()).collect();
            (old_key != new_key).then_some(old_key)
        }
        Some(old_row) => Some(old_row),
    };
    Ok(Change {
        table: t,
        kind: ChangeKind::Update,
        row,
        old,
    })
}

/// The table as a Relation message describes it. Columns that kept their name and type keep
/// what the catalog said of them; new or retyped ones are typed from their type OID. The key
/// is the replica identity the message flags when it names a key (the primary key, or the
/// index of `REPLICA IDENTITY USING INDEX`: what the following updates and deletes carry as
/// old key), so a keyed table whose key changed is seen to change (and is copied again under
/// the new key, `uncarried_change`). Otherwise (FULL flags every column; a keyless table
/// flags none) the key stays the one known, by column names (under FULL that may be a unique
/// index, `crate::catalog`): a table that gains or loses its key moves publication and is
/// copied again (`placement`).
fn relation_schema(rel: &crate::pgoutput::Relation, known: &TableSchema) -> TableSchema {
    let columns: Vec<Column> = rel
        .columns
        .iter()
        .map(|r| {
            let ty = column_type(r.type_oid, r.type_modifier).unwrap_or(ColumnType::Text);
            match known.columns.iter().find(|c| c.name == r.name) {
                Some(c) if c.ty == ty || c.ty == ColumnType::Text => c.clone(),
                _ => Column {
                    name: r.name.clone(),
                    ty,
                    nullable: true,
                    source_type: format!("type oid {}", r.type_oid),
                },
            }
        })
        .collect();
    let identity: Vec<usize> = (0..columns.len())
        .filter(|&i| rel.columns[i].is_key())
        .collect();
    let keyed_identity = matches!(rel.replica_identity, b'd' | b'i') && !identity.is_empty();
    let name = |k: &usize| columns[*k].name.as_str();
    let known_names: HashSet<&str> = known
        .key
        .iter()
        .map(|&k| known.columns[k].name.as_str())
        .collect();
    // The same columns as the known key keep its order (the index's, from the catalog).
    let key = if keyed_identity
        && known.has_key()
        && identity.iter().map(name).collect::<HashSet<_>>() != known_names
    {
        identity
    } else {
        known
            .key
            .iter()
            .filter_map(|&k| columns.iter().position(|c| c.name == known.columns[k].name))
            .collect()
    };
    TableSchema {
        id: known.id.clone(),
        columns,
        key,
    }
}
