//! `MySqlSource`: snapshot (when there is no committed position) and binlog streaming for
//! one pipeline run.

use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use tidewater_core::uncarried::copy_again;
use tidewater_core::{
    CopyProgress, Error, Position, Result, Source, SourceContext, SourceEvent, TableId,
    TableSchema, TxInfo,
};
use tracing::{info, warn};

use crate::catalog::{refuse_left_out, resolve_tables, SourceTable};
use crate::config::MySqlSourceConfig;
use crate::conn::{
    cannot_catch_up, connect, flavor, is_purged, my_error, redact, variable, Flavor, RETENTION_FIX,
};
use crate::guard;
use crate::join::Joining;
use crate::position::BinlogPosition;
use crate::snapshot::{begin_snapshot, copy_tables, mysql_gtid_executed};
use crate::stream::chunks::Copying;
use crate::stream::Stream;

pub struct MySqlSource {
    config: MySqlSourceConfig,
    conn: Option<Conn>,
    flavor: Flavor,
    /// Chunked copies are taken without a lock: MariaDB, and MySQL with `gtid_mode = ON`
    /// (`stream::chunks`).
    chunks_without_lock: bool,
    tables: Vec<SourceTable>,
}

impl MySqlSource {
    /// Connects, checks that the binlog can be replicated and resolves the table globs.
    pub async fn connect(config: MySqlSourceConfig) -> Result<MySqlSource> {
        let mut conn = connect(config.url.expose()).await?;
        let flavor = flavor(&mut conn).await?;
        require_row_binlog(&mut conn).await?;
        let chunks_without_lock = match flavor {
            Flavor::MariaDb => true,
            Flavor::MySql => variable(&mut conn, "gtid_mode").await?.as_deref() == Some("ON"),
        };
        let tables = resolve_tables(&mut conn, &config.tables).await?;
        for t in tables.iter().filter(|t| !t.schema.has_key()) {
            warn!(table = %t.schema.id, "table has no primary key: the replica is a multiset and updates/deletes match whole rows; add a primary key");
        }
        info!(source = %redact(config.url.expose()), flavor = flavor.name(), tables = tables.len(), "source ready");
        Ok(MySqlSource {
            config,
            conn: Some(conn),
            flavor,
            chunks_without_lock,
            tables,
        })
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    async fn binlog(&self, from: &BinlogPosition) -> Result<BinlogStream> {
        let mut conn = connect(self.config.url.expose()).await?;
        let ctx = |e| my_error(e, "preparing the binlog connection");
        // A heartbeat every second while idle, so a dead connection is noticed.
        conn.query_drop("SET @master_heartbeat_period = 1000000000")
            .await
            .map_err(ctx)?;
        let server_id = self.config.server_id;
        let file_name: Vec<u8>;
        let request =
            match (self.flavor, from) {
                (Flavor::MariaDb, BinlogPosition::MariaDb(state)) => {
                    // Capability 4: send GTID events as such (not as fake BEGIN queries).
                    conn.query_drop("SET @mariadb_slave_capability = 4")
                        .await
                        .map_err(ctx)?;
                    conn.exec_drop("SET @slave_connect_state = ?", (state.to_string(),))
                        .await
                        .map_err(ctx)?;
                    conn.query_drop("SET @slave_gtid_strict_mode = 1")
                        .await
                        .map_err(ctx)?;
                    BinlogStreamRequest::new(server_id)
                }
                (Flavor::MySql, BinlogPosition::MySql(set)) => {
                    let mut sids = Vec::new();
                    for m in set.members() {
                        sids.push(m.parse::<mysql_common::packets::Sid<'static>>().map_err(
                            |e| Error::source_fatal(format!("GTID set member {m}: {e}")),
                        )?);
                    }
                    BinlogStreamRequest::new(server_id)
                        .with_gtid()
                        .with_gtid_set(sids)
                }
                (_, BinlogPosition::File { file, pos }) => {
                    if self.flavor == Flavor::MariaDb {
                        conn.query_drop("SET @mariadb_slave_capability = 4")
                            .await
                            .map_err(ctx)?;
                    }
                    file_name = file.clone().into_bytes();
                    BinlogStreamRequest::new(server_id)
                        .with_filename(&file_name)
                        .with_pos(*pos)
                }
                (flavor, pos) => {
                    return Err(Error::source_fatal(format!(
                        "the stored position {pos} does not belong to a {} source",
                        flavor.name()
                    )))
                }
            };
        conn.get_binlog_stream(request)
            .await
            .map_err(|e| my_error(e, &format!("starting the binlog stream from {from}")))
    }
}

