//! `tidewater query`: one read-only SQL statement against the replica. While `run` runs it
//! holds the replica file, so the statement is sent to that process (`POST /query` on the
//! address in its status file) and runs there on its own connection beside the apply loop;
//! otherwise the file is opened read-only here. Both give the same result and output. A
//! remote replica (BigQuery) is queried from here, through its own read-only session.

pub mod exec;
pub mod gate;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use tidewater_core::replica::{is_held, ReadSession};
use tidewater_core::{Error, Result};

use crate::client;
use crate::config::Config;
use crate::registry::{open_local_replica, open_remote_replica, RemoteReplica};
use crate::status_file::read_published;
use exec::{QueryError, QueryErrorKind, QueryResult, MAX_LIMIT};

/// How long to wait for a `run` that holds the file but has not published its address yet.
const WAIT_FOR_PUBLISHED: Duration = Duration::from_secs(5);

pub struct QueryArgs {
    pub config: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub sql: String,
    pub limit: usize,
    pub timeout: Duration,
}

/// Runs the statement on the replica of `--config` or `--db`, wherever it can run.
pub async fn query(args: &QueryArgs) -> Result<QueryResult> {
    let db = match (&args.config, &args.db) {
        (Some(c), _) => {
            let config = Config::load(c)?;
            if let Some(remote) = open_remote_replica(&config.sink).await? {
                return remote_query(remote, args).await;
            }
            config.sink.duckdb_path("query")?.to_path_buf()
        }
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Err(Error::config(
                "tell query which replica: --config tidewater.toml or --db replica.duckdb",
            ))
        }
    };
    if args.limit > MAX_LIMIT {
        return Err(Error::config(format!("--limit is at most {MAX_LIMIT}")));
    }
    exec::check_read_only(&args.sql).map_err(query_error)?;
    run_somewhere(&db, args).await.map_err(query_error)
}

/// Runs the statement in a remote warehouse (its session checks it reads only).
async fn remote_query(remote: RemoteReplica, args: &QueryArgs) -> Result<QueryResult> {
    if args.limit > MAX_LIMIT {
        return Err(Error::config(format!("--limit is at most {MAX_LIMIT}")));
    }
    let replica = remote.replica;
    let session = tokio::task::spawn_blocking(move || replica.session())
        .await
        .map_err(|e| Error::sink(format!("opening a query session: {e}")))??;
    exec::run_with_timeout(session, args.sql.clone(), args.limit, args.timeout)
        .await
        .map_err(query_error)
}

/// Exit 2 for a statement that cannot run (refused, invalid, too slow), 3 for no replica.
fn query_error(e: QueryError) -> Error {
    match e.kind {
        QueryErrorKind::Refused => Error::config(format!("query refused: {}", e.message)),
        QueryErrorKind::Sql | QueryErrorKind::Timeout => Error::config(e.message),
        QueryErrorKind::Unavailable => Error::sink(e.message),
    }
}

async fn run_somewhere(db: &Path, args: &QueryArgs) -> Result<QueryResult, QueryError> {
    if let Some(addr) = published_http(db) {
        match remote(&addr, args).await {
            Err(Remote::Unreachable(_)) => {} // the process just ended: the file is free
            other => return other.map_err(Remote::into_query_error),
        }
    }
    match open_read_only(db) {
        Ok(session) => {
            exec::run_with_timeout(session, args.sql.clone(), args.limit, args.timeout).await
        }
        Err(Unopened {
            error: e,
            held: true,
        }) => {
            // Held by a `run` that is starting: its status file appears within seconds.
            let deadline = Instant::now() + WAIT_FOR_PUBLISHED;
            while Instant::now() < deadline {
                if let Some(addr) = published_http(db) {
                    return remote(&addr, args).await.map_err(Remote::into_query_error);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(QueryError::new(
                QueryErrorKind::Unavailable,
                format!(
                    "{} is held by another process that publishes no query address \
                     (an older tidewater, or not tidewater): {}",
                    db.display(),
                    e.message
                ),
            ))
        }
        Err(Unopened { error, .. }) => Err(error),
    }
}

/// Why the replica could not be opened here, and whether another process holds it.
struct Unopened {
    error: QueryError,
    held: bool,
}

fn published_http(db: &Path) -> Option<String> {
    read_published(db)?.live?.http
}

enum Remote {
    Unreachable(String),
    Answer(QueryError),
}

impl Remote {
    fn into_query_error(self) -> QueryError {
        match self {
            Remote::Unreachable(m) => QueryError::new(QueryErrorKind::Unavailable, m),
            Remote::Answer(e) => e,
        }
    }
}

async fn remote(addr: &str, args: &QueryArgs) -> Result<QueryResult, Remote> {
    let body = serde_json::json!({
        "sql": args.sql,
        "limit": args.limit,
        "timeout_ms": args.timeout.as_millis() as u64,
    });
    let (status, bytes) = client::call(
        addr,
        Method::POST,
        "/query",
        Some(body.to_string().into_bytes()),
        args.timeout + Duration::from_secs(10),
    )
    .await
    .map_err(Remote::Unreachable)?;
    let bad = |e: serde_json::Error| {
        Remote::Answer(QueryError::new(
            QueryErrorKind::Unavailable,
            format!("unreadable answer from {addr} (HTTP {status}): {e}"),
        ))
    };
    if status == 200 {
        serde_json::from_slice(&bytes).map_err(bad)
    } else {
        Err(Remote::Answer(serde_json::from_slice(&bytes).map_err(bad)?))
    }
}

/// Opens the replica read-only, without access to other files (as the server's reader).
fn open_read_only(db: &Path) -> Result<Box<dyn ReadSession>, Unopened> {
    open_local_replica(db)
        .and_then(|replica| replica.session())
        .map_err(|e| Unopened {
            held: is_held(&e),
            error: QueryError::new(QueryErrorKind::Unavailable, e.message()),
        })
}
