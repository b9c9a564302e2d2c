//! `tidewater query` and `tidewater status` while `run` runs (served by the running process)
//! and when it does not (the file opened read-only): the same answers, every format, and
//! nothing but reads.

use crate::common;
use crate::observe_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Rig;
use observe_support::{cli, published_http, CliOutput, KillOnDrop};
use tidewater_harness::wait_until;

const T: Duration = Duration::from_secs(120);

const SETUP: &str = "
CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz,
    tags text[], ok bool, score float8);
INSERT INTO t VALUES
    (1, 'plain', 10.50, '2024-03-01 12:00:00+00', ARRAY['a', 'b'], true, 1.5),
    (2, 'with, comma \"quoted\"', -0.01, '2024-03-02 00:00:00.123456+00', '{}', false, -2),
    (3, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE busy (id int PRIMARY KEY);
";
const QUERY: &str = "SELECT * FROM public.t ORDER BY id";

fn query(config: &str, extra: &[&str], sql: &str) -> CliOutput {
    let mut args = vec!["query", "--config", config];
    args.extend_from_slice(extra);
    args.push(sql);
    cli(&args)
}

#[track_caller]
fn ok(out: CliOutput) -> String {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// Statements that must never run, with what the refusal says.
const REFUSED: &[(&str, &str)] = &[
    ("INSERT INTO public.t (id) VALUES (9)", "not INSERT"),
    ("DELETE FROM public.t", "not DELETE"),
    ("UPDATE public.t SET name = 'x'", "not UPDATE"),
    ("ATTACH 'other.duckdb' AS o", "not ATTACH"),
    ("COPY public.t TO 'out.csv'", "not COPY"),
    ("INSTALL httpfs", "not INSTALL"),
    ("SET threads = 1", "not SET"),
    ("CHECKPOINT", "not CHECKPOINT"),
    ("SELECT 1; DROP TABLE public.t", "one statement"),
    (
        "WITH x AS (SELECT 9) INSERT INTO public.t (id) SELECT * FROM x",
        "read-only mode",
    ),
    (
        "SELECT * FROM read_csv('/etc/passwd')",
        "disabled by configuration",
    ),
];

fn assert_all_refused(config: &str) {
    for (sql, says) in REFUSED {
        let out = query(config, &[], sql);
        assert_eq!(
            out.code, 2,
            "{sql} must be refused: {}{}",
            out.stdout, out.stderr
        );
        assert!(
            out.stderr.contains("query refused") && out.stderr.contains(says),
            "{sql}: {}",
            out.stderr
        );
    }
}

#[test]
fn query_answers_the_same_live_and_stopped_in_every_format() {
    let mut rig = Rig::new(SETUP);
    let config = rig.config.to_str().unwrap().to_string();
    let db = rig.db.to_str().unwrap().to_string();
    rig.start();
    rig.wait_caught_up(T);
    let addr = published_http(&rig.db, T);

    let formats = ["table", "csv", "json"];
    let live: Vec<String> = formats
        .iter()
        .map(|f| ok(query(&config, &["--format", f], QUERY)))
        .collect();
    assert_eq!(
        live[0],
        "id | name                 | amount | at                               | tags      | ok    | score\n\
         ---+----------------------+--------+----------------------------------+-----------+-------+------\n \
          1 | plain                |  10.50 | 2024-03-01 12:00:00+00:00        | [\"a\",\"b\"] | true  |   1.5\n \
          2 | with, comma \"quoted\" |  -0.01 | 2024-03-02 00:00:00.123456+00:00 | []        | false |  -2.0\n \
          3 | NULL                 |   NULL | NULL                             | NULL      | NULL  |  NULL\n\
         (3 rows)\n"
    );
    assert_eq!(
        live[1],
        "id,name,amount,at,tags,ok,score\r\n\
         1,plain,10.50,2024-03-01 12:00:00+00:00,\"[\"\"a\"\",\"\"b\"\"]\",true,1.5\r\n\
         2,\"with, comma \"\"quoted\"\"\",-0.01,2024-03-02 00:00:00.123456+00:00,[],false,-2.0\r\n\
         3,,,,,,\r\n"
    );
    let json: serde_json::Value = serde_json::from_str(&live[2]).unwrap();
    assert_eq!(json[0]["id"], 1);
    assert_eq!(json[0]["amount"], "10.50");
    assert_eq!(json[0]["ok"], true);
    assert_eq!(json[0]["score"], 1.5);
    assert_eq!(json[0]["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(json[2]["name"], serde_json::Value::Null);
    // --db names the file directly; the running process answers it too.
    assert_eq!(ok(cli(&["query", "--db", &db, QUERY])), live[0]);
    let limited = ok(query(&config, &["--limit", "2", "--format", "csv"], QUERY));
    assert_eq!(limited.lines().count(), 3, "{limited}");
    assert_all_refused(&config);

    // A slow query runs beside the apply loop without holding it up, and is interrupted at
    // its timeout.
    let slow = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["query", "--config", &config, "--timeout", "8"])
        .arg("SELECT count(*) FROM range(1000000000000) a")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut slow = KillOnDrop(slow);
    rig.sql("INSERT INTO busy SELECT generate_series(1, 1000)");
    rig.wait_caught_up(T);
    assert!(
        slow.0.try_wait().unwrap().is_none(),
        "the slow query was still running while the replica caught up"
    );
    let mut status = None;
    wait_until(
        Duration::from_secs(60),
        "the slow query to be interrupted",
        || {
            status = slow.0.try_wait().unwrap();
            status.is_some()
        },
    )
    .unwrap();
    assert_eq!(status.unwrap().code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(slow.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    let busy = ok(query(
        &config,
        &["--format", "csv"],
        "SELECT count(*) AS n FROM public.busy",
    ));
    assert_eq!(busy, "n\r\n1000\r\n");

    // `status` prints what GET /status serves.
    let status_json: serde_json::Value =
        serde_json::from_str(&ok(cli(&["status", "--json", "--config", &config]))).unwrap();
    assert_eq!(status_json["live"]["phase"], "streaming");
    assert_eq!(status_json["live"]["http"], addr.as_str());
    let text = ok(cli(&["status", "--config", &config]));
    assert!(text.contains("phase:               streaming"), "{text}");
    assert!(
        text.contains(&format!("http:                http://{addr}/")),
        "{text}"
    );

    rig.stop();
    // Not running: the file is opened read-only here, with the same answers.
    for (f, expected) in formats.iter().zip(&live) {
        assert_eq!(
            &ok(query(&config, &["--format", f], QUERY)),
            expected,
            "{f}"
        );
    }
    assert_all_refused(&config);
    let out = query(
        &config,
        &["--timeout", "0.5"],
        "SELECT count(*) FROM range(1000000000000) a",
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    let text = ok(cli(&["status", "--config", &config]));
    assert!(text.contains("(not running)"), "{text}");
    assert_eq!(
        rig.count("SELECT count(*) FROM t"),
        3,
        "nothing was written"
    );
}

#[test]
fn query_explains_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.duckdb");
    let out = cli(&["query", "--db", missing.to_str().unwrap(), "SELECT 1"]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("does not exist yet"), "{}", out.stderr);
    let out = cli(&["query", "SELECT 1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = cli(&["query", "--db", missing.to_str().unwrap(), "DROP TABLE x"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("query refused"), "{}", out.stderr);
}
