//! Continuous verification (`[verify] interval`, issue 13) against real servers: rows changed
//! by hand in the replica (while `run` is stopped: it holds the DuckDB file) are found by a
//! background pass of the running pipeline: `tidewater_verify_differences` > 0, `/health`
//! degraded, `tidewater status` and the status page name the table and the keys. With
//! `repair = true` the table is copied again while streaming and writing go on, the next pass
//! is clean, `/health` is ok again, and `tidewater verify` agrees.

use crate::common;

use std::time::Duration;

use common::http::{get, metric};
use common::{expect, run_cli, Rig};
use tidewater_duckdb::duckdb::Connection;
use tidewater_harness::wait_until;

const T: Duration = Duration::from_secs(180);

const PG_SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
INSERT INTO items SELECT g, 'item ' || g, g % 10 FROM generate_series(1, 300) g;
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other SELECT g, 'v' || g FROM generate_series(1, 20) g;
";

const MY_SETUP: &str = "
CREATE TABLE items (id int PRIMARY KEY, name varchar(100), qty int);
INSERT INTO items SELECT seq, concat('item ', seq), seq % 10 FROM seq_1_to_300;
CREATE TABLE other (id int PRIMARY KEY, v text);
INSERT INTO other SELECT seq, concat('v', seq) FROM seq_1_to_20;
";

/// `[verify]` every second, so that the test waits seconds, not hours.
fn configure(rig: &Rig, repair: bool) {
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let text = match text.find("\n[verify]") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    std::fs::write(
        &rig.config,
        format!("{text}\n[verify]\ninterval = \"1s\"\nmax_rows_per_second = 100000\nrepair = {repair}\n"),
    )
    .unwrap();
}

/// The value of `sample` in `/metrics` (None while absent or not answering).
fn metric_of(addr: &str, sample: &str) -> Option<f64> {
    let m = common::http::http(addr, "GET", "/metrics", None).ok()?;
    metric(&m.body, sample)
}

#[track_caller]
fn wait_metric(rig: &Rig, addr: &str, sample: &str, what: &str, ok: impl Fn(f64) -> bool) {
    wait_until(T, what, || metric_of(addr, sample).is_some_and(&ok)).unwrap_or_else(|e| {
        panic!(
            "{e}: {sample} = {:?}\n{}",
            metric_of(addr, sample),
            rig.log()
        )
    });
}

