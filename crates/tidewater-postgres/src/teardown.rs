//! `tidewater teardown`: removes what tidewater created at a PostgreSQL source, so that an
//! abandoned pipeline does not keep WAL forever. That is the replication slot (which holds
//! WAL from its restart_lsn on) and the publications tidewater creates (`source.publication`
//! and its `_insert_only` companion). Tables, data and the user are left alone.

use tidewater_core::{Error, Result};
use tokio_postgres::Client;

use crate::check::human_bytes;
use crate::conn::{connect, pg_error};
use crate::setup::{drop_slot, insert_only_publication, quote_ident, slot_info};
use crate::PgSourceConfig;

/// What exists at the source and would be (or was) dropped: one line per object.
pub struct Teardown {
    pub objects: Vec<String>,
}

/// Finds the slot and publications of `cfg`, and drops them when `drop` is set. Fails, before
/// dropping anything, when the slot is held by a running reader (a `tidewater run`
/// elsewhere, or a walsender left behind).
pub async fn teardown(cfg: &PgSourceConfig, drop: bool) -> Result<Teardown> {
    let client = connect(cfg.url.expose()).await?;
    let slot = &cfg.slot;
    let mut objects = Vec::new();
    let slot_exists = match slot_info(&client, slot).await? {
        Some(info) => {
            if let Some(pid) = info.active_pid {
                return Err(Error::source_fatal(format!(
                    "replication slot {slot} is in use by walsender pid {pid}: stop the \
                     `tidewater run` reading it first (if nothing should be reading it: SELECT \
                     pg_terminate_backend({pid});), then run teardown again"
                )));
            }
            objects.push(format!(
                "replication slot {slot} (retaining {} of WAL)",
                human_bytes(retained_bytes(&client, slot).await?)
            ));
            true
        }
        None => false,
    };
    let mut publications = Vec::new();
    for name in [
        cfg.publication.clone(),
        insert_only_publication(&cfg.publication),
    ] {
        let exists = client
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
            .await
            .map_err(|e| pg_error(e, "looking up publications"))?
            .is_some();
        if exists {
            objects.push(format!("publication {name}"));
            publications.push(name);
        }
    }
    if drop {
        // The slot first: it is what holds WAL back, and dropping it fails cleanly if a
        // reader attached since the look-up.
        if slot_exists {
            drop_slot(&client, slot).await?;
        }
        for name in &publications {
            let sql = format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name));
            client.batch_execute(&sql).await.map_err(|e| {
                pg_error(
                    e,
                    &format!("dropping publication {name} (its owner may drop it)"),
                )
            })?;
        }
    }
    Ok(Teardown { objects })
}

/// The WAL the slot holds back, in bytes.
async fn retained_bytes(client: &Client, slot: &str) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END, restart_lsn)::int8 FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| pg_error(e, "reading the slot"))?;
    Ok(row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64)
}
