//! The README's "Replicate your own PostgreSQL / MySQL in five steps" run as written (issue
//! 18): a new user following only the README gets from a stock server to a verified replica.
//!
//! The code blocks of those steps are marked in README.md with an info string
//! `quickstart:<name>` (```` ```sql quickstart:postgres-grants ````) and read from it here, so a
//! wrong grant, setting or config key in the README fails this test. What the test supplies
//! itself, and nothing more:
//! - the throwaway server (from the harness) standing in for "your database": a database
//!   `shop` whose tables the role `shop_owner` owns (PostgreSQL) or a database `shop`
//!   (MariaDB), with rows; it is started with the stock setting the README changes
//!   (`wal_level` from the files, MariaDB without a binlog) and restarted where the README says
//!   "restart";
//! - the SQL blocks run as the superuser (psql / mariadb client); the MariaDB option file's
//!   `key = value` lines become `mariadbd --key=value` arguments;
//! - in the config, only addresses are substituted: the server's port for `5432` / `3306`,
//!   free ports for `[http]`'s `9187` and `[sql]`'s `5433` (tests run in parallel);
//!   the password variables are set to the README's `change-me`;
//! - `tidewater` in the `check` and `run` lines is the binary under test.
//!
//! `check` must pass without a warning other than the example database's keyless table, and
//! `tidewater verify` (the README's Operate step) must exit 0 after a writer has changed the
//! source under the running pipeline. Breaking a grant of the README fails it (`check`).

use crate::common;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http::http;
use tidewater_harness::{
    free_port, wait_until, MariaDbOptions, MariaDbServer, PgOptions, PgServer,
};

const T: Duration = Duration::from_secs(120);
const PASSWORD: &str = "change-me";

/// The README's `quickstart:<name>` code blocks, by name.
fn readme_blocks() -> HashMap<String, String> {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
    let text = std::fs::read_to_string(path).expect("read README.md");
    let mut blocks = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match current.as_mut() {
            Some((name, body)) if line.trim_start().starts_with("```") => {
                blocks.insert(std::mem::take(name), std::mem::take(body));
                current = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {
                let Some(info) = line.trim_start().strip_prefix("```") else {
                    continue;
                };
                if let Some(name) = info
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("quickstart:"))
                {
                    current = Some((name.to_string(), String::new()));
                }
            }
        }
    }
    for name in [
        "postgres-settings",
        "postgres-grants",
        "mysql-settings",
        "mysql-grants",
        "config",
        "mysql-source",
        "check",
        "run",
    ] {
        assert!(
            blocks.contains_key(name),
            "README.md has no ```quickstart:{name} block"
        );
    }
    blocks
}

/// `text` with `from` replaced by `to`; `from` must occur (a README change that drops a
/// placeholder must not go unnoticed).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "README block lacks {from:?}:\n{text}");
    text.replace(from, to)
}

/// The config of step 3 with only the addresses substituted; `mysql_port` set: the MySQL
/// `[source]` block in place of the PostgreSQL one.
fn config(
    blocks: &HashMap<String, String>,
    pg_port: Option<u16>,
    mysql_port: Option<u16>,
) -> String {
    let mut text = blocks["config"].clone();
    if let Some(port) = pg_port {
        text = substitute(&text, "127.0.0.1:5432", &format!("127.0.0.1:{port}"));
    }
    if let Some(port) = mysql_port {
        let sink = text.find("[sink]").expect("config has [sink]");
        let source = substitute(
            &blocks["mysql-source"],
            "127.0.0.1:3306",
            &format!("127.0.0.1:{port}"),
        );
        text = format!("{source}\n{}", &text[sink..]);
    }
    let text = substitute(
        &text,
        "127.0.0.1:9187",
        &format!("127.0.0.1:{}", free_port()),
    );
    substitute(
        &text,
        "127.0.0.1:5433",
        &format!("127.0.0.1:{}", free_port()),
    )
}

/// The one command of a `sh` block, as arguments: its comment cut off, `tidewater` first.
fn command_of(block: &str) -> Vec<String> {
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one command expected:\n{block}");
    let line = lines[0].split(" #").next().unwrap();
    assert!(
        !line.contains(['"', '\'', '$', '|', '>']),
        "a plain command expected: {line}"
    );
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    assert_eq!(words[0], "tidewater", "{line}");
    words[1..].to_vec()
}

