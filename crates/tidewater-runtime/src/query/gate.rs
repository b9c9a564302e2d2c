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

    /// The replica's own statement answering a catalog question asked in PostgreSQL's terms
    /// (`Replica::catalog_statement`), if the replica is open and has one.
    pub fn catalog_statement(&self, sql: &str) -> Option<String> {
        self.monitor.replica()?.catalog_statement(sql)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::replica::{
        ColumnKind, Comparison, Interrupt, ReadSession, Replica, ReplicaCapabilities, ResultColumn,
        StatusReport,
    };
    use tidewater_core::Result;

    /// A replica that is not DuckDB: it answers every statement with the statement's text.
    struct Echo {
        live_query: bool,
    }

    struct EchoSession;

    impl Replica for Echo {
        fn capabilities(&self) -> ReplicaCapabilities {
            ReplicaCapabilities {
                live_query: self.live_query,
                ..ReplicaCapabilities::default()
            }
        }
        fn status(&self) -> Result<StatusReport> {
            Ok(StatusReport::default())
        }
        fn session(&self) -> Result<Box<dyn ReadSession>> {
            Ok(Box::new(EchoSession))
        }
        fn comparison(&self) -> Result<Box<dyn Comparison>> {
            Err(tidewater_core::Error::sink("no verify here"))
        }
    }

    impl ReadSession for EchoSession {
        fn query(
            &mut self,
            sql: &str,
            _: &Params,
            _: usize,
            _: Cells,
        ) -> Result<TextResult, QueryError> {
            Ok(TextResult {
                columns: vec![ResultColumn {
                    name: "sql".into(),
                    type_name: "STRING".into(),
                    kind: ColumnKind::Text,
                }],
                rows: vec![vec![Some(sql.to_string())]],
                truncated: false,
                parameters: 0,
                elapsed_ms: 0,
            })
        }
        fn interrupt(&self) -> Interrupt {
            Arc::new(|| {})
        }
    }

    async fn ask(gate: &QueryGate, sql: &str) -> Result<TextResult, QueryError> {
        let timeout = Duration::from_secs(5);
        gate.run(sql.into(), Params::AllNull, 10, timeout, Cells::Text)
            .await
    }

    #[tokio::test]
    async fn statements_reach_any_replica_that_offers_live_query() {
        let monitor = Arc::new(Monitor::new(Default::default(), "postgres", "".into()));
        let gate = QueryGate::new(monitor.clone());
        let e = ask(&gate, "SELECT 1").await.unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::Unavailable, "not open yet: {e}");

        monitor
            .set_replica(Arc::new(Echo { live_query: true }))
            .unwrap();
        let answer = ask(&gate, "SELECT 1").await.unwrap();
        assert_eq!(answer.rows, vec![vec![Some("SELECT 1".to_string())]]);
        // The read-only check is the gate's, whatever the replica.
        let e = ask(&gate, "DELETE FROM t").await.unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::Refused, "{e}");
    }

    #[tokio::test]
    async fn a_replica_without_live_query_is_not_asked() {
        let monitor = Arc::new(Monitor::new(Default::default(), "postgres", "".into()));
        let gate = QueryGate::new(monitor.clone());
        monitor
            .set_replica(Arc::new(Echo { live_query: false }))
            .unwrap();
        let e = ask(&gate, "SELECT 1").await.unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("answers no queries"), "{e}");
    }
}