/// Where the stream of a fresh replica copied in chunks starts: any position is right, as
/// long as every transaction before it is visible to each chunk's snapshot (they are not
/// delivered) and every one after it is delivered. MariaDB: the exact position of a consistent
/// snapshot, opened and ended at once. MySQL: `gtid_executed`, whose every transaction is
/// visible to a snapshot opened after it was read (`snapshot::snapshot_without_lock`; each
/// chunk's snapshot is opened after a later read that holds it).
async fn stream_start(conn: &mut Conn, flavor: Flavor) -> Result<BinlogPosition> {
    if flavor == Flavor::MySql {
        if let Some(executed) = mysql_gtid_executed(conn).await? {
            return Ok(BinlogPosition::MySql(executed));
        }
    }
    let position = begin_snapshot(conn, flavor, None).await?;
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| my_error(e, "ending the snapshot transaction"))?;
    Ok(position)
}

/// The binlog must exist and be row-based, or nothing can be replicated.
async fn require_row_binlog(conn: &mut Conn) -> Result<()> {
    let log_bin = variable(conn, "log_bin").await?.unwrap_or_default();
    if log_bin != "ON" {
        return Err(
            Error::source_fatal("the source's binary log is off (log_bin = OFF)").with_fix(
                "start the server with log_bin (and server_id, binlog_format=ROW, \
                 binlog_row_image=FULL)",
            ),
        );
    }
    let format = variable(conn, "binlog_format").await?.unwrap_or_default();
    if format != "ROW" {
        return Err(Error::source_fatal(format!(
            "the source logs binlog_format = {format}; change data capture needs ROW"
        ))
        .with_fix("SET GLOBAL binlog_format = 'ROW' and in my.cnf binlog_format = ROW"));
    }
    let image = variable(conn, "binlog_row_image")
        .await?
        .unwrap_or_default();
    if image != "FULL" {
        return Err(Error::source_fatal(format!(
            "the source logs binlog_row_image = {image}; tidewater needs FULL row images"
        ))
        .with_fix("SET GLOBAL binlog_row_image = 'FULL' and in my.cnf binlog_row_image = FULL"));
    }
    Ok(())
}

