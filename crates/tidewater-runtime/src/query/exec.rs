//! Running one read-only statement against the replica, with a row limit and a timeout.
//!
//! Three locks on the door, each sufficient for a different kind of statement:
//! - `check_read_only` accepts one statement whose first keyword reads (SELECT, WITH, FROM,
//!   TABLE, VALUES, SHOW, DESCRIBE, SUMMARIZE, PIVOT, EXPLAIN of those): SET, PRAGMA, CALL,
//!   CHECKPOINT, ATTACH, COPY, INSTALL, LOAD, EXPORT, DDL and DML never reach DuckDB;
//! - the statement runs inside `BEGIN TRANSACTION READ ONLY`, so a write hidden in a read
//!   (`WITH ... INSERT`, `nextval`) fails;
//! - the database has `enable_external_access = false`, so no file or environment outside the
//!   replica can be read (`read_csv('/etc/passwd')`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tidewater_duckdb::duckdb::arrow::array::{make_array, Array, RecordBatch};
use tidewater_duckdb::duckdb::arrow::datatypes::DataType;
use tidewater_duckdb::duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use tidewater_duckdb::duckdb::types::Value;
use tidewater_duckdb::duckdb::{params_from_iter, Connection};

use super::json_cells;

pub use crate::config::{DEFAULT_LIMIT, DEFAULT_TIMEOUT, MAX_LIMIT, MAX_TIMEOUT};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryColumn {
    pub name: String,
    /// The Arrow type DuckDB returned the column as (`Int64`, `Utf8`, `Decimal128(12, 2)`).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryErrorKind {
    /// Not a single read-only statement.
    Refused,
    /// DuckDB rejected or failed the statement.
    Sql,
    Timeout,
    /// No replica to query (not open yet, or the server is busy).
    Unavailable,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryError {
    pub kind: QueryErrorKind,
    #[serde(rename = "error")]
    pub message: String,
}

impl QueryError {
    pub fn new(kind: QueryErrorKind, message: impl Into<String>) -> QueryError {
        QueryError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
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
    let statements = split_words(sql)?;
    let words = match statements.as_slice() {
        [] => return refuse("the query is empty".into()),
        [one] => one,
        _ => return refuse("only one statement at a time is accepted".into()),
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
        None => refuse("the query is empty".into()),
    }
}

/// Lower-cased bare words of each non-empty statement, outside strings, quoted identifiers
/// and comments.
fn split_words(sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let unterminated = |what: &str| {
        QueryError::new(
            QueryErrorKind::Refused,
            format!("the query has an unterminated {what}"),
        )
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

/// A result with every value as text (Arrow's rendering; NULL as `None`), before an endpoint
/// turns it into its own format (JSON for `POST /query`, PostgreSQL text for the SQL endpoint).
#[derive(Debug, Clone)]
pub struct TextResult {
    /// Name and Arrow type of each column.
    pub columns: Vec<(String, DataType)>,
    pub rows: Vec<Vec<Option<String>>>,
    /// More rows existed than the limit.
    pub truncated: bool,
    /// Parameters the statement takes (`$1`, `?`).
    pub parameters: usize,
    pub elapsed_ms: u64,
    /// Per column: its text is a JSON document (with `Cells::Json`: structures, DuckDB `JSON`).
    pub json_columns: Vec<bool>,
}

/// How structured cells (lists, structs, maps) are rendered as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// Arrow's display text (`[fruit, red]`): the SQL endpoint's text columns.
    Text,
    /// JSON documents (`["fruit","red"]`), which `into_json` turns into JSON values.
    Json,
}

impl TextResult {
    pub fn into_json(self) -> QueryResult {
        let rows = self
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .zip(&self.columns)
                    .zip(&self.json_columns)
                    .map(|((v, (_, ty)), json)| {
                        v.map_or(Json::Null, |text| match json {
                            true => serde_json::from_str(&text).unwrap_or(Json::String(text)),
                            false => to_json(ty, text),
                        })
                    })
                    .collect()
            })
            .collect();
        QueryResult {
            columns: self
                .columns
                .iter()
                .map(|(name, ty)| QueryColumn {
                    name: name.clone(),
                    ty: ty.to_string(),
                })
                .collect(),
            rows,
            truncated: self.truncated,
            elapsed_ms: self.elapsed_ms,
        }
    }
}

/// Values for a statement's parameters.
#[derive(Debug, Clone)]
pub enum Params {
    Values(Vec<Value>),
    /// NULL for each parameter the statement has: to learn its columns before values exist.
    AllNull,
}

/// Runs `sql` on `conn` (checked, read-only, at most `limit` rows). Blocking.
pub fn run(conn: &Connection, sql: &str, limit: usize) -> Result<QueryResult, QueryError> {
    run_text(conn, sql, &Params::Values(Vec::new()), limit, Cells::Json).map(TextResult::into_json)
}

/// `run` with parameters, its values left as text.
pub fn run_text(
    conn: &Connection,
    sql: &str,
    params: &Params,
    limit: usize,
    cells: Cells,
) -> Result<TextResult, QueryError> {
    check_read_only(sql)?;
    let started = Instant::now();
    let sql_error = |e: tidewater_duckdb::duckdb::Error| {
        let message = e.to_string();
        let kind = if message.contains("INTERRUPT") || message.contains("nterrupted") {
            QueryErrorKind::Timeout
        } else if message.contains("read-only") || message.contains("disabled by configuration") {
            QueryErrorKind::Refused
        } else {
            QueryErrorKind::Sql
        };
        QueryError::new(kind, message)
    };
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(sql_error)?;
    let result = (|| {
        let mut stmt = conn.prepare(sql).map_err(sql_error)?;
        let parameters = stmt.parameter_count();
        let values = match params {
            Params::Values(v) => v.clone(),
            Params::AllNull => vec![Value::Null; parameters],
        };
        // Streaming execution: rows are fetched chunk by chunk, so the limit bounds memory.
        drop(
            stmt.stream_arrow(params_from_iter(values))
                .map_err(sql_error)?,
        );
        let schema = stmt.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        // Structures become JSON documents, and a `JSON` column's text is one already
        // (DuckDB hands it to Arrow as plain text: only its logical type says JSON).
        let nested: Vec<bool> = schema
            .fields()
            .iter()
            .map(|f| cells == Cells::Json && json_cells::is_nested(f.data_type()))
            .collect();
        let json_columns: Vec<bool> = (0..nested.len())
            .map(|i| {
                let alias = stmt.column_logical_type(i).get_alias();
                nested[i] || (cells == Cells::Json && alias.is_some_and(|a| a == "JSON"))
            })
            .collect();
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = stmt.step().map_err(sql_error)? {
            let batch = RecordBatch::from(&chunk);
            if rows.len() + batch.num_rows() > limit {
                truncated = true;
            }
            append_rows(&batch, limit - rows.len(), &nested, &mut rows)?;
            if truncated {
                break;
            }
        }
        Ok(TextResult {
            columns,
            rows,
            truncated,
            parameters,
            elapsed_ms: started.elapsed().as_millis() as u64,
            json_columns,
        })
    })();
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// `nested`: the columns whose cells are written as JSON documents.
fn append_rows(
    batch: &RecordBatch,
    max: usize,
    nested: &[bool],
    rows: &mut Vec<Vec<Option<String>>>,
) -> Result<(), QueryError> {
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
        .with_time_format(Some("%H:%M:%S%.f"));
    let arrays: Vec<Arc<dyn Array>> = batch.columns().iter().map(in_utc).collect();
    let columns: Vec<(&Arc<dyn Array>, ArrayFormatter)> = arrays
        .iter()
        .map(|a| {
            ArrayFormatter::try_new(a.as_ref(), &options)
                .map(|f| (a, f))
                .map_err(|e| {
                    QueryError::new(QueryErrorKind::Sql, format!("formatting a value: {e}"))
                })
        })
        .collect::<Result<_, _>>()?;
    for i in 0..batch.num_rows().min(max) {
        let row = columns
            .iter()
            .enumerate()
            .map(|(c, (array, f))| {
                (!array.is_null(i)).then(|| match nested[c] {
                    true => json_cells::cell(array, i, &options).to_string(),
                    false => f.value(i).to_string(),
                })
            })
            .collect();
        rows.push(row);
    }
    Ok(())
}

/// TIMESTAMPTZ values are instants; DuckDB labels them with its session time zone (e.g.
/// `Etc/UTC`), which the formatter cannot resolve without a zone database: show them in UTC.
pub(super) fn in_utc(array: &Arc<dyn Array>) -> Arc<dyn Array> {
    match array.data_type() {
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() != "+00:00" => {
            let utc = DataType::Timestamp(*unit, Some("+00:00".into()));
            match array.to_data().into_builder().data_type(utc).build() {
                Ok(data) => make_array(data),
                Err(_) => array.clone(),
            }
        }
        _ => array.clone(),
    }
}

/// Numbers and booleans become JSON values; the rest (decimals too: exact) stays text.
pub(super) fn to_json(ty: &DataType, text: String) -> Json {
    let parsed = match ty {
        DataType::Boolean => text.parse::<bool>().ok().map(Json::Bool),
        t if t.is_integer() => serde_json::from_str::<serde_json::Number>(&text)
            .ok()
            .map(Json::Number),
        t if t.is_floating() => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number),
        _ => None,
    };
    parsed.unwrap_or(Json::String(text))
}

/// Runs `run` on a blocking thread and interrupts it at `timeout`.
pub async fn run_with_timeout(
    conn: Connection,
    sql: String,
    limit: usize,
    timeout: Duration,
) -> Result<QueryResult, QueryError> {
    with_timeout(conn, timeout, move |c| run(c, &sql, limit)).await
}

/// Runs `job` on `conn` on a blocking thread and interrupts its statement at `timeout`.
pub async fn with_timeout<T: Send + 'static>(
    conn: Connection,
    timeout: Duration,
    job: impl FnOnce(&Connection) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    let interrupt = conn.interrupt_handle();
    let mut job = tokio::task::spawn_blocking(move || job(&conn));
    let joined = match tokio::time::timeout(timeout, &mut job).await {
        Ok(joined) => joined,
        Err(_) => {
            // The interrupt only reaches a statement that is running: repeat it until the
            // job ends (it may be between BEGIN and the statement).
            loop {
                interrupt.interrupt();
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
