//! Connections to the source: regular SQL sessions (tokio-postgres) and the replication
//! session (libpq through pg_walstream), both with the session settings that make PostgreSQL's
//! text output canonical (ISO dates, UTC, exact floats).

use std::str::FromStr;

use tidewater_core::{Error, Result};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};
use tracing::debug;

/// Session settings for every connection: the text output of dates, times and floats then
/// needs no further interpretation.
const SESSION_OPTIONS: &str =
    "-c datestyle=ISO -c timezone=UTC -c extra_float_digits=3 -c intervalstyle=iso_8601";

/// The first host of the URL: a name or address, or a Unix socket directory.
fn first_host(cfg: &Config) -> Option<String> {
    cfg.get_hosts().first().map(|h| match h {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    })
}

/// The source URL with the password masked, for messages and logs (the one redactor).
pub use tidewater_core::redact::redact;

pub fn parse_config(url: &str) -> Result<Config> {
    let mut cfg = Config::from_str(url).map_err(|e| {
        Error::config(format!(
            "source.url is not a valid PostgreSQL URL ({e}); expected postgres://user:password@host:port/database"
        ))
    })?;
    cfg.options(SESSION_OPTIONS);
    cfg.application_name("tidewater");
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(std::time::Duration::from_secs(10));
    }
    Ok(cfg)
}

/// A regular SQL session; its connection task runs on the current runtime.
pub async fn connect(url: &str) -> Result<Client> {
    let cfg = parse_config(url)?;
    let (client, connection) = cfg
        .connect(crate::tls::connector())
        .await
        .map_err(|e| pg_error(e, &format!("cannot connect to {}", redact(url))))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!("source connection ended: {e}");
        }
    });
    Ok(client)
}

/// libpq conninfo for a replication session (`replication=database`) to the same server.
pub fn replication_conninfo(url: &str) -> Result<String> {
    let cfg = parse_config(url)?;
    let mut parts = vec![
        "replication=database".to_string(),
        "application_name=tidewater".into(),
    ];
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    if let Some(host) = first_host(&cfg) {
        parts.push(format!("host={}", quote(&host)));
    }
    if let Some(p) = cfg.get_ports().first() {
        parts.push(format!("port={p}"));
    }
    if let Some(u) = cfg.get_user() {
        parts.push(format!("user={}", quote(u)));
    }
    if let Some(pw) = cfg.get_password() {
        parts.push(format!("password={}", quote(&String::from_utf8_lossy(pw))));
    }
    if let Some(db) = cfg.get_dbname() {
        parts.push(format!("dbname={}", quote(db)));
    }
    parts.push(format!("options={}", quote(SESSION_OPTIONS)));
    let sslmode = match cfg.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    };
    parts.push(format!("sslmode={sslmode}"));
    parts.push("connect_timeout=10".into());
    Ok(parts.join(" "))
}

/// Opens a replication session (`replication=database`) to the server of `url`.
pub async fn open_replication(url: &str) -> Result<pg_walstream::PgReplicationConnection> {
    let conninfo = replication_conninfo(url)?;
    let user = parse_config(url)?
        .get_user()
        .unwrap_or_default()
        .to_string();
    pg_walstream::PgReplicationConnection::connect_async(&conninfo)
        .await
        .map_err(|e| {
            replication_connect_error(
                e,
                &format!("opening a replication connection to {}", redact(url)),
                &user,
            )
        })
}

/// Classifies a driver error once: what the user must fix is fatal (with the fix), what a
/// reconnect may cure is retryable.
pub fn pg_error(e: tokio_postgres::Error, what: &str) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let msg = db.message();
        let fix = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            "check the user and password in source.url"
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            "check the database name in source.url"
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            "grant the privilege to the replication user (see `tidewater check`)"
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            // The role's or the database's CONNECTION LIMIT, or the server's max_connections:
            // other sessions may end, so retried, saying what to raise.
            return Error::source_retryable(format!("{what}: {msg}"))
                .with_fix(TOO_MANY_CONNECTIONS_FIX);
        } else if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::CRASH_SHUTDOWN
        {
            return Error::source_retryable(format!("{what}: {msg}"));
        } else {
            ""
        };
        let e = Error::source_fatal(format!("{what}: {msg}"));
        return if fix.is_empty() { e } else { e.with_fix(fix) };
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        // The driver's own text ("error connecting to server") leaves out the cause.
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        return Error::source_retryable(format!("{what}: {e}{cause}")).with_fix(
            "check that the server is running and reachable at the host and port in source.url",
        );
    }
    Error::source_retryable(format!("{what}: {e}"))
}

/// How to give `user` the right to open replication connections, on plain PostgreSQL and on
/// the managed services.
pub fn replication_fix(user: &str) -> String {
    format!(
        "as a superuser: ALTER ROLE {u} WITH REPLICATION; (Cloud SQL: the user needs the \
         cloudsqlsuperuser role and the REPLICATION attribute: GRANT cloudsqlsuperuser TO {u}; \
         ALTER ROLE {u} WITH REPLICATION; RDS: GRANT rds_replication TO {u};)",
        u = tidewater_core::sql::quote_ident(user)
    )
}

