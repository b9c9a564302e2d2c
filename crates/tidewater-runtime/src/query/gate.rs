//! The one way a running `tidewater run` executes a client's statement, whichever endpoint
//! received it (`POST /query`, the PostgreSQL wire protocol): the read-only check, a place
//! among the queries allowed to run at once, a read connection of its own beside the apply
//! loop, and the timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::exec::{self, Cells, Params, QueryError, QueryErrorKind, TextResult};
use crate::monitor::Monitor;

/// Queries running at once, all endpoints together; more wait (2 cores: apply must keep its
/// share).
const CONCURRENT_QUERIES: usize = 2;

pub struct QueryGate {
    monitor: Arc<Monitor>,
    permits: Semaphore,
}

impl QueryGate {
    pub fn new(monitor: Arc<Monitor>) -> Arc<QueryGate> {
        Arc::new(QueryGate {
            monitor,
            permits: Semaphore::new(CONCURRENT_QUERIES),
        })
    }

    /// Runs one read-only statement (see `exec`) with at most `limit` rows: waits at most
    /// `timeout` for a place, then interrupts the statement after `timeout`.
    pub async fn run(
        &self,
        sql: String,
        params: Params,
        limit: usize,
        timeout: Duration,
        cells: Cells,
    ) -> Result<TextResult, QueryError> {
        exec::check_read_only(&sql)?;
        let _permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                QueryError::new(
                    QueryErrorKind::Unavailable,
                    "too many queries are running; try again",
                )
            })?
            .expect("semaphore open");
        let unavailable = |m: String| QueryError::new(QueryErrorKind::Unavailable, m);
        let replica = self.monitor.replica().ok_or_else(|| {
            unavailable("the replica is not open yet; try again in a moment".into())
        })?;
        if !replica.capabilities().live_query {
            return Err(unavailable("this replica answers no queries".into()));
        }
        let session = replica.session().map_err(|e| unavailable(e.to_string()))?;
        exec::with_timeout(session, timeout, move |s| {
            s.query(&sql, &params, limit, cells)
        })
        .await
    }
}
