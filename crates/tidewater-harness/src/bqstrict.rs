//! A recording proxy between the BigQuery sink and the emulator that makes the emulator as
//! strict as BigQuery about streamed rows.
//!
//! Real BigQuery refuses UPDATE, DELETE, MERGE and TRUNCATE on a table while rows streamed
//! into it (`tabledata.insertAll`, Storage Write API) are in its streaming buffer, for 30 to
//! 90 minutes; the emulator allows them. Every request of the sink goes through this proxy,
//! which:
//!
//! - records which tables received rows by `insertAll` (and how many), and every load job;
//! - refuses, with BigQuery's own error (HTTP 400, `invalidQuery`, "would affect rows in the
//!   streaming buffer"), any query or query job whose SQL applies UPDATE, DELETE, MERGE or
//!   TRUNCATE to one of those tables, and records the attempt as a violation;
//! - refuses `ALTER TABLE ... DROP COLUMN` on those tables too. This is stricter than
//!   BigQuery is known to be: its documentation names no streaming-buffer limit for schema
//!   changes, and none was found for dropping a column either, so the sink is held to never
//!   needing one (its staging tables keep dropped columns). `ADD COLUMN` and `ALTER COLUMN
//!   ... SET DATA TYPE` pass: schema updates that BigQuery documents for streamed-to tables.
//!
//! A test's lifetime is far shorter than the buffer window, so a table that received a
//! streamed row stays protected until the proxy stops. The Storage Write API (gRPC) does not
//! pass through here: the sink does not use it.
//!
//! Plain HTTP/1.1, one thread per client connection, one upstream connection per request;
//! each message is read whole (Content-Length or chunked) and forwarded with a
//! Content-Length, so the client may keep its connection alive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value as Json};

use crate::launch::HOST;
use crate::HarnessError;

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct StrictLog {
    /// Rows received by `tabledata.insertAll`, per table name (without dataset).
    pub streamed_rows: BTreeMap<String, u64>,
    /// Load jobs (uploads and `jobs.insert` with a load configuration), per destination table.
    pub load_jobs: BTreeMap<String, u64>,
    /// DML statements refused because they target a table with streamed rows: (table, SQL).
    pub violations: Vec<(String, String)>,
    /// Every query's SQL, in order.
    pub queries: Vec<String>,
}

impl StrictLog {
    pub fn streamed_total(&self) -> u64 {
        self.streamed_rows.values().sum()
    }
}

