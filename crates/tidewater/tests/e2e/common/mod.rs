//! End-to-end test rig: a throwaway PostgreSQL, a config file, and the real `tidewater`
//! binary started, stopped (SIGTERM) or killed (SIGKILL) as a separate process.
#![allow(dead_code)]

pub mod bq;
pub mod http;
pub mod tls;
pub mod workload;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidewater_duckdb::duckdb::{AccessMode, Config, Connection};
use tidewater_harness::{
    free_port, wait_until, MariaDbOptions, MariaDbServer, PgOptions, PgServer,
};

pub const SLOT: &str = "tidewater";
/// What `run` logs once the chunked initial snapshot is done and the replica is
/// transaction-consistent (PostgreSQL into DuckDB).
pub const COPY_FINISHED: &str = "every copy finished";
/// The MariaDB database the MySQL rigs replicate (`shop.*`).
pub const MY_DB: &str = "shop";

/// The source server of a rig.
pub enum Src {
    Pg(PgServer),
    My(MariaDbServer),
}

pub struct Rig {
    pub src: Src,
    /// The replica schema queries run in (`public`, or the MariaDB database).
    pub schema: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
    child: Option<Child>,
    starts: usize,
    /// Length of the log when the current run started.
    log_mark: usize,
    /// Set by [`Rig::use_bigquery`]: the replica is in this emulator, not in `db`.
    pub bq: Option<bq::BqTarget>,
}

impl Rig {
    /// A source database prepared with `setup_sql`, and a config replicating `public.*`.
    pub fn new(setup_sql: &str) -> Rig {
        Rig::with_server(setup_sql, PgOptions::default(), "")
    }

    /// A rig whose server starts with `options` and whose source URL ends with `url_suffix`
    /// (e.g. `?sslmode=require`).
    pub fn with_server(setup_sql: &str, options: PgOptions, url_suffix: &str) -> Rig {
        let pg = PgServer::start_with(options).expect("start PostgreSQL");
        pg.psql("postgres", setup_sql).expect("setup SQL");
        let source = format!(
            "type = \"postgres\"\nurl = \"{}{url_suffix}\"\ntables = [\"public.*\"]",
            pg.url("postgres")
        );
        Rig::with_source(Src::Pg(pg), "public", &source)
    }

    /// A throwaway MariaDB (row binlog, GTIDs) with database `shop` prepared with
    /// `setup_sql`, and a config replicating `shop.*`.
    pub fn mysql(setup_sql: &str) -> Rig {
        Rig::mysql_with(setup_sql, MariaDbOptions::default(), |my| my.url(MY_DB))
    }

    /// [`Rig::mysql`] with server `options` and the source URL that `url` gives.
    pub fn mysql_with(
        setup_sql: &str,
        options: MariaDbOptions,
        url: impl Fn(&MariaDbServer) -> String,
    ) -> Rig {
        let my = MariaDbServer::start_with(options).expect("start MariaDB");
        my.create_database(MY_DB).expect("create database");
        my.sql(MY_DB, setup_sql).expect("setup SQL");
        let source = format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = [\"{MY_DB}.*\"]\nserver_id = 77",
            url(&my)
        );
        Rig::with_source(Src::My(my), MY_DB, &source)
    }

