//! The GTID state a chunked copy derives from its previous one and the binlog events in
//! between (`tidewater_mysql::gtid_pos`) equals MariaDB's own `BINLOG_GTID_POS`, at every
//! transaction boundary of a real binlog.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tidewater_harness::MariaDbServer;
use tidewater_mysql::gtid::MariaState;
use tidewater_mysql::gtid_pos::{gtid_at, Derived, GtidMemo};

async fn binlog_gtid_pos(conn: &mut Conn, file: &str, pos: u64) -> MariaState {
    let g: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .expect("BINLOG_GTID_POS");
    MariaState::parse(&g.expect("a state at a boundary")).expect("parse")
}

#[tokio::test]
async fn derived_gtid_states_equal_binlog_gtid_pos_at_every_boundary() {
    let my = tokio::task::spawn_blocking(|| {
        let my = MariaDbServer::start().expect("start server");
        my.create_database("app").expect("create database");
        let big = "x".repeat(2000);
        let mut sql = String::from("CREATE TABLE t (id int PRIMARY KEY, v text);\n");
        // A prefix of ~600 KB, so later gaps are smaller than it and are walked forward.
        sql += "BEGIN;\n";
        for i in 0..300 {
            sql += &format!("INSERT INTO t VALUES ({i}, '{big}');\n");
        }
        sql += "COMMIT;\n";
        for i in 300..305 {
            sql += &format!("INSERT INTO t VALUES ({i}, 'a');\n");
        }
        // A second replication domain, and DDL (a transaction without BEGIN).
        sql += "SET SESSION gtid_domain_id = 1;\nINSERT INTO t VALUES (400, 'b');\n";
        sql += "CREATE TABLE u (id int PRIMARY KEY);\nSET SESSION gtid_domain_id = 0;\n";
        sql += "INSERT INTO t VALUES (401, 'c');\n";
        // One transaction of ~4500 events: more than a page of SHOW BINLOG EVENTS.
        sql += "BEGIN;\n";
        for i in 1000..2500 {
            sql += &format!("INSERT INTO u VALUES ({i});\n");
        }
        sql += "COMMIT;\n";
        // An XA transaction logs two GTIDs (its prepare and its commit).
        sql += "XA START 'x1';\nINSERT INTO t VALUES (402, 'd');\nXA END 'x1';\n";
        sql += "XA PREPARE 'x1';\nXA COMMIT 'x1';\n";
        sql += "SET SESSION gtid_domain_id = 1;\nINSERT INTO t VALUES (403, 'e');\n";
        my.sql("app", &sql).expect("writes");
        my
    })
    .await
    .expect("setup task");
    let mut conn = Conn::from_url(my.url("app")).await.expect("connect");
    let (file, end): (String, u64) = {
        let row: Row = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .expect("status")
            .expect("a binlog");
        (row.get(0).expect("file"), row.get(1).expect("pos"))
    };
    // Every transaction starts with its GTID event: those offsets and the end are the
    // boundaries.
    let events: Vec<Row> = conn
        .query(format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .expect("events");
    let mut bounds: Vec<u64> = events
        .iter()
        .filter(|r| r.get::<String, _>(2).as_deref() == Some("Gtid"))
        .map(|r| r.get::<u64, _>(1).expect("pos"))
        .collect();
    bounds.push(end);
    assert!(bounds.len() > 15, "{bounds:?}");

    let (mut forward, mut paged) = (0, 0);
    for (i, &from) in bounds.iter().enumerate() {
        for &to in &bounds[i..] {
            let memo = GtidMemo::default();
            let (first, how) = gtid_at(&mut conn, &file, from, Some(&memo))
                .await
                .expect("first");
            assert_eq!(how, Derived::Asked);
            assert_eq!(first, Some(binlog_gtid_pos(&mut conn, &file, from).await));
            let (state, how) = gtid_at(&mut conn, &file, to, Some(&memo))
                .await
                .expect("next");
            let want = binlog_gtid_pos(&mut conn, &file, to).await;
            assert_eq!(
                state.as_ref(),
                Some(&want),
                "from {from} to {to} ({how:?}): derived {state:?}, BINLOG_GTID_POS {want}"
            );
            match how {
                Derived::Same => assert_eq!(from, to),
                Derived::Forward => {
                    forward += 1;
                    paged += usize::from(to - from > 100_000);
                }
                Derived::Asked => assert!(to - from > from, "asked from {from} to {to}"),
            }
        }
    }
    assert!(forward > 50, "only {forward} states were derived forward");
    assert!(paged > 0, "no derivation crossed the large transaction");
}