/// The running proxy; stops when dropped.
pub struct StrictProxy {
    port: u16,
    log: Arc<Mutex<StrictLog>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl StrictProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Result<StrictProxy, HarnessError> {
        let io = |source| HarnessError::Io {
            context: "listening for the BigQuery strict proxy".into(),
            source,
        };
        let listener = TcpListener::bind((HOST, 0)).map_err(io)?;
        let port = listener.local_addr().map_err(io)?.port();
        let log = Arc::new(Mutex::new(StrictLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2, upstream) = (log.clone(), stop.clone(), upstream.to_string());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (log, upstream) = (log2.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &upstream, &log);
                });
            }
        });
        Ok(StrictProxy {
            port,
            log,
            stop,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`: what `[sink] endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("http://{HOST}:{}", self.port)
    }

    /// A copy of what was seen so far.
    pub fn log(&self) -> StrictLog {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for StrictProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect((HOST, self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP message: the start line, the headers (name, value) and the whole body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        let h = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        h.map(|(_, v)| v.as_str())
    }

    /// Head and body with a Content-Length and no hop-by-hop headers.
    fn to_bytes(&self, connection: &str) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (n, v) in &self.headers {
            let hop = [
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
            ];
            if !hop.iter().any(|h| n.eq_ignore_ascii_case(h)) {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reads one message; `None` at a clean end of the stream.
fn read_message(r: &mut impl BufRead, is_response: bool) -> std::io::Result<Option<Message>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let start = start.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut m = Message {
        start,
        headers,
        body: Vec::new(),
    };
    let status: u16 = m
        .start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = m
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|e| std::io::Error::other(format!("bad chunk size: {e}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            m.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = m.header("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        m.body = vec![0; len];
        r.read_exact(&mut m.body)?;
    } else if is_response && !(status == 204 || status == 304 || (100..200).contains(&status)) {
        r.read_to_end(&mut m.body)?;
    }
    Ok(Some(m))
}

fn serve(conn: TcpStream, upstream: &str, log: &Mutex<StrictLog>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    while let Some(request) = read_message(&mut reader, false)? {
        let answer = match inspect(&request, log) {
            Some(refusal) => refusal,
            None => forward(&request, upstream)?,
        };
        writer.write_all(&answer.to_bytes("keep-alive"))?;
    }
    Ok(())
}

fn forward(request: &Message, upstream: &str) -> std::io::Result<Message> {
    let up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut w = up.try_clone()?;
    w.write_all(&request.to_bytes("close"))?;
    let mut r = BufReader::new(up);
    read_message(&mut r, true)?
        .ok_or_else(|| std::io::Error::other("the emulator closed the connection"))
}

/// Records the request; returns BigQuery's refusal for DML on a table with streamed rows.
fn inspect(request: &Message, log: &Mutex<StrictLog>) -> Option<Message> {
    let mut parts = request.start.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let path = target.split('?').next().unwrap_or(target);
    let body: Json = serde_json::from_slice(&request.body).unwrap_or(Json::Null);
    let mut log = log.lock().unwrap();
    if method == "POST" && path.ends_with("/insertAll") {
        let table = path.rsplit('/').nth(1).unwrap_or_default().to_string();
        let rows = body["rows"].as_array().map_or(0, Vec::len) as u64;
        *log.streamed_rows.entry(table).or_default() += rows;
        return None;
    }
    if path.starts_with("/upload/") && method == "POST" {
        // A multipart body is not JSON; the destination is in its first part.
        let text = String::from_utf8_lossy(&request.body);
        let table = text
            .split("\"tableId\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or("?")
            .to_string();
        *log.load_jobs.entry(table).or_default() += 1;
        return None;
    }
    let sql = if method == "POST" && path.ends_with("/queries") {
        body["query"].as_str()
    } else if method == "POST" && path.ends_with("/jobs") {
        if let Some(t) = body["configuration"]["load"]["destinationTable"]["tableId"].as_str() {
            *log.load_jobs.entry(t.to_string()).or_default() += 1;
        }
        body["configuration"]["query"]["query"].as_str()
    } else {
        None
    }?;
    log.queries.push(sql.to_string());
    let streamed: BTreeSet<&str> = log.streamed_rows.keys().map(String::as_str).collect();
    let hit = dml_targets(sql)
        .into_iter()
        .chain(column_drop_targets(sql))
        .find(|t| streamed.contains(t.as_str()))?;
    log.violations.push((hit.clone(), sql.to_string()));
    Some(refusal(&hit))
}

/// The tables (last name component) that UPDATE, DELETE, MERGE or TRUNCATE statements in
/// `sql` write to. Words inside string literals are skipped; `UPDATE SET` and `THEN DELETE`
/// inside a MERGE are followed by no table name and so add nothing that could match.
pub fn dml_targets(sql: &str) -> Vec<String> {
    let tokens = tokens(sql);
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let skip = match t.to_ascii_uppercase().as_str() {
            "UPDATE" => 0,
            "DELETE" | "MERGE" => {
                let next = tokens.get(i + 1).map(|s| s.to_ascii_uppercase());
                usize::from(next.as_deref() == Some("FROM") || next.as_deref() == Some("INTO"))
            }
            "TRUNCATE" => usize::from(
                tokens
                    .get(i + 1)
                    .is_some_and(|s| s.eq_ignore_ascii_case("TABLE")),
            ),
            _ => continue,
        };
        if let Some(name) = tokens.get(i + 1 + skip) {
            let name = name.trim_matches('`');
            out.push(name.rsplit('.').next().unwrap_or(name).to_string());
        }
    }
    out
}

/// The tables (last name component) that `ALTER TABLE ... DROP COLUMN` statements in `sql`
/// change.
pub fn column_drop_targets(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for statement in sql.split(';') {
        let t: Vec<String> = tokens(statement)
            .iter()
            .map(|w| w.to_ascii_uppercase())
            .collect();
        if t.len() < 3 || t[0] != "ALTER" || t[1] != "TABLE" {
            continue;
        }
        let at = if t[2] == "IF" { 4 } else { 2 };
        let drops = t.windows(2).any(|w| w[0] == "DROP" && w[1] == "COLUMN");
        if let (true, Some(name)) = (drops, tokens(statement).get(at)) {
            let name = name.trim_matches('`');
            out.push(name.rsplit('.').next().unwrap_or(name).to_string());
        }
    }
    out
}

/// Words, dotted names and backquoted names of `sql`; string literals and punctuation are
/// dropped.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // A string literal, with backslash escapes.
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '`' => {
                cur.push(c);
                for d in chars.by_ref() {
                    cur.push(d);
                    if d == '`' {
                        break;
                    }
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' => cur.push(c),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The answer real BigQuery gives for DML over rows in the streaming buffer.
fn refusal(table: &str) -> Message {
    let message = format!(
        "UPDATE or DELETE statement over table {table} would affect rows in the streaming \
         buffer, which is not supported"
    );
    let body = json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT",
        "errors": [{"reason": "invalidQuery", "message": message, "domain": "global"}]}});
    Message {
        start: "HTTP/1.1 400 Bad Request".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tables_losing_a_column() {
        let sql = "ALTER TABLE `p.d.a_staging` ADD COLUMN IF NOT EXISTS `b` STRING;\n\
                   ALTER TABLE `p.d.a` DROP COLUMN IF EXISTS `c`; alter table if exists d.e \
                   drop column f; SELECT 'ALTER TABLE x DROP COLUMN y'";
        assert_eq!(column_drop_targets(sql), vec!["a", "e"]);
    }

    #[test]
    fn finds_the_tables_dml_writes_and_nothing_else() {
        let script = "BEGIN TRANSACTION;\nSELECT IF(x = 'DELETE FROM `p.d.a_log`', 1, 0);\n\
                      DELETE FROM `p.d.a_log` WHERE _metadata_tx > 3;\n\
                      MERGE `p.d.b` t USING (SELECT * FROM `p.d.b_stage`) s ON t.id = s.id \
                      WHEN MATCHED AND NOT s._live THEN DELETE WHEN MATCHED THEN UPDATE SET v = s.v;\n\
                      UPDATE `p.d._tidewater_state` SET tx_ordinal = 4 WHERE name = 'x';\n\
                      INSERT INTO `p.d.c_log` SELECT * FROM `p.d.c_stage`;\n\
                      TRUNCATE TABLE p.d.e; delete d WHERE TRUE; MERGE INTO f USING g ON TRUE \
                      WHEN NOT MATCHED THEN INSERT ROW";
        assert_eq!(
            dml_targets(script),
            vec![
                "a_log",
                "b",
                "WHEN",
                "SET",
                "_tidewater_state",
                "e",
                "d",
                "f"
            ]
        );
    }
}