impl Source for MySqlSource {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.iter().map(|t| t.schema.clone()).collect()
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        // MariaDB and MySQL with GTIDs copy in chunks while streaming when the destination
        // can (`stream::chunks`), and so do tables that join or are copied again at a start
        // (`join`); MySQL without GTIDs keeps the single-transaction snapshot and copies.
        let chunked = ctx.chunked.clone().filter(|_| self.chunks_without_lock);
        let mut progress = chunked
            .as_ref()
            .map(|c| c.progress.clone())
            .unwrap_or_default();
        let from = match &ctx.resume {
            Some(pos) => {
                let from = BinlogPosition::parse(&pos.0).map_err(|e| {
                    Error::sink(format!(
                        "{e}: the replica was written by another kind of source"
                    ))
                    .with_fix(ctx.resnapshot_fix.clone())
                })?;
                let mut conn = match self.conn.take() {
                    Some(c) => c,
                    None => connect(self.config.url.expose()).await?,
                };
                guard::check_resume(&mut conn, self.flavor, &from, &ctx.resnapshot_fix).await?;
                refuse_left_out(&mut conn, &self.config.tables, &ctx.left_out).await?;
                self.conn = Some(conn);
                from
            }
            None if chunked.is_some() => {
                let mut conn = match self.conn.take() {
                    Some(c) => c,
                    None => connect(self.config.url.expose()).await?,
                };
                let position = stream_start(&mut conn, self.flavor).await?;
                info!(position = %position, tables = self.tables.len(), "copying tables in chunks while streaming");
                progress = self
                    .tables
                    .iter()
                    .map(|t| CopyProgress::new(t.schema.id.clone()))
                    .collect();
                let tx = TxInfo {
                    position: Position(position.to_string()),
                    commit_time_us: tidewater_core::stats::now_us(),
                    backlog: tidewater_core::Backlog::Unknown,
                };
                for e in [
                    SourceEvent::Begin(tx),
                    SourceEvent::Progress(progress.clone()),
                    SourceEvent::Commit,
                ] {
                    ctx.events.send(e).await.map_err(|_| Error::shutdown())?;
                }
                self.conn = Some(conn);
                position
            }
            None => {
                let mut conn = match self.conn.take() {
                    Some(c) => c,
                    None => connect(self.config.url.expose()).await?,
                };
                let started = Instant::now();
                let position = begin_snapshot(&mut conn, self.flavor, None).await?;
                info!(position = %position, "consistent snapshot opened; copying tables");
                let rows = copy_tables(
                    &mut conn,
                    &self.tables,
                    &Default::default(),
                    &position,
                    self.config.zero_dates,
                    &ctx.events,
                )
                .await?;
                tidewater_core::stats::log_snapshot_read(rows, started);
                position
            }
        };
        let recopy: Vec<TableId> = copy_again(
            &ctx.replica_schemas,
            self.tables.iter().map(|t| &*t.schema),
            true,
        )
        .into_iter()
        .map(|(id, _)| id)
        .collect();
        let copy = !ctx.backfill.is_empty() || !recopy.is_empty();
        let joining = match (copy, ctx.add_tables) {
            (false, _) => None,
            (true, true) if chunked.is_some() => {
                // In chunks, from a cut whose snapshot is not held (see `join`, "In chunks").
                let mut conn = match self.conn.take() {
                    Some(c) => c,
                    None => connect(self.config.url.expose()).await?,
                };
                let (join, flavor) = (&ctx.backfill, self.flavor);
                Some(Joining::open_in_chunks(&mut conn, &from, join, &recopy, flavor).await?)
            }
            (true, true) => {
                let mut conn = match self.conn.take() {
                    Some(c) => c,
                    None => connect(self.config.url.expose()).await?,
                };
                let at = begin_snapshot(&mut conn, self.flavor, None).await?;
                let tables = self
                    .tables
                    .iter()
                    .filter(|t| ctx.backfill.contains(&t.schema.id))
                    .cloned()
                    .collect();
                let mut joining = Joining::new(at, tables, conn);
                for t in self.tables.iter().filter(|t| recopy.contains(&t.schema.id)) {
                    joining.add_recopy(t.clone());
                }
                Some(joining)
            }
            (true, false) => {
                let names: Vec<String> = ctx
                    .backfill
                    .iter()
                    .chain(&recopy)
                    .map(|t| t.to_string())
                    .collect();
                return Err(Error::source_fatal(format!(
                    "tables {} must be copied (selected but not held by the destination, or \
                     changed at the source in a way the binlog does not carry), and the \
                     destination cannot take in tables while streaming: remove them from \
                     source.tables, or start from an empty destination to take a new snapshot",
                    names.join(", ")
                )));
            }
        };
        self.conn = None;
        // A purged binlog: the replica cannot catch up, and how to start it over depends on
        // the sink.
        let resnapshot = |e: Error| {
            if is_purged(&e) {
                e.with_fix(format!("{}; {RETENTION_FIX}", ctx.resnapshot_fix))
            } else if cannot_catch_up(&e) {
                e.with_fix(ctx.resnapshot_fix.clone())
            } else {
                e
            }
        };
        let binlog = self.binlog(&from).await.map_err(resnapshot)?;
        info!(from = %from, server_id = self.config.server_id, "streaming");
        let stream = Stream::new(
            self.config.url.expose(),
            &self.config.tables,
            &self.tables,
            from,
            (self.config.zero_dates, self.flavor),
            ctx.events,
        );
        let mut stream = if ctx.add_tables {
            stream.with_recopy(self.flavor)
        } else {
            stream
        };
        stream.unreplicated = ctx.unreplicated;
        progress.retain(|p| self.tables.iter().any(|t| t.schema.id == p.table));
        // Kept for the whole run when the source copies in chunks: tables copied again while
        // streaming go through it too (`stream::recopy`).
        if let Some(chunked) = &chunked {
            let keyless = |id: &TableId| {
                self.tables
                    .iter()
                    .any(|t| t.schema.id == *id && !t.schema.has_key())
            };
            stream.copy = Some(Copying::new(chunked.size, progress, keyless));
        }
        stream.recopy_requests = ctx.recopy;
        match joining {
            Some(j) => stream.with_joining(j),
            None => stream,
        }
        .run(binlog)
        .await
        .map_err(resnapshot)
    }
}
