//! The HTTP endpoint of `tidewater run` (health, metrics, status, status page, query) against
//! a real PostgreSQL or MariaDB source and the real binary.

use crate::common;
use crate::observe_support;

use std::time::Duration;

use common::Rig;
use observe_support::{get, http, metric, published_http};
use tidewater_harness::wait_until;

const T: Duration = Duration::from_secs(120);

fn source_count(rig: &Rig, table: &str) -> i64 {
    rig.sql(&format!("SELECT count(*) FROM {table}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn endpoints_follow_the_snapshot_then_the_stream() {
    const ROWS: i64 = 400_000;
    let mut rig = Rig::new(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2));
         INSERT INTO items SELECT g, 'item number ' || g, g % 100 FROM generate_series(1, {ROWS}) g;
         ANALYZE items;
         CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO notes VALUES (1, 'a'), (2, 'b');"
    ));
    let addr = rig.listen_http();
    rig.start();

    // Before the snapshot is committed /health says why it is not ok; the metrics show the
    // snapshot's progress against the source's estimate.
    let mut seen_snapshot = None;
    let mut last_health = (0, String::new());
    wait_until(T, "/health to answer 200", || {
        let Ok(h) = http(&addr, "GET", "/health", None) else {
            return false;
        };
        if h.status == 503 && h.body.contains("initial snapshot") && seen_snapshot.is_none() {
            let m = get(&addr, "/metrics").body;
            if metric(
                &m,
                "tidewater_snapshot_rows_estimate{table=\"public.items\"}",
            )
            .is_some()
            {
                seen_snapshot = Some(m);
            }
        }
        last_health = (h.status, h.body);
        last_health.0 == 200
    })
    .unwrap_or_else(|e| panic!("{e}: last {last_health:?}\n{}", rig.log()));
    assert!(last_health.1.contains("streaming"), "{last_health:?}");
    let during = seen_snapshot.expect("saw /health 503 during the snapshot, with an estimate");
    assert_eq!(
        metric(&during, "tidewater_phase{phase=\"snapshot\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&during, "tidewater_up"), Some(0.0));
    let estimate = metric(
        &during,
        "tidewater_snapshot_rows_estimate{table=\"public.items\"}",
    )
    .unwrap();
    assert!(
        (estimate - ROWS as f64).abs() < ROWS as f64 * 0.1,
        "estimate {estimate}"
    );
    // `notes` was never analyzed (no estimate in the catalog): small, so it was counted.
    assert_eq!(
        metric(
            &during,
            "tidewater_snapshot_rows_estimate{table=\"public.notes\"}"
        ),
        Some(2.0)
    );

    rig.wait_caught_up(T);
    let sent = std::time::Instant::now();
    rig.sql(
        "INSERT INTO items SELECT g, 'new', 1 FROM generate_series(1000001, 1000010) g;
         UPDATE items SET price = price + 1 WHERE id <= 5;
         DELETE FROM items WHERE id BETWEEN 6 AND 8;
         TRUNCATE notes;",
    );
    rig.wait_caught_up(T);
    // The last transaction was committed at the source after `sent` and in the replica
    // before now: its lag lies within that window.
    let window = sent.elapsed().as_secs_f64();
    let rows = source_count(&rig, "items");

    let m = get(&addr, "/metrics");
    assert_eq!(m.status, 200);
    let v = |s: &str| metric(&m.body, s).unwrap_or_else(|| panic!("no {s} in\n{}", m.body));
    for (kind, n) in [
        ("snapshot", ROWS),
        ("insert", 10),
        ("update", 5),
        ("delete", 3),
    ] {
        let sample =
            format!("tidewater_changes_applied_total{{table=\"public.items\",kind=\"{kind}\"}}");
        assert_eq!(v(&sample), n as f64, "{sample}");
    }
    assert_eq!(
        v("tidewater_changes_applied_total{table=\"public.notes\",kind=\"truncate\"}"),
        1.0
    );
    assert_eq!(
        v("tidewater_snapshot_rows_copied{table=\"public.items\"}"),
        ROWS as f64
    );
    assert!(v("tidewater_transactions_applied_total") >= 5.0);
    let batches = v("tidewater_batches_total");
    assert_eq!(v("tidewater_batch_changes_count"), batches);
    assert_eq!(v("tidewater_batch_changes_bucket{le=\"+Inf\"}"), batches);
    assert_eq!(v("tidewater_batch_apply_seconds_count"), batches);
    assert!(v("tidewater_freshness_seconds_count") >= 5.0);
    let lag = v("tidewater_replica_lag_seconds");
    assert!(
        lag > 0.0 && lag <= window,
        "replica lag {lag} s: the last transaction was committed and applied within {window} s"
    );
    assert_eq!(v("tidewater_up"), 1.0);
    assert_eq!(v("tidewater_errors_total"), 0.0);
    assert_eq!(v("tidewater_restarts_total"), 0.0);
    assert!(
        m.body
            .contains("tidewater_source_position_info{source_type=\"postgres\",position=\"0/"),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("# TYPE tidewater_batch_apply_seconds histogram"));

    // Row counts are collected every few seconds: wait for them to catch up.
    wait_until(T, "/status to show the replica's rows", || {
        let s = get(&addr, "/status").json();
        s["report"]["tables"][0]["table"] == "public.items"
            && s["report"]["tables"][0]["rows"] == rows
    })
    .unwrap();
    let s = get(&addr, "/status").json();
    assert_eq!(s["running"], true);
    assert_eq!(s["live"]["phase"], "streaming");
    assert_eq!(s["live"]["healthy"], true);
    assert_eq!(s["live"]["http"], addr.as_str());
    assert_eq!(s["live"]["tables"][0]["changes"]["insert"], 10);
    assert_eq!(s["live"]["tables"][0]["snapshot_rows_copied"], ROWS);
    wait_until(T, "/metrics to show the replica's rows", || {
        let m = get(&addr, "/metrics").body;
        metric(&m, "tidewater_replica_rows{table=\"public.items\"}") == Some(rows as f64)
    })
    .unwrap();

    let page = get(&addr, "/");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<tr data-table=\"public.items\">"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("<td class=\"n rows\">{rows}</td>")),
        "{}",
        page.body
    );
    assert_eq!(get(&addr, "/status.html").status, 200);
    assert_eq!(get(&addr, "/nope").status, 404);
    assert_eq!(get(&addr, "/query").status, 405);

    // POST /query: JSON in, JSON out, read-only, limited.
    let post = |body: &str| http(&addr, "POST", "/query", Some(body)).unwrap();
    let r = post(r#"{"sql": "SELECT count(*) AS n, max(price) AS top FROM public.items"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["columns"][0]["name"], "n");
    assert_eq!(j["rows"][0][0], rows);
    assert_eq!(j["rows"][0][1], "99.00", "decimals stay exact text");
    let r = post(r#"{"sql": "SELECT id FROM public.items ORDER BY id", "limit": 3}"#).json();
    assert_eq!(r["rows"], serde_json::json!([[1], [2], [3]]));
    assert_eq!(r["truncated"], true);
    for refused in [
        "DELETE FROM public.items",
        "INSERT INTO public.notes VALUES (3, 'c')",
        "SELECT * FROM read_csv('/etc/passwd')",
    ] {
        let r = post(&serde_json::json!({ "sql": refused }).to_string());
        assert_eq!(r.status, 400, "{refused}: {}", r.body);
        assert_eq!(r.json()["kind"], "refused", "{refused}: {}", r.body);
    }
    let r = post("not json");
    assert_eq!(
        (r.status, r.json()["kind"].as_str()),
        (400, Some("refused"))
    );
    let r = post(r#"{"sql": "SELECT count(*) FROM range(100000000000)", "timeout_ms": 300}"#);
    assert_eq!(
        (r.status, r.json()["kind"].as_str()),
        (504, Some("timeout")),
        "{}",
        r.body
    );
    assert_eq!(source_count(&rig, "items"), rows, "nothing was written");

    rig.stop();
    assert!(
        http(&addr, "GET", "/health", None).is_err(),
        "the endpoint ends with run"
    );
    assert_eq!(rig.count("SELECT count(*) FROM items"), rows);
}

#[test]
fn errors_and_restarts_are_counted_and_logged_as_json_with_the_position() {
    let rig =
        Rig::new("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');");
    let log_path = rig.dir.path().join("json.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&rig.config)
        .env("RUST_LOG", "info")
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = observe_support::KillOnDrop(child);
    let mut rig = rig;
    let addr = published_http(&rig.db, T);
    wait_until(T, "streaming", || get(&addr, "/health").status == 200).unwrap();
    rig.sql("INSERT INTO t VALUES (2, 'b')");
    rig.wait_caught_up(T);

    rig.restart_source();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(T, "the pipeline to resume after the source restart", || {
        let m = get(&addr, "/metrics").body;
        metric(&m, "tidewater_restarts_total").is_some_and(|n| n >= 1.0)
            && metric(&m, "tidewater_up") == Some(1.0)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", read_log()));
    rig.sql("INSERT INTO t VALUES (3, 'c')");
    rig.wait_caught_up(T);

    let m = get(&addr, "/metrics").body;
    assert!(metric(&m, "tidewater_errors_total").unwrap() >= 1.0);
    let s = get(&addr, "/status").json();
    let errors = s["live"]["recent_errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{s}");

    terminate(&mut child.0);
    let text = read_log();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let interrupted = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("replication interrupted"))
        })
        .unwrap_or_else(|| panic!("no interruption logged:\n{text}"));
    assert_eq!(interrupted["level"], "WARN");
    assert!(interrupted["fields"]["error"].is_string(), "{interrupted}");
    // The position the replica was committed at when the stream broke.
    let logged = interrupted["fields"]["position"].as_str().unwrap();
    assert!(logged.starts_with("0/"), "{interrupted}");
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "stopped cleanly"));
}

