//! TLS to the source. PostgreSQL `sslmode=require`: both the SQL session and the replication
//! session are encrypted. MySQL/MariaDB `ssl-mode` and `ssl-ca`: the server's certificate is
//! verified against a private CA, and a user that requires TLS replicates; VERIFY_IDENTITY
//! refuses a certificate of that CA made out to another host name.

use crate::common;

use std::time::Duration;

use common::tls::{certificates, certificates_for, Certs};
use common::{expect, run_cli, Rig, MY_DB, PASSWORD};
use tidewater_harness::{MariaDbOptions, PgOptions};

#[test]
fn sslmode_require_encrypts_both_sessions() {
    let certs = tempfile::Builder::new()
        .prefix("tw-tls")
        .tempdir_in("/tmp")
        .unwrap();
    let Certs { crt, key, .. } = certificates(certs.path(), "postgres");
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

#[test]
fn mariadb_ssl_mode_verifies_the_server_and_replicates_over_tls() {
    let certs = tempfile::Builder::new()
        .prefix("tw-tls")
        .tempdir_in("/tmp")
        .unwrap();
    let c = certificates(certs.path(), "mysql");
    let options = MariaDbOptions {
        extra_args: vec![
            format!("--ssl-cert={}", c.crt),
            format!("--ssl-key={}", c.key),
            format!("--ssl-ca={}", c.ca),
        ],
        ..Default::default()
    };
    // A replication user that the server admits over TLS only.
    let setup = format!(
        "CREATE TABLE t (id int PRIMARY KEY, v varchar(20)); INSERT INTO t VALUES (1, 'snapshot');
         CREATE USER tls@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL;
         GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO tls@'%';"
    );
    let ca = c.ca.clone();
    let mut rig = Rig::mysql_with(&setup, options, move |my| {
        format!(
            "{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}",
            my.url_as("tls", PASSWORD, MY_DB)
        )
    });
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let variant = |from: &str, to: &str| {
        let path = rig.dir.path().join("variant.toml");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
    };
    // Without TLS the user is refused; without the private CA the certificate is.
    let plain = variant(&format!("?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", c.ca), "");
    expect(run_cli(&["run"], &plain), 3, &["Access denied"]);
    let no_ca = variant(&format!("&ssl-ca={}", c.ca), "");
    expect(run_cli(&["run"], &no_ca), 3, &["TLS", "ssl-ca="]);
    assert!(!rig.db.exists(), "a failed start created the replica");
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));
    rig.sql("INSERT INTO t VALUES (2, 'streamed');");
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();
    rig.assert_same("SELECT concat_ws('|', id, v) FROM t ORDER BY id");
}

/// VERIFY_IDENTITY checks the server's name: a certificate signed by the trusted CA but made
/// out to another host is refused, and the error says which name it is valid for.
#[test]
fn mariadb_verify_identity_refuses_a_certificate_for_another_host() {
    let certs = tempfile::Builder::new()
        .prefix("tw-tls")
        .tempdir_in("/tmp")
        .unwrap();
    let c = certificates_for(certs.path(), "mysql", "DNS:db.elsewhere.test");
    let options = MariaDbOptions {
        extra_args: vec![
            format!("--ssl-cert={}", c.crt),
            format!("--ssl-key={}", c.key),
            format!("--ssl-ca={}", c.ca),
        ],
        ..Default::default()
    };
    let ca = c.ca.clone();
    let rig = Rig::mysql_with(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
        options,
        move |my| format!("{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}", my.url(MY_DB)),
    );
    let out = expect(
        run_cli(&["run"], &rig.config),
        3,
        &["TLS", "127.0.0.1", "db.elsewhere.test"],
    );
    eprintln!("{out}");
    assert!(!rig.db.exists(), "a failed start created the replica");
}
