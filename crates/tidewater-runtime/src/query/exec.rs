//! Running one read-only statement against the replica (through its `ReadSession`), with a
//! row limit and a timeout, and the answer `POST /query` gives.
//!
//! Three locks on the door, each sufficient for a different kind of statement:
//! - `check_read_only` accepts one statement whose first keyword reads (SELECT, WITH, FROM,
//!   TABLE, VALUES, SHOW, DESCRIBE, SUMMARIZE, PIVOT, EXPLAIN of those): SET, PRAGMA, CALL,
//!   CHECKPOINT, ATTACH, COPY, INSTALL, LOAD, EXPORT, DDL and DML never reach DuckDB;
//! - the replica runs the statement inside `BEGIN TRANSACTION READ ONLY`, so a write hidden
//!   in a read (`WITH ... INSERT`, `nextval`) fails;
//! - the replica's database has `enable_external_access = false`, so no file or environment
//!   outside the replica can be read (`read_csv('/etc/passwd')`; DuckDB's `read` module).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
pub use tidewater_core::replica::{
    Cells, Params, QueryError, QueryErrorKind, ReadSession, TextResult,
};

pub use crate::config::{DEFAULT_LIMIT, DEFAULT_TIMEOUT, MAX_LIMIT, MAX_TIMEOUT};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryColumn {
    pub name: String,
    /// The destination's name of the column's type (DuckDB: the Arrow type it returned the
    /// column as, `Int64`, `Utf8`, `Decimal128(12, 2)`).
    #[serde(rename = "type")]
    pub ty: String,
}

/// The answer to a query: what `POST /query` returns and every `--format` renders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<QueryColumn>,
    /// Integers, floats and booleans as JSON values, NULL as null, everything else (decimals
    /// included, to stay exact) as its text.
    pub rows: Vec<Vec<Json>>,
    /// More rows existed than the limit.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

const READING: &[&str] = &[
    "select",
    "with",
    "from",
    "table",
    "values",
    "show",
    "describe",
    "desc",
    "summarize",
    "pivot",
    "unpivot",
];
/// Table functions that write even in a read-only transaction.
const FORBIDDEN_WORDS: &[&str] = &["checkpoint", "force_checkpoint"];

/// Accepts exactly one statement that only reads (see the module comment).
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    let refuse = |why: String| Err(QueryError::new(QueryErrorKind::Refused, why));
    // Not one statement: a syntax error (42601) to PostgreSQL clients.
    let malformed =
        |why: &str| Err(QueryError::new(QueryErrorKind::Refused, why).with_sqlstate(SYNTAX_ERROR));
    let statements = split_words(sql)?;
    let words = match statements.as_slice() {
        [] => return malformed("the query is empty"),
        [one] => one,
        _ => return malformed("only one statement at a time is accepted"),
    };
    let mut i = 0;
    if words[0] == "explain" {
        i = 1;
        if words.get(1).is_some_and(|w| w == "analyze") {
            i = 2;
        }
    }
    match words.get(i) {
        Some(w) if READING.contains(&w.as_str()) => {
            match words.iter().find(|w| FORBIDDEN_WORDS.contains(&w.as_str())) {
                Some(w) => refuse(format!("{w}() is not allowed in a read-only query")),
                None => Ok(()),
            }
        }
        Some(w) => refuse(format!(
            "only read-only statements are accepted (SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN ...), not {}",
            w.to_uppercase()
        )),
        None => malformed("the query is empty"),
    }
}

/// SQLSTATE `syntax_error`.
const SYNTAX_ERROR: &str = "42601";

/// Lower-cased bare words of each non-empty statement, outside strings, quoted identifiers
/// and comments.
fn split_words(sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let unterminated = |what: &str| {
        QueryError::new(
            QueryErrorKind::Refused,
            format!("the query has an unterminated {what}"),
        )
        .with_sqlstate(SYNTAX_ERROR)
    };
    let chars: Vec<char> = sql.chars().collect();
    let mut statements = vec![Vec::new()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or_else(|| unterminated("comment"))?;
            i = end + 2;
        } else if c == '\'' || c == '"' {
            // '' (or "") inside is an escaped quote: scanning on finds the real end.
            let end = (i + 1..chars.len())
                .find(|&j| chars[j] == c && chars.get(j + 1) != Some(&c) && !escaped(&chars, i, j))
                .ok_or_else(|| unterminated("string"))?;
            i = end + 1;
        } else if c == '$' && next == Some('$') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '$' && chars[j + 1] == '$')
                .ok_or_else(|| unterminated("$$ string"))?;
            i = end + 2;
        } else if c == ';' {
            statements.push(Vec::new());
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            statements
                .last_mut()
                .expect("at least one")
                .push(word.to_lowercase());
        } else {
            i += 1;
        }
    }
    statements.retain(|s| !s.is_empty());
    Ok(statements)
}

