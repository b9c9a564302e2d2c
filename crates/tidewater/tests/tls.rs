//! `sslmode=require`: both the SQL session and the replication session are encrypted.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Rig;
use tidewater_harness::PgOptions;

/// A self-signed certificate the server (running as `postgres` when we are root) can read.
fn certificate(dir: &std::path::Path) -> (String, String) {
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
    let root = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0";
    if root {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
    }
    Command::new("chmod").arg("600").arg(&key).status().unwrap();
    Command::new("chmod").arg("755").arg(dir).status().unwrap();
    (crt.display().to_string(), key.display().to_string())
}

#[test]
fn sslmode_require_encrypts_both_sessions() {
    let certs = tempfile::Builder::new()
        .prefix("tw-tls")
        .tempdir_in("/tmp")
        .unwrap();
    let (crt, key) = certificate(certs.path());
    let options = PgOptions {
        extra_conf: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), crt),
            ("ssl_key_file".into(), key),
        ],
        ..Default::default()
    };
    let mut rig = Rig::with_server(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'snapshot');",
        options,
        "?sslmode=require",
    );
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql("INSERT INTO t VALUES (2, 'streamed');");
    rig.wait_caught_up(Duration::from_secs(60));
    let encrypted = rig.sql(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'tidewater'",
    );
    rig.stop();
    let (ssl, all) = encrypted.trim().split_once('|').unwrap();
    assert!(
        all.parse::<i32>().unwrap() >= 2,
        "expected a SQL and a replication session: {encrypted}"
    );
    assert_eq!(
        ssl, all,
        "every tidewater session must be encrypted: {encrypted}"
    );
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
}
