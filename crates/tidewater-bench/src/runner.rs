//! The `tidewater` binary under test, run as a subprocess exactly as a user
//! runs it: a config file, `tidewater run`, SIGTERM to stop, `tidewater verify`.
//! Progress is read from its live `GET /metrics` (and `POST /query`) on a
//! loopback port of its own.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tidewater_harness::{free_port, wait_until};

use crate::error::{BenchError, Result};
use crate::http;

/// `[apply]` settings that differ from tidewater's defaults.
#[derive(Debug, Clone, Default)]
pub struct Apply {
    pub flush_interval_ms: Option<u64>,
    pub log_tables: Option<bool>,
    /// `large_transaction = "split"` with this `split_rows`.
    pub split_rows: Option<usize>,
    /// `[sink] memory_limit` (DuckDB), for this run only.
    pub memory_limit: Option<&'static str>,
}

/// Where a run replicates to.
#[derive(Debug, Clone, Default)]
pub enum Sink {
    /// `<dir>/replica.duckdb`.
    #[default]
    DuckDb,
    /// A dataset of a BigQuery emulator (`[sink] endpoint`; the sink creates the dataset).
    BigQuery {
        endpoint: String,
        project: String,
        dataset: String,
    },
}

impl Sink {
    /// The `[sink]` lines of a tidewater config writing into `dir`.
    fn toml(&self, dir: &Path) -> String {
        match self {
            Sink::DuckDb => format!(
                "type = \"duckdb\"\npath = {:?}\n",
                dir.join("replica.duckdb").display().to_string()
            ),
            Sink::BigQuery {
                endpoint,
                project,
                dataset,
            } => format!(
                "type = \"bigquery\"\nendpoint = {endpoint:?}\nproject = {project:?}\ndataset = {dataset:?}\n"
            ),
        }
    }

    /// Whether the sink copies in chunks while streaming, reporting each table's progress on
    /// `/metrics`: both do (BigQuery since 3f4725a; before, it committed its snapshot before
    /// it streamed, and this bench then waits on its rows).
    fn copies_in_chunks(&self) -> bool {
        matches!(self, Sink::DuckDb | Sink::BigQuery { .. })
    }
}

/// The config sections a `--set` line may add a key to.
pub const SETTING_SECTIONS: [&str; 4] = ["source", "sink", "apply", "snapshot"];

/// A `--set` line for every tidewater.toml of the run: `SECTION.KEY = VALUE` with a section
/// of [`SETTING_SECTIONS`]; `None` for any other form.
pub fn setting_line(setting: &str) -> Option<(&str, &str)> {
    let (section, line) = setting.split_once('.')?;
    (SETTING_SECTIONS.contains(&section) && line.contains('=')).then_some((section, line.trim()))
}

pub struct Tidewater {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    child: Option<Child>,
    started: SystemTime,
    chunked: bool,
}