/// The option file's `key = value` lines as `mariadbd --key=value` arguments.
fn server_options(ini: &str) -> Vec<String> {
    ini.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("key = value: {l}"));
            format!("--{}={}", k.trim(), v.trim())
        })
        .collect()
}

/// A user's working directory: the config file, the replica beside it, the password variable.
struct Workdir {
    dir: tempfile::TempDir,
    env: (&'static str, &'static str),
    http: String,
}

impl Workdir {
    fn new(config: String, env: (&'static str, &'static str)) -> Workdir {
        let dir = tempfile::tempdir().unwrap();
        let http = config
            .split("[http]")
            .nth(1)
            .and_then(|s| s.split('"').nth(1))
            .expect("[http] listen")
            .to_string();
        std::fs::write(dir.path().join("tidewater.toml"), config).unwrap();
        Workdir { dir, env, http }
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidewater"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("PGPASSWORD")
            .env_remove("MYSQL_PASSWORD")
            .env(self.env.0, self.env.1)
            .env("RUST_LOG", "info,pg_walstream=warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a `tidewater` command to its end; returns the exit code and stdout+stderr.
    fn cli(&self, args: &[String]) -> (i32, String) {
        let out = self.command(args).output().expect("run tidewater");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("run.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// `tidewater run`, killed if the test ends before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Steps 4 and 5 and the check of the result: `check` passes, `run` replicates while
/// `write` changes the source, `verify` finds the replica equal, SIGTERM ends `run` with 0.
fn check_run_verify(blocks: &HashMap<String, String>, work: &Workdir, write: impl Fn()) {
    let (code, out) = work.cli(&command_of(&blocks["check"]));
    assert_eq!(code, 0, "check failed:\n{out}");
    assert!(!out.contains("[FAIL]"), "{out}");
    // Clean, but for what the example database itself asks for: its keyless table.
    for warning in out.lines().filter(|l| l.contains("[warn]")) {
        assert!(warning.contains(".notes "), "{warning}\n{out}");
    }

    let log = File::create(work.log_path()).unwrap();
    let child = work
        .command(&command_of(&blocks["run"]))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tidewater run");
    let mut run = Running(child);
    wait_until(T, "run to stream (GET /health 200)", || {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "run exited:\n{}",
            work.log()
        );
        http(&work.http, "GET", "/health", None).is_ok_and(|h| h.status == 200)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", work.log()));
    write();

    let verify = ["verify", "--config", "tidewater.toml"].map(String::from);
    let (code, out) = work.cli(&verify);
    assert_eq!(code, 0, "verify:\n{out}\nrun log:\n{}", work.log());
    assert!(out.contains(": equal"), "{out}");
    assert!(
        !out.contains("audit_"),
        "an excluded table was replicated:\n{out}"
    );

    Command::new("kill")
        .args(["-TERM", &run.0.id().to_string()])
        .status()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(60), "run to stop after SIGTERM", || {
        status = run.0.try_wait().unwrap();
        status.is_some()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", work.log()));
    assert!(status.unwrap().success(), "{:?}\n{}", status, work.log());
}

/// "Your database": tables owned by `shop_owner`, one with many rows, one keyless with
/// `REPLICA IDENTITY FULL`, and one the config's `!public.audit_*` leaves out.
const PG_SHOP: &str = "
SET ROLE shop_owner;
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, tags text[]);
CREATE TABLE orders (id bigint PRIMARY KEY, customer int REFERENCES customers, amount numeric(10,2), at timestamptz DEFAULT now());
CREATE TABLE notes (customer int, note text);
ALTER TABLE notes REPLICA IDENTITY FULL;
CREATE TABLE audit_events (id serial PRIMARY KEY, what text);
INSERT INTO customers SELECT i, 'customer ' || i, ARRAY['t' || i % 3] FROM generate_series(1, 500) i;
INSERT INTO orders (id, customer, amount) SELECT i, 1 + i % 500, i * 1.25 FROM generate_series(1, 5000) i;
INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 50) i;
INSERT INTO audit_events (what) SELECT 'event ' || i FROM generate_series(1, 10) i;
";

const PG_WRITES: &str = "
SET ROLE shop_owner;
INSERT INTO orders (id, customer, amount) SELECT i, 1 + i % 500, i FROM generate_series(5001, 5200) i;
UPDATE orders SET amount = amount + 1 WHERE id % 7 = 0;
DELETE FROM orders WHERE id % 11 = 0;
UPDATE customers SET name = name || ' (vip)', tags = tags || ARRAY['vip'] WHERE id <= 20;
DELETE FROM notes WHERE customer <= 5;
INSERT INTO notes VALUES (1, 'again');
INSERT INTO audit_events (what) VALUES ('not replicated');
";

#[test]
fn readme_quick_start_replicates_a_postgres_database() {
    let blocks = readme_blocks();
    let mut pg = PgServer::start_with(PgOptions {
        wal_level_from_config: true,
        ..Default::default()
    })
    .expect("start PostgreSQL");
    assert_eq!(
        pg.psql("postgres", "SHOW wal_level").unwrap().trim(),
        "replica"
    );
    pg.psql(
        "postgres",
        "CREATE ROLE shop_owner; CREATE DATABASE shop OWNER shop_owner;",
    )
    .unwrap();
    pg.psql("shop", PG_SHOP).unwrap();

    // 1. Server settings, then the restart they ask for.
    pg.psql("postgres", &blocks["postgres-settings"])
        .expect("README step 1 (PostgreSQL)");
    pg.restart().unwrap();
    assert_eq!(
        pg.psql("postgres", "SHOW wal_level").unwrap().trim(),
        "logical"
    );
    // 2. The replication user.
    pg.psql("shop", &blocks["postgres-grants"])
        .expect("README step 2 (PostgreSQL)");
    // 3. The config.
    let work = Workdir::new(
        config(&blocks, Some(pg.port()), None),
        ("PGPASSWORD", PASSWORD),
    );
    // 4., 5. and the result.
    check_run_verify(&blocks, &work, || {
        pg.psql("shop", PG_WRITES).unwrap();
    });
}

const MY_SHOP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name varchar(100) NOT NULL, doc json);
CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount decimal(10,2), at datetime(6));
CREATE TABLE notes (customer int, note text);
INSERT INTO customers SELECT seq, concat('customer ', seq), json_object('n', seq) FROM seq_1_to_500;
INSERT INTO orders SELECT seq, 1 + seq % 500, seq * 1.25, '2026-01-01' FROM seq_1_to_5000;
INSERT INTO notes SELECT seq, concat('note ', seq) FROM seq_1_to_50;
";

const MY_WRITES: &str = "
INSERT INTO orders SELECT seq, 1 + seq % 500, seq, now(6) FROM seq_5001_to_5200;
UPDATE orders SET amount = amount + 1 WHERE id % 7 = 0;
DELETE FROM orders WHERE id % 11 = 0;
UPDATE customers SET name = concat(name, ' (vip)') WHERE id <= 20;
DELETE FROM notes WHERE customer <= 5;
INSERT INTO notes VALUES (1, 'again');
";

#[test]
fn readme_quick_start_replicates_a_mariadb_database() {
    let blocks = readme_blocks();
    // 1. Server settings: the option file's lines on a server started without a binlog.
    let mut options = MariaDbOptions {
        binlog: false,
        ..Default::default()
    };
    options.extra_args = server_options(&blocks["mysql-settings"]);
    let my = MariaDbServer::start_with(options).expect("start MariaDB with the README's options");
    assert_eq!(my.sql("", "SELECT @@log_bin").unwrap().trim(), "1");
    my.create_database("shop").unwrap();
    my.sql("shop", MY_SHOP).unwrap();
    // 2. The replication user.
    my.sql("", &blocks["mysql-grants"])
        .expect("README step 2 (MySQL)");
    // 3. The config, with the MySQL [source].
    let work = Workdir::new(
        config(&blocks, None, Some(my.port())),
        ("MYSQL_PASSWORD", PASSWORD),
    );
    // 4., 5. and the result.
    check_run_verify(&blocks, &work, || {
        my.sql("shop", MY_WRITES).unwrap();
    });
}
