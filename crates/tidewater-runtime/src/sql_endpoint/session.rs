//! What the endpoint answers itself, without DuckDB: the session parameters it reports at
//! startup (and `SHOW` of one of them), and transaction blocks, which drivers open around
//! statements: `BEGIN` / `COMMIT` / `ROLLBACK` are accepted and do nothing, since each
//! statement runs in its own read-only transaction anyway.

use std::collections::HashMap;

use pgwire::api::auth::ServerParameterProvider;
use pgwire::api::results::{Response, Tag};
use pgwire::api::{ClientInfo, METADATA_APPLICATION_NAME};
use tidewater_core::replica::ResultColumn;

use crate::query::exec::TextResult;

/// `server_version`: clients parse its leading number.
const SERVER_VERSION: &str = concat!("14.0 (tidewater ", env!("CARGO_PKG_VERSION"), ", DuckDB)");

/// The session parameters of every connection (values as `exec` renders them: UTC, ISO).
const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", "140000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("is_superuser", "off"),
    ("default_transaction_read_only", "on"),
    ("in_hot_standby", "off"),
];

/// Sends `PARAMETERS` (and the client's application_name back) at startup.
pub struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut all: HashMap<String, String> = PARAMETERS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(name) = client.metadata().get(METADATA_APPLICATION_NAME) {
            all.insert(METADATA_APPLICATION_NAME.into(), name.clone());
        }
        Some(all)
    }
}

pub enum Local {
    /// A transaction block statement: its command tag.
    Transaction(Response),
    /// `SHOW <parameter>`: one row, one text column.
    Show(TextResult),
}

/// The answer to `sql` when it is one the endpoint gives itself.
pub fn local(sql: &str) -> Option<Local> {
    let sql = sql.trim().trim_end_matches(';').trim();
    if sql.contains(';') {
        return None;
    }
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let tag = |t: &str| Some(Local::Transaction(Response::TransactionEnd(Tag::new(t))));
    match words.first()?.as_str() {
        "begin" | "start" => Some(Local::Transaction(Response::TransactionStart(Tag::new(
            "BEGIN",
        )))),
        "commit" | "end" => tag("COMMIT"),
        "rollback" | "abort" => tag("ROLLBACK"),
        "show" if words.len() == 2 => {
            let (name, value) = PARAMETERS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&words[1]))?;
            Some(Local::Show(TextResult {
                columns: vec![ResultColumn::text(name.to_ascii_lowercase())],
                rows: vec![vec![Some(value.to_string())]],
                truncated: false,
                parameters: 0,
                elapsed_ms: 0,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_here() {
        for sql in [
            "BEGIN",
            "begin;",
            " START TRANSACTION READ ONLY",
            "COMMIT",
            "rollback",
        ] {
            assert!(matches!(local(sql), Some(Local::Transaction(_))), "{sql}");
        }
        let Some(Local::Show(r)) = local("show SERVER_VERSION;") else {
            panic!("SHOW server_version")
        };
        assert_eq!(r.columns[0].name, "server_version");
        assert_eq!(r.rows, [[Some(SERVER_VERSION.to_string())]]);
        assert!(matches!(local("SHOW TimeZone"), Some(Local::Show(_))));
        // Everything else is DuckDB's (and the read-only check's) to answer.
        for sql in [
            "BEGIN; DELETE FROM t",
            "SELECT 1",
            "SET x = 1",
            "beginning",
            "",
            "SHOW TABLES",
            "SHOW server_version; DROP TABLE t",
        ] {
            assert!(local(sql).is_none(), "{sql}");
        }
    }
}
