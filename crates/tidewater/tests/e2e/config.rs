//! How the command line finds and reads its configuration: `--config` defaults to
//! `./tidewater.toml`, `query` and `status` read only the replica (an unset variable in
//! `source.url` does not stop them), and `postgresql` / `mariadb` name the source kinds.
//! No database is started: the replica does not exist, which these commands report (exit 3)
//! only after the configuration was accepted.

use std::path::Path;
use std::process::{Command, Output};

fn tidewater(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .current_dir(dir)
        .env_remove("TIDEWATER_TEST_NEVER_SET")
        .output()
        .expect("tidewater runs")
}

fn config(source_type: &str, url: &str) -> String {
    format!(
        "[source]\ntype = \"{source_type}\"\nurl = \"{url}\"\ntables = [\"public.*\"]\n\
         [sink]\ntype = \"duckdb\"\npath = \"replica.duckdb\"\n"
    )
}

/// Exit code and stderr.
fn outcome(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn query_and_status_do_not_need_the_source_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://repl:${TIDEWATER_TEST_NEVER_SET}@127.0.0.1:1/shop";
    std::fs::write(dir.path().join("t.toml"), config("postgres", url)).unwrap();
    for args in [
        &["status", "--config", "t.toml"][..],
        &["query", "--config", "t.toml", "SELECT 1"][..],
    ] {
        let (code, stderr) = outcome(&tidewater(dir.path(), args));
        assert!(
            !stderr.contains("TIDEWATER_TEST_NEVER_SET"),
            "{args:?} needed the source's secret: {stderr}"
        );
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("does not exist yet"), "{args:?}: {stderr}");
    }
    // `run` and `check` use the source: the unset variable is a configuration error.
    for command in ["run", "check"] {
        let (code, stderr) = outcome(&tidewater(dir.path(), &[command, "--config", "t.toml"]));
        assert_eq!(code, Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("TIDEWATER_TEST_NEVER_SET"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn config_defaults_to_tidewater_toml_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://repl@127.0.0.1:1/shop";
    std::fs::write(dir.path().join("tidewater.toml"), config("postgres", url)).unwrap();
    for args in [&["status"][..], &["query", "SELECT 1"][..]] {
        let (code, stderr) = outcome(&tidewater(dir.path(), args));
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("does not exist yet"), "{args:?}: {stderr}");
    }
    let help = tidewater(dir.path(), &["run", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("The configuration file"), "{help}");
    assert!(help.contains("tidewater.toml"), "{help}");
}

#[test]
fn postgresql_and_mariadb_name_the_source_kinds() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, url) in [
        ("postgresql", "postgres://repl@127.0.0.1:1/shop"),
        ("mariadb", "mysql://repl@127.0.0.1:1/shop"),
    ] {
        std::fs::write(dir.path().join("t.toml"), config(kind, url)).unwrap();
        let (code, stderr) = outcome(&tidewater(dir.path(), &["status", "--config", "t.toml"]));
        assert_eq!(code, Some(3), "{kind}: {stderr}");
        assert!(stderr.contains("does not exist yet"), "{kind}: {stderr}");
    }
}

#[test]
fn print_defaults_lists_every_type_and_is_an_accepted_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidewater(dir.path(), &["config", "--print-defaults"]);
    let (code, stderr) = outcome(&out);
    assert_eq!(code, Some(0), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "type = \"postgres\"",
        "# type = \"mysql\"",
        "server_id = 4242",
        "# type = \"bigquery\"",
        "merge_interval_ms = 1000",
        "threads = 1",
        "flush_interval_ms = 100",
        "# [sql]",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // As printed, it is a config file (PostgreSQL into DuckDB) that `status` accepts: the
    // replica does not exist yet, which is reported only after the config was read.
    std::fs::write(dir.path().join("t.toml"), &text).unwrap();
    let (code, stderr) = outcome(&tidewater(dir.path(), &["status", "--config", "t.toml"]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("does not exist yet"), "{stderr}");
}