/// Whether the quote at `j` is preceded by an odd run of quotes since `start`, i.e. it is
/// the second half of a doubled quote already consumed.
fn escaped(chars: &[char], start: usize, j: usize) -> bool {
    let q = chars[start];
    let run = chars[start + 1..j]
        .iter()
        .rev()
        .take_while(|&&c| c == q)
        .count();
    run % 2 == 1
}

/// `result` as `POST /query` answers it: each cell (a JSON document, `Cells::Json`) as its
/// JSON value.
pub fn into_json(result: TextResult) -> QueryResult {
    let rows = result
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| {
                    v.map_or(Json::Null, |text| {
                        serde_json::from_str(&text).unwrap_or(Json::String(text))
                    })
                })
                .collect()
        })
        .collect();
    QueryResult {
        columns: result
            .columns
            .into_iter()
            .map(|c| QueryColumn {
                name: c.name,
                ty: c.type_name,
            })
            .collect(),
        rows,
        truncated: result.truncated,
        elapsed_ms: result.elapsed_ms,
    }
}

/// Runs the read-only `sql` (checked here) on `session` with at most `limit` rows, on a
/// blocking thread, and interrupts it at `timeout`.
pub async fn run_with_timeout(
    session: Box<dyn ReadSession>,
    sql: String,
    limit: usize,
    timeout: Duration,
) -> Result<QueryResult, QueryError> {
    check_read_only(&sql)?;
    let no_params = Params::Values(Vec::new());
    with_timeout(session, timeout, move |s| {
        s.query(&sql, &no_params, limit, Cells::Json)
    })
    .await
    .map(into_json)
}

/// Runs `job` on `session` on a blocking thread and interrupts its statement at `timeout`.
pub async fn with_timeout<T: Send + 'static>(
    mut session: Box<dyn ReadSession>,
    timeout: Duration,
    job: impl FnOnce(&mut dyn ReadSession) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    let interrupt = session.interrupt();
    let mut job = tokio::task::spawn_blocking(move || job(session.as_mut()));
    let joined = match tokio::time::timeout(timeout, &mut job).await {
        Ok(joined) => joined,
        Err(_) => {
            // The interrupt only reaches a statement that is running: repeat it until the
            // job ends (it may be between BEGIN and the statement).
            loop {
                interrupt();
                tokio::select! {
                    j = &mut job => { drop(j); break; }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            return Err(QueryError::new(
                QueryErrorKind::Timeout,
                format!(
                    "the query took longer than {} s and was interrupted",
                    timeout.as_secs_f64()
                ),
            ));
        }
    };
    joined.unwrap_or_else(|e| {
        Err(QueryError::new(
            QueryErrorKind::Sql,
            format!("query task failed: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> bool {
        check_read_only(sql).is_err()
    }

    #[test]
    fn read_only_rule() {
        for ok in [
            "SELECT 1",
            "  -- comment\n select * from t;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "FROM t",
            "SHOW TABLES",
            "DESCRIBE public.orders",
            "SUMMARIZE t",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SELECT 'a;b', \"x;y\" FROM t -- ; DROP",
            "SELECT 'it''s; fine'",
            "/* insert */ SELECT 1",
        ] {
            assert!(!refused(ok), "{ok} should be accepted");
        }
        for bad in [
            "INSERT INTO t VALUES (1)",
            "DELETE FROM t",
            "ATTACH 'x.duckdb'",
            "COPY t TO 'x.csv'",
            "INSTALL httpfs",
            "LOAD json",
            "SET threads = 1",
            "PRAGMA memory_limit='1MB'",
            "CALL checkpoint()",
            "CHECKPOINT",
            "SELECT * FROM checkpoint()",
            "EXPLAIN ANALYZE DELETE FROM t",
            "SELECT 1; DROP TABLE t",
            "SELECT 'unterminated",
            "",
            " ; -- nothing",
            "CREATE TABLE x (a int)",
            "EXPORT DATABASE 'd'",
        ] {
            assert!(refused(bad), "{bad:?} should be refused");
        }
    }
}