/// SIGTERM, then the exit (status 0) within a deadline.
fn terminate(child: &mut std::process::Child) {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut status = None;
    wait_until(T, "run to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    })
    .unwrap();
    assert!(status.unwrap().success());
}

#[test]
fn mariadb_source_metrics_estimates_and_query() {
    let mut rig = Rig::mysql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(40));
         INSERT INTO items SELECT seq, concat('item ', seq) FROM seq_1_to_2000;
         ANALYZE TABLE items;",
    );
    let addr = rig.listen_http();
    rig.start();
    rig.wait_caught_up(T);
    rig.sql(
        "INSERT INTO items VALUES (5001, 'x'), (5002, 'y');
         UPDATE items SET name = 'z' WHERE id = 1;
         DELETE FROM items WHERE id = 2;",
    );
    rig.wait_caught_up(T);
    let m = get(&addr, "/metrics").body;
    let v = |s: &str| metric(&m, s).unwrap_or_else(|| panic!("no {s} in\n{m}"));
    for (kind, n) in [
        ("snapshot", 2000.0),
        ("insert", 2.0),
        ("update", 1.0),
        ("delete", 1.0),
    ] {
        assert_eq!(
            v(&format!(
                "tidewater_changes_applied_total{{table=\"shop.items\",kind=\"{kind}\"}}"
            )),
            n,
            "{kind}"
        );
    }
    assert!(v("tidewater_snapshot_rows_estimate{table=\"shop.items\"}") > 0.0);
    assert!(
        m.contains("tidewater_source_position_info{source_type=\"mysql\",position=\"mariadb-gtid:"),
        "{m}"
    );
    let out = observe_support::cli(&[
        "query",
        "--config",
        rig.config.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT count(*) AS n, min(name) AS first FROM shop.items",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "n,first\r\n2001,item 10\r\n");
    rig.stop();
}
