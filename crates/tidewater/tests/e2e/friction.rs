//! The rough edges a new user met running tidewater against their own database (issue 18),
//! each replayed with the command they ran: output into a closed pipe, a second `run`,
//! `check` beside the running pipeline, a mistyped table pattern, the status counters and
//! JSON output of structured columns.

use crate::common;
use crate::observe_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{expect, run_cli, Rig};
use observe_support::cli;
use tidewater_harness::{free_port, wait_until};

const T: Duration = Duration::from_secs(120);

const SETUP: &str = "
CREATE TABLE orders (id int PRIMARY KEY, tags text[], doc jsonb, note text);
INSERT INTO orders VALUES (1, ARRAY['fruit', 'red'], '{\"n\": 1, \"ok\": true}', 'first');
";

/// Runs `tidewater <args>` with stdout a pipe whose reader is already gone (as after
/// `| head -1` has read its line); returns the exit code and stderr.
fn into_closed_pipe(args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(writer)
        .output()
        .expect("run tidewater");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut rig = Rig::new(SETUP);
    rig.start();
    rig.wait_caught_up(T);
    rig.stop();
    let config = rig.config.to_str().unwrap();
    let db = rig.db.to_str().unwrap();
    let runs: [&[&str]; 4] = [
        &["status", "--config", config],
        &["status", "--json", "--config", config],
        &["query", "--config", config, "SELECT * FROM range(100000)"],
        &["query", "--db", db, "--format", "csv", "SELECT 1 AS one"],
    ];
    for args in runs {
        let (code, stderr) = into_closed_pipe(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_running_pipeline_meets_check_a_second_run_and_status() {
    let mut rig = Rig::new(SETUP);
    // A fixed HTTP address, as a user sets it; one of the two patterns is a typo.
    let listen = format!("127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(&rig.config).unwrap().replace(
        "tables = [\"public.*\"]",
        "tables = [\"public.orders\", \"public.ordrs\"]",
    );
    std::fs::write(
        &rig.config,
        format!("{text}\n[http]\nlisten = \"{listen}\"\n"),
    )
    .unwrap();

    // The typo is named (a warning: the other pattern selects a table).
    let out = expect(run_cli(&["check"], &rig.config), 0, &["[warn] tables"]);
    assert!(
        out.contains("\"public.ordrs\" in source.tables match no table"),
        "{out}"
    );

    rig.start();
    rig.wait_caught_up(T);
    let pid = rig.pid();

    // `check` beside its own running pipeline: the active slot is that pipeline, running.
    let out = expect(run_cli(&["check"], &rig.config), 0, &["[ ok ] slot"]);
    assert!(
        out.contains(&format!(
            "this config's `tidewater run` (pid {pid}), running"
        )),
        "{out}"
    );
    assert!(!out.contains("pg_terminate_backend"), "{out}");

    // A second `run` names the first writer, not the port they share.
    let out = expect(
        run_cli(&["run"], &rig.config),
        3,
        &[&format!("`tidewater run` (pid {pid}) is writing")],
    );
    assert!(!out.contains("address already in use"), "{out}");

    // Structured columns keep their JSON types.
    let out = cli(&[
        "query",
        "--config",
        rig.config.to_str().unwrap(),
        "--format",
        "json",
        "SELECT tags, doc::JSON AS doc, {'a': 1, 'b': [1.5::DOUBLE]} AS s FROM public.orders",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        rows[0]["tags"],
        serde_json::json!(["fruit", "red"]),
        "{}",
        out.stdout
    );
    assert_eq!(
        rows[0]["doc"],
        serde_json::json!({"n": 1, "ok": true}),
        "{}",
        out.stdout
    );
    assert_eq!(
        rows[0]["s"],
        serde_json::json!({"a": 1, "b": [1.5]}),
        "{}",
        out.stdout
    );

    // The replica's totals and this run's counters agree in every status, also while
    // transactions commit (this is the replica's first run: they are the same changes).
    let writer = std::thread::spawn({
        let url = rig.pg().url("postgres");
        move || {
            let mut psql = Command::new("psql")
                .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = psql.stdin.take().unwrap();
            for i in 2..600 {
                writeln!(stdin, "INSERT INTO orders (id, note) VALUES ({i}, 'x');").unwrap();
                writeln!(stdin, "SELECT pg_sleep(0.002);").unwrap();
            }
            drop(stdin);
            assert!(psql.wait().unwrap().success());
        }
    });
    let config = rig.config.to_str().unwrap().to_string();
    let mut seen = 0;
    wait_until(T, "the writer to finish", || {
        let out = cli(&["status", "--json", "--config", &config]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let view: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            view["report"]["changes_applied"], view["live"]["changes"],
            "{}",
            out.stdout
        );
        assert_eq!(
            view["report"]["transactions_applied"], view["live"]["transactions"],
            "{}",
            out.stdout
        );
        seen += 1;
        writer.is_finished()
    })
    .unwrap();
    writer.join().unwrap();
    assert!(seen > 1, "status was compared {seen} times");
    rig.stop();
}