impl Tidewater {
    /// Writes `<dir>/tidewater.toml` for `source_toml` into `sink`.
    /// `settings`: `--set` lines (see [`setting_line`]), written last in their section.
    pub fn new(
        bin: &Path,
        dir: &Path,
        source_toml: &str,
        sink: &Sink,
        apply: &Apply,
        settings: &[String],
    ) -> Result<Tidewater> {
        std::fs::create_dir_all(dir)
            .map_err(BenchError::io(format!("creating {}", dir.display())))?;
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let lines = |of: &str| -> String {
            let mut out = String::new();
            for (section, line) in settings.iter().filter_map(|s| setting_line(s)) {
                if section == of {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        };
        // `[snapshot]` only when set: builds from before the chunked copy refuse the section.
        let snapshot = match lines("snapshot") {
            l if l.is_empty() => String::new(),
            l => format!("\n[snapshot]\n{l}"),
        };
        let memory_limit = apply
            .memory_limit
            .map_or(String::new(), |l| format!("memory_limit = \"{l}\"\n"));
        let mut toml = format!(
            "[source]\n{source_toml}{}\n[sink]\n{}{}{memory_limit}{snapshot}\n[apply]\n{}",
            lines("source"),
            sink.toml(dir),
            lines("sink"),
            lines("apply"),
        );
        if let Some(ms) = apply.flush_interval_ms {
            toml.push_str(&format!("flush_interval_ms = {ms}\n"));
        }
        if let Some(on) = apply.log_tables {
            toml.push_str(&format!("log_tables = {on}\n"));
        }
        if let Some(rows) = apply.split_rows {
            toml.push_str(&format!(
                "large_transaction = \"split\"\nsplit_rows = {rows}\n"
            ));
        }
        toml.push_str(&format!("\n[http]\nlisten = \"{http}\"\n"));
        let config = dir.join("tidewater.toml");
        std::fs::write(&config, toml)
            .map_err(BenchError::io(format!("writing {}", config.display())))?;
        Ok(Tidewater {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("run.log"),
            http,
            child: None,
            started: SystemTime::now(),
            chunked: sink.copies_in_chunks(),
        })
    }

    /// Starts `tidewater run`; [`started`](Self::started) is the moment of the spawn.
    pub fn start(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(BenchError::io(format!("opening {}", self.log.display())))?;
        self.started = SystemTime::now();
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,pg_walstream=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(BenchError::io(format!("starting {}", self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Unix time of the last [`start`](Self::start), in seconds.
    pub fn started(&self) -> f64 {
        unix_seconds(self.started)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An error with the end of the log when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(BenchError::io("checking tidewater"))?,
            None => return Err(BenchError::Tidewater("not running".into())),
        };
        match exited {
            None => Ok(()),
            Some(status) => {
                self.child = None;
                Err(BenchError::Tidewater(format!(
                    "exited ({status}):\n{}",
                    self.log_tail()
                )))
            }
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The live `/metrics`; `None` while the endpoint is not up yet.
    pub fn metrics(&mut self) -> Result<Option<Metrics>> {
        self.check_alive()?;
        match http::get(self.http, "/metrics") {
            Ok(r) if r.status == 200 => Ok(Some(Metrics(r.body))),
            _ => Ok(None),
        }
    }

    /// `POST /query` against the live replica: the rows (at most `limit`).
    pub fn query(&mut self, sql: &str, limit: usize) -> Result<Vec<Vec<serde_json::Value>>> {
        self.check_alive()?;
        let body = serde_json::json!({ "sql": sql, "limit": limit }).to_string();
        let r = http::post_json(self.http, "/query", &body)?;
        let mut v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| {
            BenchError::Tidewater(format!("POST /query answered {}: {e}", r.status))
        })?;
        if r.status != 200 {
            return Err(BenchError::Tidewater(format!(
                "POST /query {sql:?}: {} {}",
                r.status, r.body
            )));
        }
        let rows = serde_json::from_value(v["rows"].take())
            .map_err(|e| BenchError::Tidewater(format!("POST /query rows: {e}")))?;
        Ok(rows)
    }

    /// `SELECT count(*)` of a replica table through `POST /query`.
    pub fn count(&mut self, table: &str) -> Result<u64> {
        let rows = self.query(&format!("SELECT count(*) FROM {table}"), 1)?;
        rows.first()
            .and_then(|r| r.first())
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| BenchError::Tidewater(format!("no count for {table}")))
    }

    /// Polls `SELECT count(*)` of `table` until it holds at least `rows` rows (a build that
    /// copies in chunks reports its copy done when it applies the last chunk, before that
    /// batch commits); returns the count and the seconds since the start.
    pub fn wait_rows(&mut self, table: &str, rows: u64, timeout: Duration) -> Result<(u64, f64)> {
        let mut seen = 0;
        wait_for(timeout, &format!("{table} to hold {rows} rows"), || {
            seen = self.count(table)?;
            Ok(seen >= rows)
        })
        .map_err(|e| self.with_log(e))?;
        Ok((seen, unix_seconds(SystemTime::now()) - self.started()))
    }

    /// Polls `/metrics` until `done` holds; returns the metrics that satisfied it.
    pub fn wait_metrics(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Metrics) -> bool,
    ) -> Result<Metrics> {
        let mut found = None;
        wait_for(timeout, what, || {
            Ok(match self.metrics()? {
                Some(m) if done(&m) => {
                    found = Some(m);
                    true
                }
                _ => false,
            })
        })
        .map_err(|e| self.with_log(e))?;
        Ok(found.expect("set when the wait succeeded"))
    }

    /// Waits for the phase `streaming` with the initial copy complete (see [`Metrics::copied`];
    /// a sink that does not copy in chunks turns `streaming` when its snapshot is committed);
    /// returns the seconds since the start.
    pub fn wait_streaming(&mut self, timeout: Duration) -> Result<f64> {
        let chunked = self.chunked;
        self.wait_metrics(
            timeout,
            "tidewater to finish its snapshot and stream",
            |m| m.phase() == Some("streaming") && (!chunked || m.copied()),
        )?;
        Ok(unix_seconds(SystemTime::now()) - self.started())
    }

    /// Peak resident memory so far (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        let pid = self
            .pid()
            .ok_or_else(|| BenchError::Tidewater("not running".into()))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(BenchError::io(format!("reading /proc/{pid}/status")))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| BenchError::Other(format!("no VmHWM in /proc/{pid}/status")))
    }

    /// SIGTERM, then it must exit 0.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(BenchError::io("sending SIGTERM to tidewater"))?;
        let mut status = None;
        let waited = wait_until(
            Duration::from_secs(120),
            "tidewater to exit after SIGTERM",
            || {
                status = child.try_wait().ok().flatten();
                status.is_some()
            },
        );
        if let Err(e) = waited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(self.with_log(e.into()));
        }
        match status {
            Some(s) if s.success() => Ok(()),
            s => Err(BenchError::Tidewater(format!(
                "run exited with {s:?}:\n{}",
                self.log_tail()
            ))),
        }
    }

