//! The PostgreSQL wire-protocol endpoint (`[sql] listen`) of a running `tidewater run`, driven
//! by the real `psql`: it answers like the source, follows the replica as it changes, refuses
//! every write with the same message as `POST /query`, interrupts slow statements; and
//! tokio-postgres, a driver, gets PostgreSQL's types and binary values through the extended
//! protocol. (psql 15, the one here, has no `\bind`: the extended protocol arrived in psql 16.)

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_cli, Rig};
use tidewater_harness::{free_port, wait_until, PgServer};

const T: Duration = Duration::from_secs(120);

const SETUP: &str = "
CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), ok bool, score float8,
    day date, at timestamptz, raw bytea, big bigint, small smallint);
INSERT INTO t VALUES
    (1, 'plain', 10.50, true, 1.5, '2024-03-01', '2024-03-01 12:00:00+00', '\\x00ff', 9007199254740993, 7),
    (2, 'with | pipe', -0.01, false, -2, '1999-12-31', '2024-03-02 00:00:00.123456+00', '', -1, -7),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
";
const ROWS: &str = "SELECT * FROM public.t ORDER BY id";

/// A rig replicating SETUP whose `run` serves `[sql]` on a free port (plus `extra` keys);
/// returns it streaming, with the port.
fn start(extra: &str) -> (Rig, u16) {
    let mut rig = Rig::new(SETUP);
    let port = free_port();
    let mut config = std::fs::read_to_string(&rig.config).unwrap();
    config.push_str(&format!("\n[sql]\nlisten = \"127.0.0.1:{port}\"\n{extra}"));
    std::fs::write(&rig.config, config).unwrap();
    rig.start();
    rig.wait_caught_up(T);
    let log = rig.log();
    assert!(
        log.contains("sql endpoint listening") && log.contains(&format!("127.0.0.1:{port}")),
        "{log}"
    );
    (rig, port)
}

