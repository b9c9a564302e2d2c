//! `PgSource`: ties setup, snapshot and streaming together for one pipeline run.

use std::collections::HashMap;
use std::sync::Arc;

use pg_walstream::PgReplicationConnection;
use tidewater_core::{Error, Position, Result, Source, SourceContext, TableSchema};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::catalog::{resolve_tables, SourceTable};
use crate::conn::{
    connect, format_lsn, open_replication, parse_config, parse_lsn, redact, replication_error,
};
use crate::join::Joiner;
use crate::setup::{drop_slot, ensure_publications, quote_ident, slot_in_use, slot_info};
use crate::snapshot::copy_tables;
use crate::stream::Stream;

#[derive(Debug, Clone)]
pub struct PgSourceConfig {
    pub url: String,
    pub tables: Vec<String>,
    pub slot: String,
    pub publication: String,
}

pub struct PgSource {
    config: PgSourceConfig,
    client: Client,
    tables: Vec<SourceTable>,
    /// Opened by `connect`, so that a role without REPLICATION is refused before anything
    /// (DuckDB file, publication, slot) is created; taken by the first `run`.
    repl: Option<Box<PgReplicationConnection>>,
}

/// What to do when the slot cannot deliver the changes since the committed position.
const RESNAPSHOT_FIX: &str = "the replica cannot catch up from here. Fix: move the DuckDB \
     file (and its .wal, if any) aside, or set sink.path to a new file, and run `tidewater run` \
     again: it takes a new snapshot (and replaces the slot)";

impl PgSource {
    /// Connects, checks that logical decoding is possible and resolves the table globs.
    pub async fn connect(config: PgSourceConfig) -> Result<PgSource> {
        let client = connect(&config.url).await?;
        let wal_level: String = client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| crate::conn::pg_error(e, "reading wal_level"))?
            .get(0);
        if wal_level != "logical" {
            return Err(Error::source_fatal(format!(
                "the source has wal_level = {wal_level}; logical replication needs wal_level = logical. \
                 Fix: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL \
                 (Cloud SQL: set the flag cloudsql.logical_decoding=on)"
            )));
        }
        let tables = resolve_tables(&client, &config.tables).await?;
        let mut source = PgSource {
            config,
            client,
            tables,
            repl: None,
        };
        source.repl = Some(Box::new(open_replication(&source.config.url).await?));
        info!(source = %redact(&source.config.url), tables = source.tables.len(), "source ready");
        Ok(source)
    }

    pub fn source_tables(&self) -> &[SourceTable] {
        &self.tables
    }

    /// Creates the slot with an exported snapshot and copies the tables inside it. Returns the
    /// replication connection (idle since slot creation) and the slot's consistent point.
    async fn initial_snapshot(
        &mut self,
        mut repl: PgReplicationConnection,
        ctx: &SourceContext,
    ) -> Result<(PgReplicationConnection, u64)> {
        let slot = &self.config.slot;
        if let Some(info) = slot_info(&self.client, slot).await? {
            if let Some(pid) = info.active_pid {
                return Err(slot_in_use(slot, pid));
            }
            // A slot without a committed snapshot is left from an interrupted first run, unless
            // it is another tool's: only a pgoutput slot of this database is ours to replace.
            let database = parse_config(&self.config.url)?
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
            warn!(slot = %slot, "replication slot exists but no snapshot was committed: recreating it");
            drop_slot(&self.client, slot).await?;
        }
        let res = repl
            .exec_async(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
                quote_ident(slot)
            ))
            .await
            .map_err(|e| replication_error(e, &format!("creating replication slot {slot}")))?;
        let consistent_point = res.get_value(0, 1).and_then(|s| parse_lsn(&s));
        let snapshot_name = res.get_value(0, 2);
        let (Some(lsn), Some(snapshot_name)) = (consistent_point, snapshot_name) else {
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
            &ctx.events,
        )
        .await?;
        tidewater_core::stats::log_snapshot_read(rows, started);
        Ok((repl, lsn))
    }
}

impl Source for PgSource {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        self.tables.iter().map(|t| t.schema.clone()).collect()
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        let streaming = ctx.resume.is_some();
        let publications = ensure_publications(
            &self.client,
            &self.config.publication,
            &self.tables,
            streaming,
            &ctx.backfill,
        )
        .await?;
        let repl = match self.repl.take() {
            Some(repl) => *repl,
            None => open_replication(&self.config.url).await?,
        };
        let (mut repl, applied_lsn) = match &ctx.resume {
            None => self.initial_snapshot(repl, &ctx).await?,
            Some(pos) => {
                let lsn = parse_lsn(&pos.0).ok_or_else(|| {
                    Error::sink(format!("stored position {pos} is not a PostgreSQL LSN"))
                })?;
                let slot = &self.config.slot;
                match slot_info(&self.client, slot).await? {
                    None => {
                        return Err(Error::source_fatal(format!(
                            "replication slot {slot} does not exist (dropped?), but the replica was applied \
                             up to {pos}: the changes since then are gone and {RESNAPSHOT_FIX}"
                        )))
                    }
                    Some(info) if info.wal_status.as_deref() == Some("lost") => {
                        return Err(Error::source_fatal(format!(
                            "replication slot {slot} has lost the WAL it held (wal_status = lost: the source \
                             removed it past max_slot_wal_keep_size while the replica was stopped or behind), \
                             so the changes since {pos} are gone and {RESNAPSHOT_FIX}; raise \
                             max_slot_wal_keep_size so that this does not recur"
                        )))
                    }
                    Some(info) if info.active_pid.is_some() => return Err(slot_in_use(slot, info.active_pid.unwrap_or(0))),
                    Some(info) if info.plugin.as_deref() != Some("pgoutput") => {
                        return Err(Error::source_fatal(format!(
                            "replication slot {slot} uses plugin {:?}, not pgoutput; set source.slot to another name",
                            info.plugin
                        )))
                    }
                    Some(_) => {}
                }
                (repl, lsn)
            }
        };
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
            url: self.config.url.clone(),
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
            events: ctx.events,
            acks: ctx.acks,
            applied_lsn,
            unreplicated: ctx.unreplicated,
        }
        .run()
        .await
    }
}
