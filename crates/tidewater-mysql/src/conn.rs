//! Connections to a MySQL or MariaDB server: URL parsing (with TLS) without leaking the
//! password, the session settings that make values canonical, and one classification of
//! driver errors.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use percent_encoding::percent_decode_str;
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

/// The statements that show the binlog's end (file and offset), the likely one first:
/// MySQL 8.2 renamed `SHOW MASTER STATUS` to `SHOW BINARY LOG STATUS` (8.4 knows only the new
/// name); MariaDB, whose versions (10.x, 11.x) look newer, and MySQL before 8.2 know only the
/// old. The second is for a server whose version says otherwise (a fork), so that no
/// version asks twice per read.
pub fn binlog_status_statements(flavor: Flavor, version: (u16, u16, u16)) -> [&'static str; 2] {
    const RENAMED: &str = "SHOW BINARY LOG STATUS";
    const OLD: &str = "SHOW MASTER STATUS";
    if flavor == Flavor::MySql && version >= (8, 2, 0) {
        [RENAMED, OLD]
    } else {
        [OLD, RENAMED]
    }
}

pub fn parse_opts(url: &str) -> Result<Opts> {
    let (url, tls) = split_tls_params(url)?;
    let opts = Opts::from_url(&url).map_err(|e| {
        Error::config(format!("source.url is not a valid MySQL URL ({e})"))
            .with_fix("write source.url as mysql://user:password@host:port/database")
    })?;
    let mut builder = OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .conn_ttl(None)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .init(vec![
            "SET NAMES utf8mb4",
            "SET time_zone = '+00:00'",
            "SET SESSION sql_mode = ''",
        ]);
    if let Some(ssl) = tls.ssl_opts() {
        builder = builder.ssl_opts(ssl);
    }
    Ok(builder.into())
}

/// TLS as MySQL's own clients spell it in the URL: `ssl-mode` (DISABLED, REQUIRED, VERIFY_CA,
/// VERIFY_IDENTITY) and `ssl-ca` (a PEM file of the CA that signed the server certificate;
/// without it, the public web roots). mysql_async's `require_ssl`, `verify_ca` and
/// `verify_identity` parameters work as well.
#[derive(Debug, Default, PartialEq)]
struct TlsParams {
    mode: Option<SslMode>,
    ca: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SslMode {
    Disabled,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl TlsParams {
    fn ssl_opts(&self) -> Option<mysql_async::SslOpts> {
        let mode = match (self.mode, &self.ca) {
            (Some(SslMode::Disabled), _) | (None, None) => return None,
            (Some(m), _) => m,
            (None, Some(_)) => SslMode::VerifyIdentity,
        };
        let mut ssl = mysql_async::SslOpts::default()
            .with_danger_accept_invalid_certs(mode == SslMode::Required)
            .with_danger_skip_domain_validation(mode != SslMode::VerifyIdentity);
        if let Some(ca) = &self.ca {
            ssl = ssl.with_root_certs(vec![std::path::PathBuf::from(ca).into()]);
        }
        Some(ssl)
    }
}

/// Takes `ssl-mode` and `ssl-ca` out of the URL's query (mysql_async does not know them).
fn split_tls_params(url: &str) -> Result<(String, TlsParams)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), TlsParams::default()));
    };
    let mut tls = TlsParams::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key.to_ascii_lowercase().replace('_', "-").as_str() {
            "ssl-mode" | "sslmode" => {
                tls.mode = Some(
                    match value.to_ascii_uppercase().replace('-', "_").as_str() {
                        "DISABLED" | "DISABLE" => SslMode::Disabled,
                        "REQUIRED" | "REQUIRE" => SslMode::Required,
                        "VERIFY_CA" => SslMode::VerifyCa,
                        "VERIFY_IDENTITY" | "VERIFY_FULL" => SslMode::VerifyIdentity,
                        _ => {
                            return Err(Error::config(format!(
                                "source.url: ssl-mode={value} is not one of DISABLED, REQUIRED, \
                             VERIFY_CA, VERIFY_IDENTITY (PREFERRED is not supported: say which)"
                            )))
                        }
                    },
                )
            }
            "ssl-ca" => {
                // A CA path in a URL may be percent-encoded (`%2F` for `/`).
                tls.ca = Some(percent_decode_str(value).decode_utf8_lossy().into_owned())
            }
            _ => rest.push(pair),
        }
    }
    let url = match rest.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", rest.join("&")),
    };
    Ok((url, tls))
}

/// The source URL with the password masked, for messages and logs (the one redactor).
pub use tidewater_core::redact::redact;

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

/// What keeps a purged binlog from recurring (after the sink's re-snapshot fix).
pub const RETENTION_FIX: &str = "raise binlog_expire_logs_seconds (MySQL) / expire_logs_days \
     (MariaDB) so this does not recur";

/// The marker source of an error the server answered with 1236: the binlog no longer holds
/// the requested position. The source turns it into the sink's re-snapshot fix.
#[derive(Debug)]
pub struct Purged;

impl std::fmt::Display for Purged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the binlog no longer holds the position")
    }
}

impl std::error::Error for Purged {}

/// The marker source of an error after which the replica cannot follow the binlog any more
/// (the source turns it into the sink's re-snapshot fix).
#[derive(Debug)]
pub struct CannotCatchUp;

impl std::fmt::Display for CannotCatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the replica cannot catch up")
    }
}

impl std::error::Error for CannotCatchUp {}

/// Whether `e` needs a new snapshot ([`CannotCatchUp`]).
pub fn cannot_catch_up(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<CannotCatchUp>())
}

