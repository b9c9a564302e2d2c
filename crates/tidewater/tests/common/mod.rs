//! End-to-end test rig: a throwaway PostgreSQL, a config file, and the real `tidewater`
//! binary started, stopped (SIGTERM) or killed (SIGKILL) as a separate process.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidewater_duckdb::duckdb::{AccessMode, Config, Connection};
use tidewater_harness::{wait_until, PgOptions, PgServer};

pub const SLOT: &str = "tidewater";

pub struct Rig {
    pub pg: PgServer,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
    child: Option<Child>,
    starts: usize,
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
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("replica.duckdb");
        let config = dir.path().join("tidewater.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\ntype = \"postgres\"\nurl = \"{}{url_suffix}\"\ntables = [\"public.*\"]\n\n[sink]\ntype = \"duckdb\"\npath = {:?}\n\n[apply]\nflush_interval_ms = 50\n",
                pg.url("postgres"),
                db.display().to_string()
            ),
        )
        .unwrap();
        Rig {
            pg,
            dir,
            config,
            db,
            child: None,
            starts: 0,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("run.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,pg_walstream=warn")
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

    pub fn sql(&self, sql: &str) -> String {
        self.pg
            .psql("postgres", sql)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn confirmed_flush_lsn(&self) -> String {
        self.sql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .trim()
        .to_string()
    }

    /// Waits until the slot confirms everything written so far: tidewater confirms only what
    /// DuckDB has committed, so this means the replica holds every change up to now.
    pub fn wait_caught_up(&mut self, timeout: Duration) {
        let target = self.sql("SELECT pg_current_wal_lsn()").trim().to_string();
        let query = format!(
            "SELECT coalesce(confirmed_flush_lsn >= '{target}'::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        );
        let starts = self.starts;
        let log_path = self.log_path();
        let streaming = || {
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .matches("streaming slot=")
                .count()
        };
        let result = wait_until(
            timeout,
            "the slot to confirm the current WAL position",
            || {
                if let Some(c) = self.child.as_mut() {
                    assert!(
                        c.try_wait().unwrap().is_none(),
                        "tidewater exited early:\n{}",
                        std::fs::read_to_string(self.dir.path().join("run.log"))
                            .unwrap_or_default()
                    );
                    // The current run must be streaming, not only an earlier one.
                    if streaming() < starts {
                        return false;
                    }
                }
                self.pg
                    .psql("postgres", &query)
                    .map(|s| s.trim() == "t")
                    .unwrap_or(false)
            },
        );
        result.unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    /// The replica, opened read-only (tidewater must be stopped).
    pub fn replica(&self) -> Connection {
        let cfg = Config::default().access_mode(AccessMode::ReadOnly).unwrap();
        let conn = Connection::open_with_flags(&self.db, cfg).expect("open replica");
        conn.execute_batch("SET search_path = 'public'").unwrap();
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

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
