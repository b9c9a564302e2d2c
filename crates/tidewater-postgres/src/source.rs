//! `PgSource`: ties setup, snapshot and streaming together for one pipeline run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pg_walstream::PgReplicationConnection;
use tidewater_core::stats::now_us;
use tidewater_core::{
    CopyProgress, Error, Position, Result, Source, SourceContext, SourceEvent, TableId,
    TableSchema, TxInfo,
};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::catalog::{resolve_tables, SourceTable};
use crate::config::PgSourceConfig;
use crate::conn::{
    connect, format_lsn, open_replication, parse_config, parse_lsn, redact, replication_error,
};
use crate::guard::{position_gap, Owner, CANNOT_CATCH_UP};
use crate::join::Joiner;
use crate::placement::{misplaced, place};
use crate::setup::{
    drop_slot, ensure_publications, inactive_slot_info, partitioned, publish_via_root, quote_ident,
    slot_info,
};
use crate::snapshot::{copy_tables, send};
use crate::stream::chunks::Copying;
use crate::stream::Stream;
use tidewater_core::uncarried::copy_again;

pub struct PgSource {
    config: PgSourceConfig,
    client: Client,
    tables: Vec<SourceTable>,
    /// Opened by `connect`, so that a role without REPLICATION is refused before anything
    /// (DuckDB file, publication, slot) is created; taken by the first `run`.
    /// (In a mutex only so that `PgSource` is `Sync`: `run`'s checks borrow it across awaits.
    /// Reached through `get_mut`, never locked.)
    repl: std::sync::Mutex<Option<Box<PgReplicationConnection>>>,
}

/// How a run starts, decided before the publications are touched.
enum Start {
    /// No committed snapshot: take one, replacing the existing slot if `replace`.
    Snapshot { replace: bool },
    /// Resume after this committed LSN.
    Resume(u64),
}