/// Whether `e` says the binlog no longer holds the requested position.
pub fn is_purged(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<Purged>())
}

/// Classifies a driver error once: the connection dropping is retryable; wrong credentials,
/// missing privileges and purged binlogs are not, and say how to fix them.
pub fn my_error(e: mysql_async::Error, context: &str) -> Error {
    use mysql_async::Error as E;
    match &e {
        E::Server(s) => {
            let fix = match s.code {
                1045 => Some(
                    "check the user and password in source.url; the account must also allow \
                     this client's host (e.g. 'user'@'%')",
                ),
                1049 => Some("check the database name in source.url (or CREATE DATABASE it)"),
                1044 | 1142 | 1143 | 1227 => Some(
                    "the replication user lacks a privilege: it needs REPLICATION SLAVE and \
                     BINLOG MONITOR (MySQL: REPLICATION CLIENT) on *.* and SELECT on the \
                     replicated tables (MySQL also RELOAD without gtid_mode = ON, for keyless \
                     tables and for verify); `tidewater check` \
                     prints the exact GRANT statements",
                ),
                // Too many connections: the server's, or the account's (an hourly resource
                // limit is 1226 too). Other sessions may end: retried, saying what to raise.
                1040 | 1203 | 1226 => Some(
                    "raise the limit the message names (ALTER USER … WITH \
                     MAX_USER_CONNECTIONS n, SET GLOBAL max_user_connections or \
                     max_connections), or lower [snapshot] parallelism; `tidewater check` \
                     counts the sessions a run opens",
                ),
                _ => None,
            };
            let retryable = matches!(
                s.code,
                1053 | 1205 | 1213 | 1927 | 2006 | 2013 | 1040 | 1203 | 1226
            );
            let msg = format!("{context}: {} (error {})", s.message, s.code);
            let e = if retryable {
                Error::source_retryable(msg)
            } else {
                Error::source_fatal(msg)
            };
            match fix {
                Some(f) => e.with_fix(f),
                None if s.code == 1236 => e.with_source(Purged),
                None => e,
            }
        }
        E::Io(io) if is_tls_failure(io) => Error::source_fatal(format!("{context}: {e}")).with_fix(
            "fix the TLS settings in source.url: ssl-ca=<PEM file of the server's CA> to trust a \
             private CA, ssl-mode=VERIFY_CA when the certificate does not name the host, \
             ssl-mode=REQUIRED to encrypt without verifying",
        ),
        E::Io(_) => Error::source_retryable(format!("{context}: {e}")).with_fix(
            "check that the server is running and reachable at the host and port in source.url",
        ),
        E::Url(_) => Error::config(format!("source.url: {e}")),
        _ => Error::source_fatal(format!("{context}: {e}")),
    }
}

/// A failed TLS handshake (an untrusted or mismatched certificate): retrying cannot help.
fn is_tls_failure(e: &mysql_async::IoError) -> bool {
    match e {
        mysql_async::IoError::Tls(_) => true,
        mysql_async::IoError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binlog_status_statement_follows_the_servers_version() {
        let renamed = ["SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"];
        let old = ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"];
        assert_eq!(binlog_status_statements(Flavor::MySql, (8, 4, 3)), renamed);
        assert_eq!(binlog_status_statements(Flavor::MySql, (8, 2, 0)), renamed);
        assert_eq!(binlog_status_statements(Flavor::MySql, (8, 0, 36)), old);
        assert_eq!(binlog_status_statements(Flavor::MySql, (5, 7, 44)), old);
        // MariaDB's versions are higher, its statement the old one.
        assert_eq!(binlog_status_statements(Flavor::MariaDb, (11, 4, 2)), old);
    }

    #[test]
    fn redaction_drops_the_password() {
        let r = redact("mysql://repl:s3cret@db.example:3307/shop");
        assert_eq!(r, "mysql://repl:***@db.example:3307/shop");
    }

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (url, tls) =
            split_tls_params("mysql://u:p@h:3306/db?ssl-mode=verify_ca&ssl-ca=%2Fetc%2Fca.pem&x=1")
                .unwrap();
        assert_eq!(url, "mysql://u:p@h:3306/db?x=1");
        assert_eq!(tls.mode, Some(SslMode::VerifyCa));
        assert_eq!(tls.ca.as_deref(), Some("/etc/ca.pem"));
        let (url, tls) = split_tls_params("mysql://u@h/db?sslmode=REQUIRED").unwrap();
        assert_eq!(
            (url.as_str(), tls.mode),
            ("mysql://u@h/db", Some(SslMode::Required))
        );
        assert!(tls.ssl_opts().unwrap().accept_invalid_certs());
        let (_, tls) = split_tls_params("mysql://u@h/db?ssl-ca=/ca.pem").unwrap();
        let ssl = tls.ssl_opts().unwrap();
        assert!(!ssl.accept_invalid_certs() && !ssl.skip_domain_validation());
        let (_, tls) = split_tls_params("mysql://u@h/db?ssl-mode=DISABLED").unwrap();
        assert!(tls.ssl_opts().is_none());
        let e = split_tls_params("mysql://u@h/db?ssl-mode=PREFERRED").unwrap_err();
        assert!(e.message().contains("PREFERRED"), "{e}");
        assert!(parse_opts("mysql://u@h/db?ssl-mode=REQUIRED").is_ok());
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let e = parse_opts("postgres://x@y/z").unwrap_err();
        assert_eq!(e.kind, tidewater_core::ErrorKind::Config);
        assert!(e.fix().is_some_and(|f| f.contains("mysql://")), "{e}");
    }
}