struct Psql {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// The real `psql` against the endpoint: unaligned, tuples only, SQLSTATEs in errors, the
/// script on standard input (a session of several statements); `-c` arguments instead when
/// `script` is empty.
fn psql(port: u16, args: &[&str], script: &str) -> Psql {
    let mut cmd = PgServer::tool("psql");
    cmd.args(["-X", "-At", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-d", "replica", "-U", "analyst"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "sql_endpoint test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    // psql ends by itself: its statements are bounded by the endpoint's timeout.
    let out = child.wait_with_output().unwrap();
    Psql {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `psql -c sql`, which must succeed; its rows.
#[track_caller]
fn rows(port: u16, sql: &str) -> String {
    let out = psql(port, &["-c", sql], "");
    assert!(out.ok, "{sql}: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// The same query on the source, through psql, in UTC as the endpoint answers.
fn source_rows(rig: &Rig, sql: &str) -> String {
    rig.sql(&format!("SET TIME ZONE 'UTC'; {sql}"))
}

#[test]
fn psql_reads_the_live_replica_and_its_changes() {
    let (rig, port) = start("");

    // (1) The rows psql gets are the source's rows, value for value in PostgreSQL's text.
    let expected = source_rows(&rig, ROWS);
    assert_eq!(expected.lines().count(), 3, "{expected}");
    assert_eq!(rows(port, ROWS), expected);
    // (2) A change at the source becomes visible through psql.
    rig.sql(
        "INSERT INTO t (id, name, amount) VALUES (4, 'new', 4.00);
         UPDATE t SET name = 'changed', at = '2025-01-01 08:30:00.5+02' WHERE id = 1;
         DELETE FROM t WHERE id = 2;",
    );
    let expected = source_rows(&rig, ROWS);
    assert!(
        expected.contains("changed") && expected.contains("|new|"),
        "{expected}"
    );
    let mut seen = String::new();
    wait_until(T, "the change to be visible through psql", || {
        seen = rows(port, ROWS);
        seen == expected
    })
    .unwrap_or_else(|e| panic!("{e}: psql shows\n{seen}\nthe source has\n{expected}"));

    // `tidewater status` tells how to connect.
    let (code, status) = run_cli(&["status"], &rig.config);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains(&format!("psql -h 127.0.0.1 -p {port}")),
        "{status}"
    );

    // What BI tools and drivers send first: the server's version, transaction blocks; a
    // session goes on after an error.
    let out = psql(
        port,
        &[],
        "SELECT version() IS NOT NULL;\nSHOW server_version;\nSHOW server_version_num;\n\
         BEGIN;\nSELECT 1;\nSELECT nope;\nSELECT 2;\nCOMMIT;\n",
    );
    assert_eq!(
        out.stdout, "t\n14.0 (tidewater 0.1.0, DuckDB)\n140000\nBEGIN\n1\n2\nCOMMIT\n",
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(r#"42703: Binder Error: Referenced column "nope""#)
            && !out.stderr.contains("connection"),
        "{}",
        out.stderr
    );
}

/// (3) and (4): every write is refused, as `tidewater query` refuses it, replication goes
/// on; a statement past `[sql] timeout_ms` is interrupted; rows past `[sql] limit` are cut.
#[test]
fn psql_cannot_write_and_slow_statements_are_interrupted() {
    let (rig, port) = start("timeout_ms = 2000\nlimit = 2\n");
    const SUMMARY: &str = "SELECT count(*), sum(id), string_agg(name, ',') FROM public.t";
    let before = rows(port, SUMMARY);
    assert_eq!(before, "3|6|plain,with | pipe\n");

    for (sql, sqlstate) in [
        ("INSERT INTO public.t (id) VALUES (9)", "25006"),
        ("DROP TABLE public.t", "25006"),
        ("SET threads = 1", "25006"),
        ("UPDATE public.t SET name = 'x'", "25006"),
        ("COPY public.t TO '/tmp/out.csv'", "25006"),
        ("SELECT 1; DROP TABLE public.t", "42601"),
        ("SELECT 1; SELECT 2", "42601"),
        (
            "WITH x AS (SELECT 9) INSERT INTO public.t (id) SELECT * FROM x",
            "25006",
        ),
        ("SELECT * FROM read_csv('/etc/passwd')", "25006"),
    ] {
        let out = psql(port, &["-c", sql], "");
        assert!(!out.ok, "{sql} must be refused: {}", out.stdout);
        // The message POST /query (tidewater query) gives for it.
        let (code, cli) = run_cli(&["query", sql], &rig.config);
        assert_eq!(code, 2, "{cli}");
        let message = cli
            .lines()
            .find_map(|l| l.strip_prefix("error: query refused: "))
            .unwrap_or_else(|| panic!("{sql}: {cli}"));
        assert!(
            out.stderr
                .contains(&format!("ERROR:  {sqlstate}: {message}")),
            "{sql}: psql says {}; tidewater query says {message}",
            out.stderr
        );
    }
    assert_eq!(rows(port, SUMMARY), before, "nothing was written");

    // Rows past `[sql] limit` are cut, with a warning.
    let out = psql(port, &["-c", ROWS], "");
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("WARNING:  01000: the result was cut at 2 rows"),
        "{}",
        out.stderr
    );

    // (4) Interrupted at the endpoint's timeout; the endpoint serves the next statement.
    let started = Instant::now();
    let out = psql(
        port,
        &["-c", "SELECT count(*) FROM range(1000000000000) a"],
        "",
    );
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("57014") && out.stderr.contains("interrupted"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rows(port, "SELECT 1"), "1\n");

    // Replication went on all along.
    rig.sql("INSERT INTO t (id, name) VALUES (5, 'after the refusals')");
    wait_until(T, "the insert to be visible through psql", || {
        rows(port, "SELECT name FROM public.t WHERE id = 5") == "after the refusals\n"
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
}

/// A raw value as the server sent it (any type): the endpoint's binary values must be the
/// bytes PostgreSQL itself sends.
#[derive(Debug, PartialEq)]
struct Raw(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Column types, and every value of `sql` in binary, from a tokio-postgres client at `url`.
async fn driver_view(
    url: &str,
    sql: &str,
) -> (Vec<String>, Vec<Vec<Option<Raw>>>, tokio_postgres::Client) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    tokio::spawn(connection);
    let statement = client.prepare(sql).await.unwrap();
    let types = statement
        .columns()
        .iter()
        .map(|c| c.type_().name().to_string())
        .collect();
    let rows = client.query(&statement, &[]).await.unwrap();
    let values = rows
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
        .collect();
    (types, values, client)
}

/// (5) with a driver: tokio-postgres prepares (Parse / Describe statement), binds typed
/// binary parameters and asks for binary results; types and bytes are PostgreSQL's own.
#[test]
fn drivers_get_postgres_types_and_binary_values() {
    let (rig, port) = start("");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let endpoint = format!("host=127.0.0.1 port={port} user=analyst dbname=replica");
        let (types, values, client) = driver_view(&endpoint, ROWS).await;
        let (source_types, source_values, _) = driver_view(&rig.pg().url("postgres"), ROWS).await;
        assert_eq!(
            types,
            [
                "int4",
                "text",
                "numeric",
                "bool",
                "float8",
                "date",
                "timestamptz",
                "bytea",
                "int8",
                "int2"
            ]
        );
        assert_eq!(types, source_types);
        assert_eq!(values, source_values);

        // Parameters: typed and binary (query_typed), or described as text and cast.
        use tokio_postgres::types::Type;
        let rows = client
            .query_typed(
                "SELECT name, score FROM public.t WHERE id = $1 AND small = $2",
                &[(&1i32, Type::INT4), (&7i16, Type::INT2)],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, &str>(0), "plain");
        assert_eq!(rows[0].get::<_, f64>(1), 1.5);
        let statement = client
            .prepare("SELECT big FROM public.t WHERE name = $1")
            .await
            .unwrap();
        assert_eq!(statement.params(), [Type::TEXT]);
        let rows = client.query(&statement, &[&"with | pipe"]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), -1);
        let refused = client
            .query("DELETE FROM public.t WHERE id = $1::int", &[&"1"])
            .await
            .unwrap_err();
        let refused = refused.as_db_error().expect("an ErrorResponse");
        assert_eq!(refused.code().code(), "25006");
        assert!(refused.message().contains("not DELETE"), "{refused}");
        // The connection is still usable after the error.
        let n: i64 = client
            .query_one("SELECT count(*) FROM public.t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 3);
    });
}

/// The endpoint is loopback-only: any other address is a config error at start.
#[test]
fn a_non_loopback_address_is_refused() {
    let rig = Rig::new("CREATE TABLE t (id int PRIMARY KEY);");
    let mut config = std::fs::read_to_string(&rig.config).unwrap();
    config.push_str("\n[sql]\nlisten = \"0.0.0.0:5433\"\n");
    std::fs::write(&rig.config, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["check", "--config"])
        .arg(&rig.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