    /// `tidewater verify` of the stopped replica; returns its duration. A difference is an error.
    pub fn verify(&self) -> Result<Duration> {
        let out = self.log.with_file_name("verify.log");
        let file = std::fs::File::create(&out).map_err(BenchError::io("creating verify.log"))?;
        let started = Instant::now();
        let status = Command::new(&self.bin)
            .args(["verify", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(BenchError::io("verify.log"))?)
            .stderr(file)
            .status()
            .map_err(BenchError::io("running tidewater verify"))?;
        let took = started.elapsed();
        if !status.success() {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            return Err(BenchError::Tidewater(format!(
                "verify failed ({status}):\n{text}"
            )));
        }
        Ok(took)
    }

    fn with_log(&self, e: BenchError) -> BenchError {
        match e {
            BenchError::Tidewater(_) => e,
            e => BenchError::Other(format!("{e}\ntidewater log:\n{}", self.log_tail())),
        }
    }
}

impl Drop for Tidewater {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The text of `GET /metrics` (Prometheus exposition format).
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the first sample whose name and labels start with `prefix`.
    pub fn value(&self, prefix: &str) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn phase(&self) -> Option<&str> {
        self.0.lines().find_map(|l| {
            l.strip_prefix("tidewater_phase{phase=\"")
                .and_then(|rest| rest.strip_suffix("\"} 1"))
        })
    }

    /// Whether the initial copy is complete. A build that copies in chunks while streaming
    /// (it has `tidewater_replica_consistent`) reports `streaming` before the source has sent
    /// its first copy progress, so every table's `tidewater_copy_done` must be present and 1,
    /// and the replica consistent. A build without it commits its snapshot before it streams.
    pub fn copied(&self) -> bool {
        let Some(consistent) = self.value("tidewater_replica_consistent ") else {
            return true;
        };
        let done: Vec<&str> = self
            .0
            .lines()
            .filter(|l| l.starts_with("tidewater_copy_done{"))
            .filter_map(|l| l.rsplit(' ').next())
            .collect();
        consistent == 1.0 && !done.is_empty() && done.iter().all(|v| *v == "1")
    }