/// Whether the server refused a replication connection because the role may not replicate
/// (PostgreSQL 14/15: "must be superuser or replication role to start walsender"; 16+:
/// "permission denied to start WAL sender").
fn is_replication_denied(message: &str) -> bool {
    let lower = message.to_lowercase();
    lower.contains("must be superuser or replication role")
        || lower.contains("permission denied to start wal sender")
}

/// A refused replication connection, with the fix for `user` when the role lacks REPLICATION.
fn replication_connect_error(e: pg_walstream::ReplicationError, what: &str, user: &str) -> Error {
    let msg = e.to_string();
    if is_replication_denied(&msg) {
        // The server's words, without the driver's "transient connection error" wrapping.
        let refusal = msg.split_once("FATAL:").map_or(msg.as_str(), |(_, m)| m);
        return Error::source_fatal(format!(
            "{what}: refused ({}): user {user} lacks the REPLICATION attribute, which reading \
             the replication stream needs",
            refusal.trim(),
        ))
        .with_fix(replication_fix(user));
    }
    replication_error(e, what)
}

/// What to do when the server refuses a session for the role's, the database's or its own
/// connection limit (53300: "too many connections for role …", "… for database …", "sorry,
/// too many clients already"). Other sessions may end, so it is retried.
const TOO_MANY_CONNECTIONS_FIX: &str = "raise the limit the message names (ALTER ROLE … \
    CONNECTION LIMIT n, ALTER DATABASE … CONNECTION LIMIT n, or max_connections), or lower \
    [snapshot] parallelism; `tidewater check` counts the sessions a run opens";

pub fn replication_error(e: pg_walstream::ReplicationError, what: &str) -> Error {
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    // The replication connection's refusals arrive as libpq's text, not as a SQLSTATE.
    if lower.contains("too many connections for") || lower.contains("too many clients") {
        return Error::source_retryable(format!("{what}: {msg}"))
            .with_fix(TOO_MANY_CONNECTIONS_FIX);
    }
    if lower.contains("password")
        || lower.contains("authentication")
        || lower.contains("does not exist")
        || lower.contains("permission denied")
        || lower.contains("must be superuser or replication")
        || lower.contains("wal_level")
    {
        let fix = if lower.contains("wal_level") {
            "; set wal_level = logical on the source and restart it (Cloud SQL: flag cloudsql.logical_decoding=on)"
        } else if lower.contains("replication") && lower.contains("permission") {
            "; grant it with ALTER ROLE <user> WITH REPLICATION"
        } else {
            ""
        };
        return Error::source_fatal(format!("{what}: {msg}{fix}"));
    }
    Error::source_retryable(format!("{what}: {msg}"))
}

/// The server's WAL insert position (`pg_current_wal_lsn()`); `what` names the reading in an
/// error.
pub async fn current_wal_lsn(client: &Client, what: &str) -> Result<u64> {
    let text: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| pg_error(e, what))?
        .get(0);
    parse_lsn(&text).ok_or_else(|| Error::source_fatal(format!("unexpected WAL position {text}")))
}

pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(format_lsn(0x1_0000_00FF), "1/FF");
        assert_eq!(
            parse_lsn(&format_lsn(123_456_789_012)),
            Some(123_456_789_012)
        );
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn sslmode_reaches_the_replication_session() {
        let ci = replication_conninfo("postgres://u:pw@h/db?sslmode=require").unwrap();
        assert!(ci.contains("sslmode=require"), "{ci}");
        let ci = replication_conninfo("postgres://u:pw@h/db?sslmode=disable").unwrap();
        assert!(ci.contains("sslmode=disable"), "{ci}");
    }

    #[test]
    fn replication_refusal_is_recognised_in_every_server_version() {
        // PostgreSQL 14/15, then 16+.
        assert!(is_replication_denied(
            "connection to server at \"h\", port 5432 failed: FATAL:  must be superuser or replication role to start walsender"
        ));
        assert!(is_replication_denied(
            "FATAL:  permission denied to start WAL sender\nDETAIL:  Only roles with the REPLICATION attribute may start a WAL sender process."
        ));
        assert!(!is_replication_denied(
            "FATAL:  password authentication failed for user \"repl\""
        ));
        let fix = replication_fix("Repl");
        assert!(
            fix.contains("ALTER ROLE \"Repl\" WITH REPLICATION"),
            "{fix}"
        );
    }

    #[test]
    fn redaction_drops_the_password() {
        let r = redact("postgres://repl:s3cret@db.example:6432/shop");
        assert_eq!(r, "postgres://repl:***@db.example:6432/shop");
        let ci = replication_conninfo("postgres://repl:s3cret@db.example:6432/shop").unwrap();
        assert!(ci.contains("replication=database") && ci.contains("password='s3cret'"));
    }
}