impl PgSource {
    /// Connects, checks that logical decoding is possible and resolves the table globs.
    pub async fn connect(config: PgSourceConfig) -> Result<PgSource> {
        let client = connect(config.url.expose()).await?;
        let wal_level: String = client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| crate::conn::pg_error(e, "reading wal_level"))?
            .get(0);
        if wal_level != "logical" {
            return Err(Error::source_fatal(format!(
                "the source has wal_level = {wal_level}; logical replication needs wal_level = logical"
            ))
            .with_fix(
                "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL \
                 (Cloud SQL: set the flag cloudsql.logical_decoding=on)",
            ));
        }
        let tables = resolve_tables(&client, &config.tables).await?;
        let mut source = PgSource {
            config,
            client,
            tables,
            repl: std::sync::Mutex::new(None),
        };
        let repl = open_replication(source.config.url.expose()).await?;
        source.repl = std::sync::Mutex::new(Some(Box::new(repl)));
        info!(source = %redact(source.config.url.expose()), tables = source.tables.len(), "source ready");
        Ok(source)
    }

    pub fn source_tables(&self) -> &[SourceTable] {
        &self.tables
    }

    /// Before resuming from `pos`: the slot must exist, hold its WAL, be this replica's, and
    /// not be past what the replica stored (the position guard, `crate::guard`). Returns the
    /// stored LSN.
    async fn resume_from(
        &self,
        owner: &Owner<'_>,
        pos: &Position,
        ctx: &SourceContext,
    ) -> Result<u64> {
        let lsn = parse_lsn(&pos.0)
            .ok_or_else(|| Error::sink(format!("stored position {pos} is not a PostgreSQL LSN")))?;
        let slot = &self.config.slot;
        let mut found = slot_info(&self.client, slot).await?;
        if found.as_ref().is_some_and(|i| i.active_pid.is_some()) {
            // Another replica's slot is refused at once, not after waiting for its walsender.
            owner.still_mine(pos).await?;
            found = inactive_slot_info(&self.client, slot).await?;
        }
        let info = match found {
            None => {
                return Err(Error::source_fatal(format!(
                    "replication slot {slot} does not exist (dropped?), but the replica was applied \
                     up to {pos}: the changes since then are gone and {CANNOT_CATCH_UP}"
                ))
                .with_fix(format!("{} (and replaces the slot)", ctx.resnapshot_fix)))
            }
            Some(info) if info.wal_status.as_deref() == Some("lost") => {
                owner.release().await;
                return Err(Error::source_fatal(format!(
                    "replication slot {slot} has lost the WAL it held (wal_status = lost: the source \
                     removed it past max_slot_wal_keep_size while the replica was stopped or behind), \
                     so the changes since {pos} are gone and {CANNOT_CATCH_UP}"
                ))
                .with_fix(format!(
                    "{} (and replaces the slot); raise max_slot_wal_keep_size so that this \
                     does not recur",
                    ctx.resnapshot_fix
                )));
            }
            Some(info) if info.plugin.as_deref() != Some("pgoutput") => {
                return Err(Error::source_fatal(format!(
                    "replication slot {slot} uses plugin {:?}, not pgoutput; set source.slot to another name",
                    info.plugin
                )))
            }
            Some(info) => info,
        };
        let claimed = owner.still_mine(pos).await?;
        match ctx.acknowledged.as_ref().map(|a| parse_lsn(&a.0)) {
            Some(Some(acked)) => {
                if let Some(refusal) =
                    position_gap(slot, &info, pos, acked.max(lsn), &ctx.resnapshot_fix)
                {
                    owner.release().await;
                    return Err(refusal);
                }
            }
            Some(None) => {
                return Err(Error::sink(format!(
                    "stored acknowledged position {:?} is not a PostgreSQL LSN",
                    ctx.acknowledged
                )))
            }
            None => {
                info!(slot = %slot, "the replica has no acknowledged position stored yet (an older file, or a sink that keeps none): the slot's position is not compared with it")
            }
        }
        if !claimed {
            // A slot of an older tidewater, or released: this replica takes it (again).
            owner.claim().await;
        }
        Ok(lsn)
    }

    /// Before a snapshot: whether an existing slot is this replica's to replace (one of its
    /// own, left by an interrupted first run, or nobody's), checked before the publications
    /// are touched. An error when it is in use, another tool's, or another replica's.
    async fn slot_to_replace(&self, owner: &Owner<'_>) -> Result<bool> {
        let slot = &self.config.slot;
        let mut found = slot_info(&self.client, slot).await?;
        if found.as_ref().is_some_and(|i| i.active_pid.is_some()) {
            // Another replica's slot is refused at once, not after waiting for its walsender.
            owner.may_replace().await?;
            found = inactive_slot_info(&self.client, slot).await?;
        }
        let Some(info) = found else {
            return Ok(false);
        };
        // Only a pgoutput slot of this database can be a tidewater replica's.
        let database = parse_config(self.config.url.expose())?
            .get_dbname()
            .map(str::to_string);
        if info.plugin.as_deref() != Some("pgoutput") || info.database != database {
            return Err(Error::source_fatal(format!(
                "replication slot {slot} exists (plugin {}, database {}) but this replica never \
                 used it: it belongs to something else. Set source.slot to another name, or drop \
                 the slot if it is an abandoned one: SELECT pg_drop_replication_slot('{slot}')",
                info.plugin.as_deref().unwrap_or("?"),
                info.database.as_deref().unwrap_or("?"),
            )));
        }
        owner.may_replace().await?;
        Ok(true)
    }

    /// Claims the slot for this replica and creates it (dropping it first when `replace`: it
    /// exists but no snapshot was committed), with an exported snapshot when `export`.
    /// Returns the slot's consistent point and the exported snapshot's name.
    async fn create_slot(
        &self,
        repl: &mut PgReplicationConnection,
        owner: &Owner<'_>,
        replace: bool,
        export: bool,
    ) -> Result<(u64, Option<String>)> {
        let slot = &self.config.slot;
        // The claim comes before the slot: a crash between them leaves a claimed slot-to-be,
        // never an unclaimed slot of a replica that may resume from it.
        owner.claim().await;
        if replace {
            warn!(slot = %slot, "replication slot exists but no snapshot was committed: recreating it");
            drop_slot(&self.client, slot).await?;
        }
        let snapshot = if export { "EXPORT" } else { "NOEXPORT" };
        let res = repl
            .exec_async(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {snapshot}_SNAPSHOT",
                quote_ident(slot)
            ))
            .await
            .map_err(|e| replication_error(e, &format!("creating replication slot {slot}")))?;
        let Some(lsn) = res.get_value(0, 1).and_then(|s| parse_lsn(&s)) else {
            return Err(Error::source_fatal(
                "CREATE_REPLICATION_SLOT returned no consistent point",
            ));
        };
        Ok((lsn, res.get_value(0, 2)))
    }

    /// The chunked initial snapshot's start (`tidewater_core::copy`): creates the slot
    /// without a snapshot, and commits "copying at its consistent point" with every table's
    /// (empty) progress. The tables are copied in chunks while streaming from there.
    async fn start_chunked(
        &self,
        mut repl: PgReplicationConnection,
        ctx: &SourceContext,
        owner: &Owner<'_>,
        replace: bool,
    ) -> Result<(PgReplicationConnection, u64, Vec<CopyProgress>)> {
        let slot = &self.config.slot;
        let (lsn, _) = self.create_slot(&mut repl, owner, replace, false).await?;
        info!(slot = %slot, lsn = %format_lsn(lsn), tables = self.tables.len(), "replication slot created; copying tables in chunks while streaming");
        let progress: Vec<CopyProgress> = self
            .tables
            .iter()
            .map(|t| CopyProgress::new(t.schema.id.clone()))
            .collect();
        let events = &ctx.events;
        let tx = TxInfo {
            position: Position(format_lsn(lsn)),
            commit_time_us: now_us(),
            backlog: tidewater_core::Backlog::Unknown,
        };
        send(events, SourceEvent::Begin(tx)).await?;
        send(events, SourceEvent::Progress(progress.clone())).await?;
        send(events, SourceEvent::Commit).await?;
        Ok((repl, lsn, progress))
    }

    /// Creates the slot with an exported snapshot and copies the tables inside it. Returns the
    /// replication connection (idle since slot creation) and the slot's consistent point.
    async fn initial_snapshot(
        &self,
        mut repl: PgReplicationConnection,
        ctx: &SourceContext,
        owner: &Owner<'_>,
        replace: bool,
    ) -> Result<(PgReplicationConnection, u64)> {
        let slot = &self.config.slot;
        let (lsn, snapshot_name) = self.create_slot(&mut repl, owner, replace, true).await?;
        let Some(snapshot_name) = snapshot_name else {
            return Err(Error::source_fatal(
                "CREATE_REPLICATION_SLOT returned no snapshot",
            ));
        };
        info!(slot = %slot, lsn = %format_lsn(lsn), "replication slot created; copying tables");
        let started = std::time::Instant::now();
        let rows = copy_tables(
            &self.client,
            &snapshot_name,
            Position(format_lsn(lsn)),
            &self.tables,
            &Default::default(),
            &ctx.events,
        )
        .await?;
        tidewater_core::stats::log_snapshot_read(rows, started);
        Ok((repl, lsn))
    }
}

