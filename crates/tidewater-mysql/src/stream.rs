//! Streaming the row binlog: events become whole source transactions for the apply loop.
//!
//! A transaction opens at its GTID event (MariaDB 162, MySQL GTID / anonymous GTID), which
//! also tells the position *after* it (GTID state plus this GTID, or file offset plus the
//! transaction's length), so its changes can flow to the apply loop in chunks before the
//! commit event arrives. Only transactions that change a selected table reach the apply loop;
//! after others (and on heartbeats) it hears that nothing is pending up to their position.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, EventData, GtidEvent, TableMapEvent};
use mysql_async::{BinlogStream, Conn};
use tidewater_core::apply::{change_bytes, MAX_EVENT_BYTES};
use tidewater_core::glob::selected;
use tidewater_core::stats::now_us;
use tidewater_core::{
    Change, Error, Position, RecopyRequests, Result, SourceEvent, TableId, TxInfo, Unreplicated,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::backlog::BinlogEnd;
use crate::catalog::{describe, SourceTable};
use crate::conn::{connect, is_purged, my_error, CannotCatchUp, Flavor, Purged};
use crate::ddl::{self, DdlKind};
use crate::gtid::{parse_mariadb_gtid_event, uuid_text, MARIADB_GTID_EVENT};
use crate::join::{unreadable, Joining};
use crate::position::BinlogPosition;
use crate::raw_values::TextArena;
use crate::rows::TableMap;
use crate::value::ZeroDates;
use recopy::NoRowEvents;

pub mod chunks;
mod recopy;

/// Changes per event sent to the apply loop.
const EVENT_ROWS: usize = 1024;
/// The server sends a heartbeat every second while idle; this much silence means the
/// connection is dead even if TCP has not noticed.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(15);
/// Most often an idle position is sent after transactions that change no selected table.
const IDLE_EVERY: Duration = Duration::from_millis(50);
/// How often tables listed as not replicated are asked again.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// MySQL 8.0.26+'s heartbeat (`HEARTBEAT_LOG_EVENT_V2`), which the binlog client does not
/// decode: handled as a heartbeat by its type alone.
const HEARTBEAT_V2_EVENT: u8 = 0x29;

struct OpenTx {
    info: TxInfo,
    /// Position after this transaction.
    after: BinlogPosition,
    /// Inside BEGIN ... COMMIT (a statement outside is a standalone DDL transaction).
    in_body: bool,
    /// `Begin` sent to the apply loop (the transaction changed a selected table).
    begun: bool,
    pending: Vec<Change>,
    /// Estimated bytes of `pending` (`tidewater_core::apply::change_bytes`).
    pending_bytes: usize,
    /// Its events came in a compressed payload (MySQL `binlog_transaction_compression`),
    /// which the binlog client decompresses and hands on event by event.
    compressed: bool,
}

pub struct Stream {
    pub tables: HashMap<(String, String), SourceTable>,
    /// The source URL and table globs: tables are described again after a schema change,
    /// and tables created mid-stream that match the globs join the replication.
    url: String,
    patterns: Vec<String>,
    catalog: Option<Conn>,
    /// Position after the last transaction read completely.
    pub position: BinlogPosition,
    pub zero: ZeroDates,
    pub events: mpsc::Sender<SourceEvent>,
    pub file: String,
    /// The end offset (in `file`) of the event being handled: where what the stream has
    /// read ends, compared with the server's end of binlog for the backlog signal.
    event_end: u64,
    /// The server's end of binlog, polled (the backlog signal on each transaction).
    binlog_end: BinlogEnd,
    maps: HashMap<u64, Option<TableMap>>,
    /// Where decoded values' text is written (shared allocations, `raw_values`).
    arena: TextArena,
    tx: Option<OpenTx>,
    /// The last idle position sent, and when.
    idle: Option<(BinlogPosition, Instant)>,
    /// Tables whose copy waits for the stream to reach its snapshot's position (held open,
    /// or only its position when they are copied in chunks: see `join`).
    joining: Option<Joining>,
    /// How to open a snapshot to copy a table again (see `recopy`); `None` when the
    /// destination cannot take in tables while streaming.
    recopy: Option<Flavor>,
    /// Selected tables the binlog names that cannot be replicated, with why (set by the
    /// source from `SourceContext`); asked again every `RETRY_EVERY` between transactions.
    pub unreplicated: Unreplicated,
    /// Replicated tables the runtime asks to copy again (see `recopy`).
    pub recopy_requests: RecopyRequests,
    flavor: Flavor,
    retried: Instant,
    /// Replicated tables dropped (themselves or their database) or renamed away in this run.
    /// A `CREATE TABLE IF NOT EXISTS` of a table the replica holds that is not among these
    /// changed nothing (the table was there all along: the stream would have read its drop),
    /// so it is not copied again.
    gone: HashSet<(String, String)>,
    /// The chunked copies (`chunks`; MariaDB, MySQL with GTIDs): the initial snapshot while a table is not
    /// consistent yet, and tables copied again while streaming. `None` when the destination
    /// does not copy in chunks.
    pub copy: Option<chunks::Copying>,
}

impl Stream {
    pub fn new(
        url: &str,
        patterns: &[String],
        tables: &[SourceTable],
        position: BinlogPosition,
        (zero, flavor): (ZeroDates, Flavor),
        events: mpsc::Sender<SourceEvent>,
    ) -> Stream {
        let file = match &position {
            BinlogPosition::File { file, .. } => file.clone(),
            _ => String::new(),
        };
        Stream {
            tables: tables
                .iter()
                .map(|t| {
                    (
                        (t.schema.id.schema.clone(), t.schema.id.name.clone()),
                        t.clone(),
                    )
                })
                .collect(),
            url: url.to_string(),
            patterns: patterns.to_vec(),
            catalog: None,
            position,
            zero,
            events,
            file,
            event_end: 0,
            binlog_end: BinlogEnd::start(url.to_string(), flavor),
            maps: HashMap::new(),
            arena: TextArena::default(),
            tx: None,
            idle: None,
            joining: None,
            recopy: None,
            unreplicated: Unreplicated::default(),
            recopy_requests: RecopyRequests::default(),
            flavor,
            retried: Instant::now(),
            gone: HashSet::new(),
            copy: None,
        }
    }

    /// Tables whose definition changes in a way the binlog does not carry are copied again
    /// through snapshots of this flavor (see `recopy`).
    pub fn with_recopy(mut self, flavor: Flavor) -> Stream {
        self.recopy = Some(flavor);
        self
    }

    /// Copies these tables when the stream reaches their snapshot (see `join`).
    pub fn with_joining(mut self, joining: Joining) -> Stream {
        self.joining = Some(joining);
        self
    }

    /// The stream has reached the joining copy's position: the copy is sent, or (in chunks)
    /// the tables' copies start (`recopy::join_in_chunks`).
    async fn copy_joining(&mut self) -> Result<()> {
        match self.joining.take() {
            Some(j) if j.chunked() => {
                let (tables, recopy) = j.into_tables();
                self.join_in_chunks(tables, &recopy).await
            }
            Some(j) => j.copy(self.zero, &self.events, &self.unreplicated).await,
            None => Ok(()),
        }
    }

    /// Whether changes of `table` in the open transaction are held by the joining copy (the
    /// copy is sent before the first transaction it does not hold, so while it waits every
    /// open transaction is one it holds).
    fn held(&self, table: &TableId) -> bool {
        self.tx.is_some() && self.joining.as_ref().is_some_and(|j| j.ids.contains(table))
    }

    pub async fn run(mut self, mut binlog: BinlogStream) -> Result<()> {
        loop {
            // A chunk is read between transactions: when it is due (the stream is busy), or
            // when no binlog event is ready (the stream is idle).
            let chunk = self.tx.is_none()
                && self.joining.is_none()
                && self.copy.as_ref().is_some_and(|c| c.copying());
            let due = self.copy.as_ref().map_or_else(Instant::now, |c| c.due);
            let next = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(due.into()), if chunk => None,
                n = tokio::time::timeout(SILENCE_LIMIT, binlog.next()) => Some(n),
                _ = std::future::ready(()), if chunk => None,
            };
            let Some(next) = next else {
                self.copy_chunk().await?;
                continue;
            };
            let event = match next {
                Err(_) => {
                    return Err(Error::source_retryable(format!(
                        "no binlog event or heartbeat for {} s",
                        SILENCE_LIMIT.as_secs()
                    )))
                }
                Ok(None) => {
                    return Err(Error::source_retryable(
                        "the source closed the binlog stream",
                    ))
                }
                Ok(Some(Err(e))) => {
                    let err = my_error(e, "reading the binlog");
                    return Err(if is_purged(&err) {
                        Error::source_fatal(format!(
                            "{} — position {} is no longer in the source's binlog",
                            err.message(),
                            self.position
                        ))
                        .with_source(Purged)
                    } else {
                        err
                    });
                }
                Ok(Some(Ok(ev))) => ev,
            };
            self.handle(&event).await?;
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<()> {
        let header = event.header();
        let raw = header.event_type_raw();
        if header.log_pos() != 0 {
            self.event_end = u64::from(header.log_pos());
        }
        if raw == MARIADB_GTID_EVENT {
            let g = parse_mariadb_gtid_event(event.data(), header.server_id())
                .ok_or_else(|| Error::source_fatal("malformed MariaDB GTID event"))?;
            let BinlogPosition::MariaDb(state) = &self.position else {
                return Err(Error::source_fatal(
                    "MariaDB GTID event while resuming from a non-GTID position",
                ));
            };
            let mut after = state.clone();
            after.apply(g.gtid);
            // MariaDB logs whole seconds. The event is sent once committed, so its arrival
            // time, kept inside the logged second, is the closest estimate of the commit.
            let second = i64::from(header.timestamp()) * 1_000_000;
            let commit_us = now_us().clamp(second, second + 999_999);
            self.open(BinlogPosition::MariaDb(after), commit_us, !g.standalone)
                .await?;
            return Ok(());
        }
        if raw == HEARTBEAT_V2_EVENT {
            return self.heartbeat().await;
        }
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()), // MariaDB annotate/checkpoint/GTID list, MySQL extras
            Err(e) => {
                return Err(Error::source_fatal(format!(
                    "undecodable binlog event (type {raw}) at {}:{}: {e}",
                    self.file,
                    header.log_pos()
                )))
            }
        };
        match data {
            EventData::RotateEvent(r) => {
                self.file = binlog_file_name(&r.name());
                debug!(file = %self.file, "binlog file");
            }
            EventData::GtidEvent(g) => {
                let start = u64::from(header.log_pos()) - u64::from(header.event_size());
                let (after, commit_us) =
                    mysql_tx_start(&self.position, &self.file, start, header.timestamp(), &g)?;
                self.open(after, commit_us, false).await?;
            }
            EventData::AnonymousGtidEvent(g) => {
                let start = u64::from(header.log_pos()) - u64::from(header.event_size());
                let (after, commit_us) =
                    mysql_tx_start(&self.position, &self.file, start, header.timestamp(), &g.0)?;
                self.open(after, commit_us, false).await?;
            }
            EventData::QueryEvent(q) => {
                let query = q.query();
                let trimmed = query.trim();
                if trimmed.eq_ignore_ascii_case("BEGIN") {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.in_body = true;
                    }
                } else if trimmed.eq_ignore_ascii_case("COMMIT") {
                    self.commit().await?;
                } else if trimmed.eq_ignore_ascii_case("ROLLBACK") {
                    self.tx = None;
                } else if self.tx.as_ref().is_some_and(|t| !t.in_body) {
                    let db = q.schema().into_owned();
                    self.statement(trimmed, &db).await?;
                    self.check_statement_change(trimmed, &db).await?;
                    self.commit().await?;
                } else {
                    // A statement inside a transaction: data changes logged as statements.
                    let db = q.schema().into_owned();
                    self.check_statement_change(trimmed, &db).await?;
                }
            }
            EventData::TableMapEvent(tme) => {
                let id = tme.table_id();
                if self.maps.contains_key(&id) {
                    return Ok(());
                }
                let key = (
                    tme.database_name().into_owned(),
                    tme.table_name().into_owned(),
                );
                if self.held(&TableId::new(key.0.clone(), key.1.clone())) {
                    // Without a map its rows here are dropped (the joining copy holds them),
                    // and its definition at this older point of the binlog does not matter.
                    return Ok(());
                }
                let map = self.table_map(&tme, key, header.log_pos()).await?;
                self.maps.insert(id, map);
            }
            EventData::RowsEvent(rows) => {
                let Some(Some(map)) = self.maps.get(&rows.table_id()) else {
                    return Ok(());
                };
                let Some(tx) = self.tx.as_mut() else {
                    return Err(Error::source_fatal(
                        "row event outside a transaction: tidewater needs GTID events in the binlog \
                         (MySQL 5.7+ or MariaDB 10+)",
                    ));
                };
                if self
                    .copy
                    .as_ref()
                    .is_some_and(|c| c.drops(&map.table.id, &tx.after))
                {
                    return Ok(());
                }
                let decoded = tx.pending.len();
                map.decode(&rows, (self.zero, &mut self.arena), &mut tx.pending)
                    .map_err(|e| {
                        Error::source_fatal(format!(
                            "{} at {}:{}: {e}",
                            map.table.id,
                            self.file,
                            header.log_pos()
                        ))
                    })?;
                tx.pending_bytes += tx.pending[decoded..]
                    .iter()
                    .map(change_bytes)
                    .sum::<usize>();
                if tx.pending.len() >= EVENT_ROWS || tx.pending_bytes >= MAX_EVENT_BYTES {
                    self.flush().await?;
                }
            }
            EventData::XidEvent(_) => self.commit().await?,
            EventData::TransactionPayloadEvent(_) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.compressed = true;
                }
            }
            EventData::HeartbeatEvent => self.heartbeat().await?,
            _ => {}
        }
        Ok(())
    }

    /// The server is idle (a heartbeat): what waits for a moment between transactions.
    async fn heartbeat(&mut self) -> Result<()> {
        self.idle(true).await?;
        self.passed().await?;
        self.retry_unreplicated().await?;
        self.recopy_requested().await
    }

    /// The decoder for a table map event: `None` for a table that is not replicated. A table
    /// whose binlog columns no longer match is described again (a schema change: its
    /// changes then carry the new definition, which the sink applies); a new table matching
    /// the globs is described for the first time.
    async fn table_map(
        &mut self,
        tme: &TableMapEvent<'_>,
        key: (String, String),
        log_pos: u32,
    ) -> Result<Option<TableMap>> {
        let id = TableId::new(key.0.clone(), key.1.clone());
        let known = self.tables.get(&key).cloned();
        if known.is_none() && !selected(&self.patterns, &id) {
            return Ok(None);
        }
        let first_error = match &known {
            Some(t) => match TableMap::new(tme, t.schema.clone(), &t.kinds) {
                Ok(map) => return Ok(Some(map)),
                Err(e) => e,
            },
            None => String::new(),
        };
        let fresh = self.describe(id.clone()).await?;
        if known.is_none() {
            let conn = self.catalog.as_mut().expect("connected by describe");
            if let Some(reason) = unreadable(conn, &fresh).await? {
                // Its rows are not applied: listed (health degraded) until it can join.
                if self.unreplicated.set(&id, &reason) {
                    warn!(table = %id, reason = %reason, "a selected table cannot be replicated (the other tables replicate on; /health reports degraded); it joins once the cause is fixed, no restart needed");
                }
                return Ok(None);
            }
        }
        match TableMap::new(tme, fresh.schema.clone(), &fresh.kinds) {
            Ok(map) => {
                match &known {
                    Some(_) => info!(table = %id, "table definition changed at the source; the replica follows"),
                    None => info!(table = %id, "new table matches source.tables; replicating it from its creation"),
                }
                self.tables.insert(key, fresh);
                Ok(Some(map))
            }
            Err(e) => Err(Error::source_fatal(format!(
                "{id} changed at the source ({}) at {}:{log_pos}, and its current definition does not \
                 match the binlog either ({e}): more schema changes followed while tidewater was behind",
                if first_error.is_empty() { "new table" } else { &first_error },
                self.file
            ))
            .with_source(CannotCatchUp)),
        }
    }

    async fn describe(&mut self, id: TableId) -> Result<SourceTable> {
        if self.catalog.is_none() {
            self.catalog = Some(connect(&self.url).await?);
        }
        let conn = self.catalog.as_mut().expect("connected above");
        describe(conn, id).await
    }

    async fn open(
        &mut self,
        after: BinlogPosition,
        commit_time_us: i64,
        in_body: bool,
    ) -> Result<()> {
        if self.joining.as_ref().is_some_and(|j| !j.holds(&after)) {
            // The first transaction the joining copy does not hold: the copy goes first.
            self.copy_joining().await?;
        }
        if let Some(tx) = &self.tx {
            // The client yields a compressed payload's events after the payload event, and
            // yields none when it cannot decompress it: a transaction whose payload brought
            // no commit was lost, whether or not it changed a replicated table.
            if tx.compressed {
                return Err(Error::source_fatal(format!(
                    "the compressed transaction to {} (binlog_transaction_compression) at {}:{} \
                     could not be read: its payload yielded no commit, so nothing of it was \
                     applied",
                    tx.after, self.file, self.event_end
                ))
                .with_fix(
                    "SET GLOBAL binlog_transaction_compression = OFF at the source (and in \
                     my.cnf), then start tidewater again; it resumes before this transaction",
                ));
            }
            if tx.begun {
                return Err(Error::source_fatal(format!(
                    "transaction to {} never committed in the binlog",
                    tx.after
                )));
            }
        }
        self.tx = Some(OpenTx {
            info: TxInfo {
                position: Position(after.to_string()),
                commit_time_us,
                backlog: tidewater_core::Backlog::Unknown,
            },
            after,
            in_body,
            begun: false,
            pending: Vec::new(),
            pending_bytes: 0,
            compressed: false,
        });
        Ok(())
    }

    async fn send(&self, e: SourceEvent) -> Result<()> {
        self.events.send(e).await.map_err(|_| Error::shutdown())
    }

    async fn flush(&mut self) -> Result<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        if tx.pending.is_empty() {
            return Ok(());
        }
        let backlog = self.binlog_end.backlog(&self.file, self.event_end);
        let begin = (!tx.begun).then(|| TxInfo {
            backlog,
            ..tx.info.clone()
        });
        tx.begun = true;
        let changes = std::mem::take(&mut tx.pending);
        tx.pending_bytes = 0;
        if let Some(info) = begin {
            self.send(SourceEvent::Begin(info)).await?;
        }
        self.send(SourceEvent::Changes(changes)).await
    }

    async fn commit(&mut self) -> Result<()> {
        self.flush().await?;
        if let Some(tx) = self.tx.take() {
            if tx.begun {
                self.send(SourceEvent::Commit).await?;
            }
            self.position = tx.after;
            if !tx.begun {
                self.idle(false).await?;
            }
        }
        self.passed().await?;
        self.retry_unreplicated().await?;
        self.recopy_requested().await
    }

    /// Between transactions, at most every `RETRY_EVERY`: the tables listed as not
    /// replicated that can be read now (after a GRANT) join like tables the replica does
    /// not hold at start. Their snapshot must hold every transaction the stream delivered:
    /// the stream dropped those transactions' changes to these tables (not replicated then),
    /// so a copy missing one would lose them for good. MariaDB writes the binlog before the
    /// InnoDB commit is visible, hence `snapshot_covering_stream`, not a plain snapshot. From
    /// that position on the stream drops their changes up to it and sends the copy before the
    /// first transaction after it (see `join`).
    async fn retry_unreplicated(&mut self) -> Result<()> {
        if self.tx.is_some()
            || self.joining.is_some()
            || self.unreplicated.is_empty()
            || self.retried.elapsed() < RETRY_EVERY
        {
            return Ok(());
        }
        self.retried = Instant::now();
        let mut readable = Vec::new();
        for (id, _) in self.unreplicated.list() {
            let table = self.describe(id.clone()).await?;
            let conn = self.catalog.as_mut().expect("connected by describe");
            match unreadable(conn, &table).await? {
                Some(reason) => {
                    self.unreplicated.set(&id, &reason);
                }
                None => readable.push(table),
            }
        }
        if readable.is_empty() {
            return Ok(());
        }
        let mut conn = connect(&self.url).await?;
        let at = self
            .snapshot_covering_stream(&mut conn, self.flavor)
            .await?;
        for t in &readable {
            let key = (t.schema.id.schema.clone(), t.schema.id.name.clone());
            self.tables.insert(key, t.clone());
        }
        // Their table ids were mapped to "not replicated": map them afresh.
        self.maps.clear();
        self.joining = Some(Joining::new(at, readable, conn));
        Ok(())
    }

    /// Nothing is pending up to the current position (the last transaction changed no
    /// selected table, or the source is quiet): the apply loop acknowledges it once everything
    /// before is committed, so waiting for a source position (`verify`) ends even when the
    /// transactions that led there were not replicated.
    async fn idle(&mut self, heartbeat: bool) -> Result<()> {
        if self.tx.is_some() {
            return Ok(());
        }
        if self
            .joining
            .as_ref()
            .is_some_and(|j| self.position.reached(&j.at))
        {
            self.copy_joining().await?;
        }
        if let Some((sent, at)) = &self.idle {
            if *sent == self.position || (!heartbeat && at.elapsed() < IDLE_EVERY) {
                return Ok(());
            }
        }
        self.idle = Some((self.position.clone(), Instant::now()));
        self.send(SourceEvent::Idle(Position(self.position.to_string())))
            .await
    }

    /// A statement logged as its own transaction (DDL). TRUNCATE of a selected table is
    /// replicated; other DDL on selected tables is checked when their rows arrive.
    async fn statement(&mut self, query: &str, db: &str) -> Result<()> {
        if let Some(dropped) = ddl::dropped_database(query) {
            let away = self.tables.keys().filter(|(schema, _)| *schema == dropped);
            self.gone.extend(away.cloned());
        }
        let Some(d) = ddl::parse(query, db) else {
            return Ok(());
        };
        if matches!(d.kind, DdlKind::Drop | DdlKind::Rename) {
            for (schema, name) in &d.tables {
                // A table listed as not replicated that is gone is no longer selected.
                self.unreplicated
                    .clear(&TableId::new(schema.clone(), name.clone()));
            }
        }
        // Names no longer there (more than that is safe: at worst a needless copy).
        if d.kind == DdlKind::Drop || !d.renamed_to.is_empty() {
            let away = d.tables.iter().filter(|k| !d.renamed_to.contains(k));
            self.gone.extend(away.cloned());
        }
        // Renamed into the selection: copied here, so not again as a touched table below.
        let mut renamed_in = Vec::new();
        for (schema, name) in &d.renamed_to {
            let id = TableId::new(schema.clone(), name.clone());
            let key = (schema.clone(), name.clone());
            if !self.tables.contains_key(&key) && selected(&self.patterns, &id) && !self.held(&id) {
                self.copy_again_as_now(id, query, NoRowEvents::RenamedIn)
                    .await?;
                renamed_in.push(key);
            }
        }
        let touched: Vec<&SourceTable> = d
            .tables
            .iter()
            .filter(|k| !renamed_in.contains(k))
            .filter_map(|k| self.tables.get(k))
            .filter(|t| !self.held(&t.schema.id))
            .collect();
        if touched.is_empty() {
            return Ok(());
        }
        match d.kind {
            DdlKind::Truncate => {
                let schemas = touched.iter().map(|t| t.schema.clone()).collect();
                let backlog = self.binlog_end.backlog(&self.file, self.event_end);
                let info = self.tx.as_ref().map(|t| TxInfo {
                    backlog,
                    ..t.info.clone()
                });
                if let (Some(info), Some(tx)) = (info, self.tx.as_mut()) {
                    tx.begun = true;
                    self.send(SourceEvent::Begin(info)).await?;
                    self.send(SourceEvent::Truncate(schemas)).await?;
                }
            }
            kind => {
                // Table ids change with the definition: the next table map is checked.
                self.maps.clear();
                if kind == DdlKind::Drop || kind == DdlKind::Rename {
                    warn!(statement = %query, "a replicated table was dropped or renamed at the source");
                } else {
                    info!(statement = %query, "schema change on a replicated table");
                }
                let ids: Vec<TableId> = touched.iter().map(|t| t.schema.id.clone()).collect();
                for id in ids {
                    // A name the replica holds that now names a new table (created, or
                    // another table renamed to it) is copied again.
                    let named = (id.schema.clone(), id.name.clone());
                    if kind == DdlKind::Create && d.if_not_exists && !self.gone.contains(&named) {
                        debug!(statement = %query, "CREATE TABLE IF NOT EXISTS of a table that exists: nothing to copy");
                    } else if kind == DdlKind::Create || d.renamed_to.contains(&named) {
                        self.gone.remove(&named);
                        self.copy_again_as_now(id, query, NoRowEvents::Created)
                            .await?;
                    } else if d.moves_rows {
                        self.copy_again_as_now(id, query, NoRowEvents::Partitions)
                            .await?;
                    } else if kind == DdlKind::Alter {
                        self.check_alter(id, query).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The file name of a rotate event. The first (artificial) rotate event arrives before the
/// format description, so its checksum is not stripped: keep `base.NNNNNN` only.
fn binlog_file_name(name: &str) -> String {
    match name.rfind('.') {
        Some(dot) => {
            let digits = name[dot + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            name[..dot + 1 + digits].to_string()
        }
        None => name.to_string(),
    }
}

/// A MySQL transaction starts (GTID or anonymous GTID event at `event_start` of `file`): the
/// position after it — the GTID set plus this GTID, or (GTIDs off) the offset where the
/// transaction ends, which MySQL 8.0.2+ writes into the event — and its commit time.
fn mysql_tx_start(
    position: &BinlogPosition,
    file: &str,
    event_start: u64,
    header_timestamp: u32,
    g: &GtidEvent,
) -> Result<(BinlogPosition, i64)> {
    let commit_us = match g.immediate_commit_timestamp() {
        0 => i64::from(header_timestamp) * 1_000_000,
        us => us as i64,
    };
    let after = match position {
        BinlogPosition::MySql(set) if g.gno() != 0 => {
            let mut set = set.clone();
            let tag = g.tag().map_or("", |t| t.as_str());
            set.add(&uuid_text(g.sid()), tag, g.gno());
            BinlogPosition::MySql(set)
        }
        _ if g.tx_length() == 0 => return Err(Error::source_fatal(
            "the binlog does not record transaction lengths (MySQL before 8.0.2): enable GTIDs \
                 (gtid_mode=ON, enforce_gtid_consistency=ON) so tidewater can resume exactly",
        )),
        _ => BinlogPosition::File {
            file: file.to_string(),
            pos: event_start + g.tx_length(),
        },
    };
    Ok((after, commit_us))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtid::MySqlGtidSet;

    const SID: [u8; 16] = [
        0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95,
        0x62,
    ];

    #[test]
    fn rotate_names_lose_an_unstripped_checksum() {
        assert_eq!(
            binlog_file_name("mariadb-bin.000001R<sT"),
            "mariadb-bin.000001"
        );
        assert_eq!(binlog_file_name("mysql-bin.000123"), "mysql-bin.000123");
    }

    #[test]
    fn mysql_gtid_events_extend_the_executed_set() {
        let set = MySqlGtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-41").unwrap();
        let g = GtidEvent::new(SID, 42).with_immediate_commit_timestamp(1_700_000_000_123_456);
        let (after, commit) =
            mysql_tx_start(&BinlogPosition::MySql(set), "b.000001", 4, 1, &g).unwrap();
        assert_eq!(
            after.to_string(),
            "mysql-gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"
        );
        assert_eq!(commit, 1_700_000_000_123_456);
    }

    /// A tagged GTID (MySQL 8.3+, `uuid:tag:n`) is its own transaction: recording it as
    /// `uuid:n` would make a resumed dump skip the untagged transaction `n` and send this one
    /// again.
    #[test]
    fn tagged_gtid_events_extend_their_tag_only() {
        let set = MySqlGtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-41").unwrap();
        let tag = mysql_common::packets::Tag::new("batch_7").unwrap();
        let g = GtidEvent::new_tagged(SID, tag, 42);
        let (after, _) = mysql_tx_start(&BinlogPosition::MySql(set), "b.000001", 4, 1, &g).unwrap();
        assert_eq!(
            after.to_string(),
            "mysql-gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-41:batch_7:42"
        );
    }

    #[test]
    fn without_gtids_the_transaction_length_gives_the_resume_offset() {
        let file = BinlogPosition::File {
            file: "b.000007".into(),
            pos: 4,
        };
        let g = GtidEvent::new([0; 16], 0).with_tx_length(1234);
        let (after, commit) = mysql_tx_start(&file, "b.000007", 1000, 7, &g).unwrap();
        assert_eq!(after.to_string(), "binlog:b.000007:2234");
        assert_eq!(
            commit, 7_000_000,
            "no commit timestamp: the header's seconds"
        );
        let old = GtidEvent::new([0; 16], 0);
        let err = mysql_tx_start(&file, "b.000007", 1000, 7, &old).unwrap_err();
        assert!(err.message().contains("gtid_mode=ON"), "{err}");
    }
}