    /// The source position the replica is committed at.
    pub fn position(&self) -> Option<&str> {
        self.0.lines().find_map(|l| {
            let rest = l.strip_prefix("tidewater_source_position_info{")?;
            let at = rest.find("position=\"")? + "position=\"".len();
            rest[at..].split('"').next()
        })
    }

    /// Cumulative bucket counts `(le, count)` of histogram `name`, `+Inf` last.
    pub fn histogram(&self, name: &str) -> Vec<(f64, u64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        self.0
            .lines()
            .filter_map(|l| {
                let (le, count) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect()
    }

    /// Unix time of the last batch commit.
    pub fn last_apply(&self) -> Option<f64> {
        self.value("tidewater_last_apply_timestamp_seconds ")
    }
}

/// Like `wait_until`, for a condition that can fail: the first error ends the wait.
pub fn wait_for(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let mut failure = None;
    wait_until(timeout, what, || match cond() {
        Ok(done) => done,
        Err(e) => {
            failure = Some(e);
            true
        }
    })?;
    failure.map_or(Ok(()), Err)
}

pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_phase_position_and_values_from_metrics() {
        let m = Metrics(
            "# HELP x\ntidewater_phase{phase=\"snapshot\"} 0\ntidewater_phase{phase=\"streaming\"} 1\n\
             tidewater_source_position_info{source_type=\"mysql\",position=\"mariadb-gtid:0-1-9\"} 1\n\
             tidewater_last_apply_timestamp_seconds 1700000000.25\n"
                .into(),
        );
        assert_eq!(m.phase(), Some("streaming"));
        assert_eq!(m.position(), Some("mariadb-gtid:0-1-9"));
        assert_eq!(m.last_apply(), Some(1_700_000_000.25));
        assert_eq!(Metrics(String::new()).phase(), None);
        let h =
            Metrics("x_bucket{le=\"0.5\"} 3\nx_bucket{le=\"+Inf\"} 4\nx_sum 1\nx_count 4\n".into());
        assert_eq!(h.histogram("x"), vec![(0.5, 3), (f64::INFINITY, 4)]);
    }

    #[test]
    fn the_copy_is_complete_when_every_table_is_copied_and_the_replica_consistent() {
        let m = |text: &str| Metrics(text.into());
        // A build without the chunked copy.
        assert!(m("tidewater_phase{phase=\"streaming\"} 1\n").copied());
        // Streaming before the first copy progress: no table listed yet.
        assert!(!m("# TYPE tidewater_copy_done gauge\ntidewater_replica_consistent 1\n").copied());
        let copying = "tidewater_copy_done{table=\"public.a\"} 1\n\
                       tidewater_copy_done{table=\"public.b\"} 0\ntidewater_replica_consistent 0\n";
        assert!(!m(copying).copied());
        let copied = "tidewater_copy_done{table=\"public.a\"} 1\n\
                      tidewater_copy_done{table=\"public.b\"} 1\ntidewater_replica_consistent 1\n";
        assert!(m(copied).copied());
    }

    #[test]
    fn settings_name_their_section() {
        assert_eq!(
            setting_line("snapshot.chunk_rows = 5000"),
            Some(("snapshot", "chunk_rows = 5000"))
        );
        assert_eq!(
            setting_line("sink.memory_limit = \"1GB\""),
            Some(("sink", "memory_limit = \"1GB\""))
        );
        assert_eq!(setting_line("http.listen = \"x\""), None);
        assert_eq!(setting_line("snapshot.chunk_rows"), None);
    }

    #[test]
    fn wait_for_stops_at_the_first_error() {
        let err = wait_for(Duration::from_secs(5), "x", || {
            Err(BenchError::Other("boom".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
    }
}
