//! The README's first command: `tidewater demo` must run end to end and stop on its own.

use std::process::Command;
use std::time::Duration;

#[test]
fn demo_replicates_and_stops_after_its_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.duckdb");
    let out = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["demo", "--seconds", "3", "--path"])
        .arg(&path)
        .output()
        .expect("run tidewater demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("changes applied"))
        .collect();
    assert!(
        lines.len() >= 3,
        "expected a progress line per second:\n{stdout}"
    );
    assert!(lines.iter().any(|l| l.contains("freshness")), "{stdout}");
    // The replica holds the demo schema, snapshot and streamed changes.
    let conn = tidewater_duckdb::duckdb::Connection::open(&path).unwrap();
    let orders: i64 = conn
        .query_row("SELECT count(*) FROM public.orders", [], |r| r.get(0))
        .unwrap();
    let streamed: i64 = conn
        .query_row(
            "SELECT count(*) FROM public.orders_log WHERE _metadata_change_type <> 'SNAPSHOT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        orders >= 5000 && streamed > 0,
        "orders {orders}, streamed changes {streamed}"
    );
}

#[test]
fn demo_leaves_a_config_and_prints_queries_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.duckdb");
    let out = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["demo", "--seconds", "2", "--path"])
        .arg(&path)
        .output()
        .expect("run tidewater demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let config = dir.path().join("demo.toml");
    assert!(config.exists(), "demo.toml beside the replica");
    // Each printed example runs as printed (the program path first, then its arguments).
    let examples: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" query --config "))
        .collect();
    assert!(examples.len() >= 3, "{stdout}");
    for line in examples {
        let args = line.trim().split_once(' ').map(|(_, rest)| rest).unwrap();
        let (flags, sql) = args.split_once('"').unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidewater"));
        cmd.args(flags.split_whitespace())
            .arg(sql.trim_end_matches('"'));
        let run = cmd.output().unwrap();
        assert!(
            run.status.success() && !run.stdout.is_empty(),
            "{line}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

/// While the demo runs, the psql command it prints reads the live replica.
#[test]
fn demo_serves_psql_while_it_runs() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["demo", "--seconds", "8", "--path"])
        .arg(dir.path().join("demo.duckdb"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tidewater demo");
    let stderr = BufReader::new(demo.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut psql = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Some((_, cmd)) = line.split_once("psql: ") {
            psql = Some(cmd.to_string());
            break;
        }
        seen.push(line);
    }
    let psql = psql.unwrap_or_else(|| panic!("no psql command printed:\n{}", seen.join("\n")));
    let args: Vec<&str> = psql.split_whitespace().skip(1).collect();
    // The endpoint answers at once; the replica opens once the snapshot has begun.
    let mut last = String::new();
    tidewater_harness::wait_until(Duration::from_secs(30), "psql to read the replica", || {
        let out = Command::new("psql")
            .args(&args)
            .args([
                "-X",
                "-At",
                "-c",
                "SELECT count(*) > 0 FROM public.customers",
            ])
            .output()
            .unwrap();
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        last.trim() == "t"
    })
    .unwrap_or_else(|e| panic!("{e}: {psql}: {last}"));
    assert!(demo.wait().unwrap().success());
}
