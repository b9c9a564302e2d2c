//! Continuous verification (`[verify] interval`): inside `tidewater run`, the comparison of
//! `tidewater verify` runs again and again in the background, `interval` after the previous
//! pass ended, on a connection of its own to the replica, with the source read at most
//! `max_rows_per_second` (so that it does not starve the apply loop). Never two at once: a
//! pass holds the same lock as `POST /verify`. Results go to `passes` (metrics, health,
//! status).
//!
//! Repair (`repair = true`): the tables a pass finds different are handed to the running
//! source as re-copy requests (`tidewater_core::RecopyRequests`); it copies each again at a
//! position of its stream, as it does after a schema change the stream does not carry (in
//! chunks where source and sink copy in chunks, else in one destination transaction). The
//! next pass waits (up to one interval) until the source has taken the requests.
//!
//! No pass runs while a chunked copy is under way (the initial snapshot, a join, a re-copy):
//! the phase is `snapshot` until every copy is consistent (`Monitor::phase`), and a table
//! being copied lacks its later chunks' rows, which a pass would report missing and, with
//! repair, copy over again. A pass's source snapshot is taken after the copies', and it waits
//! for the replica to pass it, so it sees the copied tables.

use std::sync::Arc;
use std::time::Duration;

use tidewater_core::TableId;
use tokio::sync::watch;
use tracing::{info, warn};

use super::engine::{self, Replica, VerifyRequest};
use super::report::VerifyReport;
use crate::config::ContinuousVerify;
use crate::monitor::{Monitor, Phase};
use crate::verify_passes::{LastPass, MAX_EXAMPLES};
use tidewater_core::redact::redact;

/// How often the scheduler looks whether the pipeline streams, or repair requests were taken.
const POLL: Duration = Duration::from_millis(200);

/// Starts the background passes; they end with `shutdown`.
pub fn spawn(
    monitor: Arc<Monitor>,
    settings: ContinuousVerify,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    monitor.verify_passes.enable(&settings);
    info!(
        interval_s = settings.interval.as_secs(),
        max_rows_per_second = settings.max_rows_per_second,
        repair = settings.repair,
        "continuous verification on"
    );
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        tokio::select! {
            _ = passes(&monitor, settings) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    })
}

async fn passes(monitor: &Arc<Monitor>, settings: ContinuousVerify) {
    loop {
        tokio::time::sleep(settings.interval).await;
        // A pass compares a streaming replica; before that (snapshot, retrying) it waits.
        while monitor.phase().0 != Phase::Streaming {
            tokio::time::sleep(POLL).await;
        }
        wait_for_repairs(monitor, settings.interval).await;
        let _one_at_a_time = super::serve::RUNNING.lock().await;
        monitor.verify_passes.started();
        match pass(monitor, settings.max_rows_per_second).await {
            Ok(report) => {
                let repairing = if settings.repair {
                    repair(monitor, &report)
                } else {
                    Vec::new()
                };
                let differences = report.differences();
                if differences > 0 {
                    warn!(
                        differences,
                        tables = report.tables_differing(),
                        repair = settings.repair,
                        "continuous verification: the replica differs from the source (/health is degraded; see tidewater status)"
                    );
                }
                monitor
                    .verify_passes
                    .completed(LastPass::new(&report, repairing));
            }
            Err(e) => {
                warn!(error = %e, "continuous verification: the pass failed; trying again after the interval");
                monitor.verify_passes.failed(redact(&e.to_string()));
            }
        }
    }
}

/// One comparison of every replicated table, live.
async fn pass(monitor: &Monitor, max_rows_per_second: u64) -> tidewater_core::Result<VerifyReport> {
    let config = monitor
        .config()
        .ok_or_else(|| tidewater_core::Error::sink("continuous verification has no config"))?;
    let comparer = monitor
        .replica()
        .ok_or_else(|| tidewater_core::Error::sink("the replica is not open"))?
        .comparison()?;
    let request = VerifyRequest {
        tables: Vec::new(),
        max_examples: MAX_EXAMPLES,
    };
    engine::verify(
        &config,
        comparer,
        Replica::Live(monitor.stats.clone()),
        &request,
        Some(max_rows_per_second),
    )
    .await
}

/// Asks the source to copy the differing tables again; returns their names.
fn repair(monitor: &Monitor, report: &VerifyReport) -> Vec<String> {
    let tables: Vec<String> = report
        .tables
        .iter()
        .filter(|t| t.differences() > 0)
        .map(|t| t.table.clone())
        .collect();
    // The report names tables `schema.table`; a schema with a dot in its name would be split
    // wrongly, and the source then says it has no such table to copy (nothing is copied).
    let ids: Vec<TableId> = tables
        .iter()
        .filter_map(|t| {
            let (schema, name) = t.split_once('.')?;
            Some(TableId::new(schema, name))
        })
        .collect();
    if !ids.is_empty() {
        info!(tables = %tables.join(", "), "continuous verification: repair copies the differing tables again");
        monitor.stats.recopy.request(ids);
    }
    tables
}

/// Waits, at most `limit`, until the source has taken the re-copy requests (it takes them
/// between transactions, within seconds while it streams).
async fn wait_for_repairs(monitor: &Monitor, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !monitor.stats.recopy.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}
