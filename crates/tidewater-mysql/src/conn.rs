//! Connections to a MySQL or MariaDB server: URL parsing without leaking the password, the
//! session settings that make values canonical, and one classification of driver errors.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tidewater_core::{Error, Result};

/// MySQL and MariaDB differ in GTIDs, snapshot position and binlog events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MySql,
    MariaDb,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MySql => "MySQL",
            Flavor::MariaDb => "MariaDB",
        }
    }
}

pub fn parse_opts(url: &str) -> Result<Opts> {
    let opts = Opts::from_url(url).map_err(|e| {
        Error::config(format!(
            "source.url is not a valid MySQL URL ({e}); expected mysql://user:password@host:port/database"
        ))
    })?;
    Ok(OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .conn_ttl(None)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .init(vec![
            "SET NAMES utf8mb4",
            "SET time_zone = '+00:00'",
            "SET SESSION sql_mode = ''",
        ])
        .into())
}

/// The source URL with the password removed, for messages and logs.
pub fn redact(url: &str) -> String {
    match Opts::from_url(url) {
        Ok(o) => format!(
            "mysql://{}@{}:{}/{}",
            o.user().unwrap_or(""),
            o.ip_or_hostname(),
            o.tcp_port(),
            o.db_name().unwrap_or("")
        ),
        Err(_) => "<unparseable mysql URL>".to_string(),
    }
}

/// A SQL session in UTC with utf8mb4 results.
pub async fn connect(url: &str) -> Result<Conn> {
    let opts = parse_opts(url)?;
    match tokio::time::timeout(Duration::from_secs(10), Conn::new(opts)).await {
        Ok(r) => r.map_err(|e| my_error(e, &format!("cannot connect to {}", redact(url)))),
        Err(_) => Err(Error::source_retryable(format!(
            "cannot connect to {}: no answer within 10 s (is the host reachable and the port right?)",
            redact(url)
        ))),
    }
}

pub async fn flavor(conn: &mut Conn) -> Result<Flavor> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| my_error(e, "reading the server version"))?
        .unwrap_or_default();
    Ok(if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    })
}

/// A global variable as text (`None` when the server does not have it).
pub async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>> {
    let row: Option<(String, Option<String>)> = conn
        .query_first(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
        .await
        .map_err(|e| my_error(e, &format!("reading @@{name}")))?;
    Ok(row.and_then(|(_, v)| v))
}

/// The fix for a binlog that no longer holds the stored position.
pub const RESNAPSHOT_FIX: &str = "the replica cannot catch up from here: move the DuckDB file aside \
     (or set sink.path to a new file) and run `tidewater run` again to take a new snapshot; \
     raise binlog_expire_logs_seconds (MySQL) / expire_logs_days (MariaDB) so this does not recur";

/// Classifies a driver error once: the connection dropping is retryable; wrong credentials,
/// missing privileges and purged binlogs are not, and say how to fix them.
pub fn my_error(e: mysql_async::Error, context: &str) -> Error {
    use mysql_async::Error as E;
    match &e {
        E::Server(s) => {
            let fix = match s.code {
                1045 => Some("wrong user or password in source.url"),
                1049 => Some("the database in source.url does not exist"),
                1044 | 1142 | 1143 | 1227 => Some(
                    "the replication user lacks a privilege: it needs REPLICATION SLAVE and \
                     REPLICATION CLIENT on *.*, SELECT on the replicated tables, and on MySQL RELOAD \
                     for the snapshot; `tidewater check` prints the exact GRANT statements",
                ),
                1236 => Some(RESNAPSHOT_FIX),
                _ => None,
            };
            let retryable = matches!(s.code, 1053 | 1205 | 1213 | 1927 | 2006 | 2013 | 1040);
            let msg = match fix {
                Some(f) => format!("{context}: {} (error {}); fix: {f}", s.message, s.code),
                None => format!("{context}: {} (error {})", s.message, s.code),
            };
            if retryable {
                Error::source_retryable(msg)
            } else {
                Error::source_fatal(msg)
            }
        }
        E::Io(_) => Error::source_retryable(format!(
            "{context}: {e}; check that the server is running and reachable at the host and port in source.url"
        )),
        E::Url(_) => Error::config(format!("source.url: {e}")),
        _ => Error::source_fatal(format!("{context}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_the_password() {
        let r = redact("mysql://repl:s3cret@db.example:3307/shop");
        assert_eq!(r, "mysql://repl@db.example:3307/shop");
        assert_eq!(redact("mysql://u:p@["), "<unparseable mysql URL>");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let e = parse_opts("postgres://x@y/z").unwrap_err();
        assert_eq!(e.kind, tidewater_core::ErrorKind::Config);
        assert!(e.message().contains("mysql://"), "{e}");
    }
}