    fn with_source(src: Src, schema: &str, source_toml: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("replica.duckdb");
        let config = dir.path().join("tidewater.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\n{source_toml}\n\n[sink]\ntype = \"duckdb\"\npath = {:?}\n\n[apply]\nflush_interval_ms = 50\n",
                db.display().to_string()
            ),
        )
        .unwrap();
        Rig {
            src,
            schema: schema.to_string(),
            dir,
            config,
            db,
            child: None,
            starts: 0,
            log_mark: 0,
            bq: None,
        }
    }

    /// Replicates into a throwaway BigQuery emulator instead of the DuckDB file.
    pub fn use_bigquery(&mut self) {
        self.use_bigquery_merging_every(bq::MERGE_INTERVAL_MS);
    }

    pub fn use_bigquery_merging_every(&mut self, merge_interval_ms: u64) {
        let mut target = bq::BqTarget::start();
        target.merge_interval_ms = merge_interval_ms;
        let config = std::fs::read_to_string(&self.config).unwrap();
        let (source, rest) = config.split_once("[sink]").unwrap();
        let apply = &rest[rest.find("[apply]").unwrap()..];
        let text = format!("{source}{}\n{apply}", target.sink_toml());
        std::fs::write(&self.config, text).unwrap();
        self.bq = Some(target);
    }

    pub fn bq(&self) -> &bq::BqTarget {
        self.bq.as_ref().expect("a BigQuery rig")
    }

    /// Adds `[http] listen` on a free loopback port to the config (every later start serves
    /// its `/metrics` there); returns the address.
    pub fn listen_http(&self) -> String {
        use std::io::Write;
        let addr = format!("127.0.0.1:{}", free_port());
        let mut f = OpenOptions::new().append(true).open(&self.config).unwrap();
        writeln!(f, "\n[http]\nlisten = \"{addr}\"").unwrap();
        addr
    }

    /// SIGKILL in the middle of the stream: once the current run has applied streamed changes
    /// to `table` (counted by its own `/metrics` on `addr`, so after this start), and while
    /// `writing()` says the source workload is still writing (changes are still to come).
    /// Returns how many changes the run had applied. Panics when the moment cannot be reached.
    #[track_caller]
    pub fn kill9_mid_stream(&mut self, addr: &str, table: &str, writing: impl Fn() -> bool) -> u64 {
        let mut applied = 0;
        wait_until(
            Duration::from_secs(120),
            &format!("this run to apply streamed changes to {table}"),
            || {
                applied = streamed_changes(addr, table);
                applied > 0 || !writing()
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        assert!(
            applied > 0 && writing(),
            "the workload ended before this run applied a change to {table}: the kill would \
             not land mid-stream; make the workload longer"
        );
        self.kill9();
        applied
    }

    /// `kills` times: kill -9 mid-stream ([`Rig::kill9_mid_stream`]) while `workload` writes
    /// to `table`, then start again.
    #[track_caller]
    pub fn kill9_mid_stream_and_restart(
        &mut self,
        addr: &str,
        table: &str,
        kills: usize,
        workload: &workload::Workload,
    ) {
        for kill in 0..kills {
            let applied = self.kill9_mid_stream(addr, table, || workload.writing());
            eprintln!("kill {kill}: mid-stream, after this run applied {applied} changes");
            self.start();
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("run.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// Waits until the log holds `needle` at least `times` times (every run's log).
    pub fn wait_logged(&self, needle: &str, times: usize, timeout: Duration) {
        wait_until(timeout, needle, || {
            self.log().matches(needle).count() >= times
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    /// Starts `run` with extra environment variables (e.g. `TIDEWATER_FAULT`).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "already running");
        self.log_mark = self.log().len();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,pg_walstream=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tidewater run");
        self.child = Some(child);
        self.starts += 1;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits until the current run exits by itself; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let mut status = None;
        wait_until(timeout, "tidewater to exit", || {
            status = child.try_wait().unwrap();
            status.is_some()
        })
        .unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("{e}\n{}", self.log())
        });
        status.unwrap()
    }

    /// SIGTERM, then the process must exit 0 within the deadline.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let mut status = None;
        wait_until(
            Duration::from_secs(60),
            "tidewater to exit after SIGTERM",
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        assert!(
            status.unwrap().success(),
            "run exited with {status:?}\n{}",
            self.log()
        );
    }

    pub fn pg(&self) -> &PgServer {
        match &self.src {
            Src::Pg(pg) => pg,
            Src::My(_) => panic!("not a PostgreSQL rig"),
        }
    }

    pub fn my(&self) -> &MariaDbServer {
        match &self.src {
            Src::My(my) => my,
            Src::Pg(_) => panic!("not a MariaDB rig"),
        }
    }

    /// Restarts the source server (same data, same port).
    pub fn restart_source(&mut self) {
        match &mut self.src {
            Src::Pg(pg) => pg.restart().expect("restart PostgreSQL"),
            Src::My(my) => my.restart().expect("restart MariaDB"),
        }
    }

    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        match &self.src {
            Src::Pg(pg) => pg.psql("postgres", sql).map_err(|e| e.to_string()),
            Src::My(my) => my.sql(MY_DB, sql).map_err(|e| e.to_string()),
        }
    }

    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// MariaDB: rotates the binlog and purges every older file (MariaDB keeps a file until
    /// InnoDB has checkpointed past it, so this repeats until the oldest file is the current).
    pub fn purge_binlogs(&self) {
        let first = |rig: &Rig| {
            rig.sql("SHOW BINARY LOGS")
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        };
        let before = first(self);
        wait_until(
            Duration::from_secs(30),
            "the old binlog files to be purged",
            || {
                self.sql("FLUSH BINARY LOGS");
                let current = self.sql("SHOW MASTER STATUS");
                let current = current.split('\t').next().unwrap_or("").to_string();
                self.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
                first(self) != before && first(self).starts_with(&current)
            },
        )
        .unwrap();
    }

    pub fn confirmed_flush_lsn(&self) -> String {
        self.sql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .trim()
        .to_string()
    }

    /// Waits until the replica holds every change written to the source so far.
    pub fn wait_caught_up(&mut self, timeout: Duration) {
        match &self.src {
            Src::Pg(_) => self.wait_slot_caught_up(timeout),
            Src::My(_) => self.wait_binlog_caught_up(timeout),
        }
    }

    /// Panics with the log when the current run has exited; false until it streams.
    fn running_and_streaming(&mut self) -> bool {
        let log = self.log();
        if let Some(c) = self.child.as_mut() {
            assert!(
                c.try_wait().unwrap().is_none(),
                "tidewater exited early:\n{log}"
            );
            // The current run must be streaming, not only an earlier one.
            return log
                .get(self.log_mark..)
                .is_some_and(|l| l.contains(": streaming "));
        }
        true
    }

    /// MariaDB: the position `run` publishes (every 2 s) reaches the server's GTID position.
    /// (Every transaction of these tests changes a replicated table.)
    fn wait_binlog_caught_up(&mut self, timeout: Duration) {
        let target = format!(
            "mariadb-gtid:{}",
            self.sql("SELECT @@gtid_binlog_pos").trim()
        );
        let result = wait_until(
            timeout,
            "the replica to reach the source's GTID position",
            || {
                if !self.running_and_streaming() {
                    return false;
                }
                // MariaDB into DuckDB copies the tables in chunks while streaming.
                if self.copy_unfinished() {
                    return false;
                }
                self.committed_position()
                    .is_some_and(|p| gtid_reached(&p, &target))
            },
        );
        result.unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    /// The position the replica has committed: from BigQuery's state table, or from the
    /// status `run` publishes (every 2 s) next to the DuckDB file.
    fn committed_position(&self) -> Option<String> {
        if let Some(bq) = &self.bq {
            return bq.state().map(|(position, _)| position);
        }
        // Beside the replica, wherever the test moved it.
        let status = PathBuf::from(format!("{}.status.json", self.db.display()));
        let text = std::fs::read_to_string(status).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["report"]["position"].as_str().map(str::to_string)
    }

    /// Waits until the slot confirms everything written so far: tidewater confirms only what
    /// DuckDB has committed, so this means the replica holds every change up to now.
    fn wait_slot_caught_up(&mut self, timeout: Duration) {
        let target = self.sql("SELECT pg_current_wal_lsn()").trim().to_string();
        let query = format!(
            "SELECT coalesce(confirmed_flush_lsn >= '{target}'::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        );
        let result = wait_until(
            timeout,
            "the slot to confirm the current WAL position",
            || {
                if !self.running_and_streaming() {
                    return false;
                }
                // A fresh slot confirms its start before the snapshot is committed (seen
                // with DuckDB too: the sql_endpoint test read an empty replica under load).
                if self.committed_position().is_none_or(|p| p.is_empty()) {
                    return false;
                }
                // DuckDB copies the tables in chunks while streaming: the slot confirms the
                // stream's position before the copy is done.
                if self.copy_unfinished() {
                    return false;
                }
                self.try_sql(&query)
                    .map(|s| s.trim() == "t")
                    .unwrap_or(false)
            },
        );
        result.unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    /// Replicas copy in chunks while streaming: whether this rig's own run (its log)
    /// has not finished the initial copy yet. (A test that starts `run` itself waits on its
    /// own terms.) The log line is written when the source sends the last copy marking, which
    /// under load comes before the chunks ahead of it commit, and the chunks do not move the
    /// stored position: the status `run` publishes beside the replica (from what is
    /// committed) must also call the replica consistent.
    fn copy_unfinished(&self) -> bool {
        self.child.is_some() && !(self.log().contains(COPY_FINISHED) && self.committed_consistent())
    }

    /// The committed replica is consistent, with its tables copied in chunks: BigQuery's
    /// copy progress says so, or the status `run` publishes beside a DuckDB replica (a status
    /// published before the copy began lists no copy).
    fn committed_consistent(&self) -> bool {
        if let Some(bq) = &self.bq {
            return bq.copies_consistent();
        }
        let status = PathBuf::from(format!("{}.status.json", self.db.display()));
        let Ok(text) = std::fs::read_to_string(status) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let live = &v["live"];
        let copied = live["tables"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| !t["copy"].is_null()));
        live["consistent"] == true && copied
    }

    /// The replica, opened read-only (tidewater must be stopped).
    pub fn replica(&self) -> Connection {
        let cfg = Config::default().access_mode(AccessMode::ReadOnly).unwrap();
        let conn = Connection::open_with_flags(&self.db, cfg).expect("open replica");
        conn.execute_batch(&format!("SET search_path = '{}'", self.schema))
            .unwrap();
        conn
    }

    /// Rows of `query` on the source, one text line per row.
    pub fn source_lines(&self, query: &str) -> Vec<String> {
        self.sql(query).lines().map(str::to_string).collect()
    }

    pub fn replica_lines(&self, query: &str) -> Vec<String> {
        let conn = self.replica();
        let mut stmt = conn
            .prepare(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let rows = stmt
            .query_map([], |r| r.get::<_, Option<String>>(0))
            .unwrap();
        rows.map(|r| r.unwrap().unwrap_or_default()).collect()
    }

    /// Same query on both sides (it must produce one text column) must give the same rows.
    pub fn assert_same(&self, query: &str) {
        let src = self.source_lines(query);
        let rep = self.replica_lines(query);
        assert_eq!(src.len(), rep.len(), "row count differs for {query}");
        for (i, (s, r)) in src.iter().zip(&rep).enumerate() {
            assert_eq!(s, r, "row {i} differs for {query}");
        }
    }

    pub fn count(&self, query: &str) -> i64 {
        self.replica()
            .query_row(query, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }
}

/// Insert, update and delete changes to `table` (`schema.name`) that the run serving `addr`
/// has applied, from its `/metrics` (0 while nothing answers).
pub fn streamed_changes(addr: &str, table: &str) -> u64 {
    let Ok(m) = http::http(addr, "GET", "/metrics", None) else {
        return 0;
    };
    ["insert", "update", "delete"]
        .iter()
        .filter_map(|kind| {
            let sample =
                format!("tidewater_changes_applied_total{{table=\"{table}\",kind=\"{kind}\"}}");
            http::metric(&m.body, &sample)
        })
        .sum::<f64>() as u64
}

/// Waits until the run serving `addr` has committed that every copied table is consistent
/// (`tidewater_replica_consistent 1` on `/metrics`, published once the commit that marks the
/// last table is done; the log line comes earlier, when the source sends it).
pub fn wait_replica_consistent(rig: &Rig, addr: &str) {
    tidewater_harness::wait_until(
        Duration::from_secs(120),
        "the replica to be committed consistent",
        || {
            http::http(addr, "GET", "/metrics", None)
                .ok()
                .and_then(|m| http::metric(&m.body, "tidewater_replica_consistent"))
                == Some(1.0)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
}

/// Rows of the initial snapshot or of a joining table that the run serving `addr` has
/// copied into `table`, from its `/metrics` (0 while nothing answers).
pub fn snapshot_rows_copied(addr: &str, table: &str) -> u64 {
    let Ok(m) = http::http(addr, "GET", "/metrics", None) else {
        return 0;
    };
    http::metric(
        &m.body,
        &format!("tidewater_snapshot_rows_copied{{table=\"{table}\"}}"),
    )
    .unwrap_or(0.0) as u64
}

/// Whether MariaDB position `p` (`mariadb-gtid:d-s-n,...`) includes every domain's sequence
/// number of `target`.
fn gtid_reached(p: &str, target: &str) -> bool {
    let parse = |s: &str| -> Vec<(u64, u64)> {
        s.trim_start_matches("mariadb-gtid:")
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| {
                let parts: Vec<u64> = g.split('-').map(|x| x.parse().unwrap()).collect();
                (parts[0], parts[2])
            })
            .collect()
    };
    let have = parse(p);
    parse(target)
        .iter()
        .all(|(d, n)| have.iter().any(|(hd, hn)| hd == d && hn >= n))
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The password tests put in source URLs; it must never appear in any output.
pub const PASSWORD: &str = "supersecret";
/// Commands that must fail do so well within this; past it they are killed and the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `tidewater <args> --config <config>`; returns the exit code and stdout+stderr.
pub fn run_cli(args: &[&str], config: &Path) -> (i32, String) {
    run_tidewater(args, config, &[], "info,pg_walstream=warn", DEADLINE)
}

/// Runs `tidewater <args> --config <config> <extra>` with `RUST_LOG=<log>`, killed after
/// `deadline`; returns the exit code and stdout+stderr.
pub fn run_tidewater(
    args: &[&str],
    config: &Path,
    extra: &[&str],
    log: &str,
    deadline: Duration,
) -> (i32, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("out.txt");
    let out = File::create(&out_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("RUST_LOG", log)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn tidewater");
    let mut status = None;
    let waited = wait_until(deadline, "tidewater to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    if let Err(e) = waited {
        panic!("tidewater {args:?}: {e}\n{output}");
    }
    (status.unwrap().code().unwrap_or(-1), output)
}

#[track_caller]
pub fn expect(result: (i32, String), code: i32, needles: &[&str]) -> String {
    let (got, output) = result;
    assert_eq!(got, code, "exit code; output:\n{output}");
    for n in needles {
        assert!(output.contains(n), "output lacks {n:?}:\n{output}");
    }
    assert!(
        !output.contains(PASSWORD),
        "output leaks the password:\n{output}"
    );
    output
}