fn continuous_verification_finds_and_repairs(mut rig: Rig, table: &str) {
    let addr = rig.listen_http();
    let differences = format!("tidewater_verify_differences{{table=\"{table}\"}}");
    let other = differences.replace(".items", ".other");
    rig.start();
    rig.wait_caught_up(T);
    rig.stop();

    // By hand, in the replica: one row changed, one gone, one that the source never had.
    let schema = &rig.schema;
    Connection::open(&rig.db)
        .expect("open the replica read-write")
        .execute_batch(&format!(
            "UPDATE \"{schema}\".items SET name = 'tampered' WHERE id = 7;
             DELETE FROM \"{schema}\".items WHERE id = 8;
             INSERT INTO \"{schema}\".items VALUES (1000, 'stray', 1);"
        ))
        .unwrap();

    // Without repair: found, and still there at the next passes.
    configure(&rig, false);
    rig.start();
    wait_metric(
        &rig,
        &addr,
        &differences,
        "a pass to find the 3 differences",
        |v| v == 3.0,
    );
    assert_eq!(
        metric_of(&addr, &other),
        Some(0.0),
        "the other table is clean"
    );
    assert!(metric_of(&addr, "tidewater_verify_last_completed_timestamp_seconds").is_some());
    let h = get(&addr, "/health");
    assert_eq!(h.status, 200, "degraded is 200: {}", h.body);
    assert!(
        h.body
            .starts_with("degraded: the verification finished at ")
            && h.body.contains(&format!(
                "found 3 differences in {table} (1 missing, 1 extra, 1 differing)"
            ))
            && h.body.contains("set [verify] repair = true"),
        "{}",
        h.body
    );
    let out = expect(run_cli(&["status"], &rig.config), 0, &["last verify:"]);
    assert!(
        out.contains(&format!(
            "  {table}: 1 missing, 1 extra, 1 differing; missing: id=8; extra: id=1000; differing: id=7"
        )) && out.contains("DIFFERENT: 3 differences"),
        "{out}"
    );
    let page = get(&addr, "/").body;
    assert!(
        page.contains("id=\"verify-differences\"")
            && page.contains(&format!(
                "<tr data-table=\"{table}\"><td>{table}</td><td class=\"n\">1</td>"
            )),
        "{page}"
    );
    wait_metric(
        &rig,
        &addr,
        "tidewater_verify_passes_total{result=\"different\"}",
        "a second pass",
        |v| v >= 2.0,
    );
    assert_eq!(
        metric_of(&addr, &differences),
        Some(3.0),
        "nothing repairs it"
    );
    rig.stop();

    // With repair: copied again while the source keeps writing; the next pass is clean.
    configure(&rig, true);
    rig.start();
    for i in 0..20 {
        rig.sql(&format!(
            "UPDATE items SET qty = qty + 1 WHERE id = {}",
            10 + i
        ));
        rig.sql(&format!(
            "INSERT INTO items VALUES ({}, 'new', 0)",
            2000 + i
        ));
    }
    wait_metric(
        &rig,
        &addr,
        "tidewater_verify_tables_repaired_total",
        "repair to copy the table",
        |v| v >= 1.0,
    );
    wait_metric(
        &rig,
        &addr,
        &differences,
        "a clean pass after the repair",
        |v| v == 0.0,
    );
    // The copy's last commit may still be ahead (a DuckDB commit gathers a copy's chunks for
    // up to half a second): then the replica is consistent and healthy again.
    let mut h = get(&addr, "/health");
    wait_until(
        T,
        "the repaired replica to be streaming and healthy",
        || {
            h = get(&addr, "/health");
            h.status == 200 && h.body.starts_with("streaming")
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {}", h.body));
    assert!(
        rig.log()
            .contains("the table is copied again in chunks while streaming"),
        "{}",
        rig.log()
    );
    rig.wait_caught_up(T);
    rig.stop();
    let out = expect(run_cli(&["verify"], &rig.config), 0, &[": equal"]);
    assert!(out.contains(table), "{out}");
}

#[test]
fn postgres_continuous_verification_finds_a_changed_replica_and_repairs_it() {
    continuous_verification_finds_and_repairs(Rig::new(PG_SETUP), "public.items");
}

#[test]
fn mariadb_continuous_verification_finds_a_changed_replica_and_repairs_it() {
    continuous_verification_finds_and_repairs(Rig::mysql(MY_SETUP), "shop.items");
}

/// No pass while a chunked copy is under way: a table being copied lacks its later chunks'
/// rows, and a pass would report them missing and, with repair, start the copy over (at
/// every interval, for a copy longer than one). Here the initial copy of 800k rows takes
/// longer than the 1 s interval: the first pass starts after the copy is consistent, finds
/// nothing, and nothing is copied again.
#[test]
fn postgres_no_pass_compares_a_copy_under_way() {
    let rows = 800_000;
    let mut rig = Rig::new(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, v text);
INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;"
    ));
    crate::chunked_snapshot::with_chunk_rows(&rig, 2_000);
    configure(&rig, true);
    let addr = rig.listen_http();
    rig.start();
    wait_until(T, "the copy to begin", || {
        common::snapshot_rows_copied(&addr, "public.big") > 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    common::wait_replica_consistent(&rig, &addr);
    wait_metric(
        &rig,
        &addr,
        "tidewater_verify_passes_total{result=\"equal\"}",
        "a clean pass after the copy",
        |n| n >= 1.0,
    );
    rig.stop();
    let log = rig.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} is not logged\n{log}"))
    };
    let (started, copied, compared) = (
        at("copying tables in chunks while streaming"),
        at(common::COPY_FINISHED),
        at("verify: comparing"),
    );
    assert!(copied < compared, "a pass began during the copy\n{log}");
    // The time of the log line holding byte `i`.
    let time = |i: usize| seconds_of_day(&log[log[..i].rfind('\n').map_or(0, |n| n + 1)..]);
    assert!(
        time(copied) - time(started) > 1.5,
        "the copy took less than the interval: copy more rows\n{log}"
    );
    assert!(
        !log.contains("the replica differs from the source"),
        "{log}"
    );
    assert!(!log.contains("copied again"), "{log}");
    assert_eq!(rig.count("SELECT count(*) FROM big"), rows);
}

/// Seconds of the day of a log line's `2026-12-04T23:01:06.857880Z` timestamp.
fn seconds_of_day(timestamp: &str) -> f64 {
    let time = &timestamp[11..26];
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}