/// Why a partitioned table is copied again when its publication starts to publish it under
/// its own name (`setup::publish_via_root`).
const UNPUBLISHED: &str = "a partitioned table whose changes were published under its \
     partitions, which are not replicated: none of them was applied";

/// Tables must be copied again (see `SourceContext::recopy`), but the destination cannot.
pub(crate) fn recopy_refused(changed: &[(TableId, String)]) -> Error {
    let names: Vec<String> = changed
        .iter()
        .map(|(t, why)| format!("{t} ({why})"))
        .collect();
    Error::source_fatal(format!(
        "{} changed at the source since the replica was written, in a way the stream does not \
         carry: they must be copied again, and this destination cannot copy tables while \
         streaming. Fix: re-snapshot into a new destination (a new sink.path or dataset), or \
         remove them from source.tables",
        names.join(", ")
    ))
}

impl Source for PgSource {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.iter().map(|t| t.schema.clone()).collect()
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        let opened = self
            .repl
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let repl = match opened {
            Some(repl) => *repl,
            None => open_replication(self.config.url.expose()).await?,
        };
        let owner = Owner {
            client: &self.client,
            slot: &self.config.slot,
            publication: &self.config.publication,
            replica: ctx.replica_id.as_deref(),
        };
        // The slot is checked before the publications are touched: a second replica must not
        // change the first one's publication either.
        let start = match &ctx.resume {
            None => Start::Snapshot {
                replace: self.slot_to_replace(&owner).await?,
            },
            Some(pos) => Start::Resume(self.resume_from(&owner, pos, &ctx).await?),
        };
        let streaming = ctx.resume.is_some();
        let mut recopy_now = Vec::new();
        if streaming && ctx.add_tables {
            // Tables whose replica identity or key changed (or that left their publication)
            // while tidewater was stopped: put back, and copied again if changes were missed.
            let held: HashSet<TableId> = self
                .tables
                .iter()
                .map(|t| t.schema.id.clone())
                .filter(|id| !ctx.backfill.contains(id))
                .collect();
            for m in misplaced(&self.client, &self.config.publication, &held).await? {
                let Some(t) = self.tables.iter().find(|t| t.schema.id == m.id) else {
                    continue;
                };
                place(&self.client, &self.config.publication, t).await?;
                if m.missed {
                    recopy_now.push((m.oid, m.id));
                }
            }
        }
        let mut changed = copy_again(
            &ctx.replica_schemas,
            self.tables.iter().map(|t| &*t.schema),
            false,
        );
        if publish_via_root(&self.client, &self.config.publication).await? && streaming {
            let oids: Vec<u32> = self.tables.iter().map(|t| t.oid).collect();
            for oid in partitioned(&self.client, &oids).await? {
                let t = self
                    .tables
                    .iter()
                    .find(|t| t.oid == oid)
                    .expect("among them");
                if !ctx.backfill.contains(&t.schema.id) {
                    changed.push((t.schema.id.clone(), UNPUBLISHED.into()));
                }
            }
        }
        if !changed.is_empty() && !ctx.add_tables {
            return Err(recopy_refused(&changed));
        }
        for (id, _) in changed {
            if let Some(t) = self.tables.iter().find(|t| t.schema.id == id) {
                if !recopy_now.iter().any(|(_, r)| *r == id) {
                    recopy_now.push((t.oid, id));
                }
            }
        }
        let publications = ensure_publications(
            &self.client,
            &self.config.publication,
            &self.tables,
            streaming,
            &ctx.backfill,
            &ctx.left_out,
        )
        .await?;
        let chunked = ctx.chunked.clone();
        let (mut repl, applied_lsn, progress) = match (start, chunked) {
            (Start::Snapshot { replace }, Some(_)) => {
                self.start_chunked(repl, &ctx, &owner, replace).await?
            }
            (Start::Snapshot { replace }, None) => {
                let (repl, lsn) = self.initial_snapshot(repl, &ctx, &owner, replace).await?;
                (repl, lsn, Vec::new())
            }
            (Start::Resume(lsn), Some(c)) => (repl, lsn, c.progress),
            (Start::Resume(lsn), None) => (repl, lsn, Vec::new()),
        };
        // A copy under way continues (for the tables still selected).
        let progress: Vec<CopyProgress> = progress
            .into_iter()
            .filter(|p| self.tables.iter().any(|t| t.schema.id == p.table))
            .collect();
        // Kept for the whole run when the destination copies in chunks: tables copied again
        // while streaming go through it too (`stream::recopy`).
        let copy = ctx.chunked.as_ref().map(|c| {
            let keyless = |id: &TableId| {
                self.tables
                    .iter()
                    .any(|t| t.schema.id == *id && !t.schema.has_key())
            };
            Copying::new(
                c.size,
                progress,
                keyless,
                self.config.url.expose().to_string(),
            )
        });
        let options = [
            ("proto_version", "1".to_string()),
            ("publication_names", publications.join(",")),
        ];
        let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
        repl.start_replication_async(&self.config.slot, applied_lsn, &options)
            .await
            .map_err(|e| replication_error(e, "starting replication"))?;
        info!(slot = %self.config.slot, from = %format_lsn(applied_lsn), "streaming");
        let (join_now, streamed): (Vec<SourceTable>, Vec<SourceTable>) = self
            .tables
            .iter()
            .cloned()
            .partition(|t| ctx.backfill.contains(&t.schema.id));
        let tables: HashMap<_, _> = streamed
            .iter()
            .map(|t| (t.schema.id.clone(), t.schema.clone()))
            .collect();
        let joiner = ctx.add_tables.then(|| Joiner {
            url: self.config.url.expose().to_string(),
            slot: self.config.slot.clone(),
            publication: self.config.publication.clone(),
        });
        Stream {
            conn: &mut repl,
            client: &self.client,
            tables,
            patterns: &self.config.tables,
            joiner,
            join_now,
            recopy_now,
            layouts: ctx
                .layouts
                .as_ref()
                .map(crate::stream::partitions::parse_layouts),
            events: ctx.events,
            acks: ctx.acks,
            applied_lsn,
            unreplicated: ctx.unreplicated,
            copy,
            acknowledged_lsn: ctx
                .acknowledged
                .as_ref()
                .and_then(|a| parse_lsn(&a.0))
                .unwrap_or(0)
                .max(applied_lsn),
            recopy_requests: ctx.recopy,
            wal_end: crate::backlog::start(self.config.url.expose().to_string()),
        }
        .run()
        .await
    }
}
