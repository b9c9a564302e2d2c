//! The binlog end behind the backlog signal, polled from a real throwaway MariaDB server.

use std::time::Duration;

use tidewater_core::backlog::BEHIND_BYTES;
use tidewater_core::Backlog;
use tidewater_harness::MariaDbServer;
use tidewater_mysql::backlog::BinlogEnd;
use tidewater_mysql::conn::Flavor;

/// Waits until the polled end satisfies `done`, returning it.
async fn wait_end(end: &BinlogEnd, done: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(at) = end.end().filter(|at| done(*at)) {
            return at;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "polled end {:?}",
            end.end()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn file(n: u64) -> String {
    format!("mariadb-bin.{n:06}")
}

#[tokio::test]
async fn the_polled_binlog_end_tells_behind_from_current() {
    let my = tokio::task::spawn_blocking(|| {
        let my = MariaDbServer::start().expect("start server");
        my.create_database("app").expect("create database");
        my.sql("app", "CREATE TABLE t (id int PRIMARY KEY, v text);")
            .expect("create table");
        my
    })
    .await
    .expect("setup task");
    let end = BinlogEnd::start(my.url("app"), Flavor::MariaDb);
    let (n, at) = wait_end(&end, |_| true).await;
    // A stream that has read up to the server's end is current.
    assert_eq!(end.backlog(&file(n), at), Backlog::Current);

    // ~200 KiB more binlog: a stream still at `at` is behind.
    let big = "x".repeat(2000);
    let inserts: String = (0..100)
        .map(|i| format!("INSERT INTO t VALUES ({i}, '{big}');"))
        .collect();
    my.sql("app", &inserts).expect("insert");
    let (n2, at2) = wait_end(&end, |(f, o)| f > n || o > at + BEHIND_BYTES).await;
    assert_eq!(n2, n, "no rotation yet");
    assert_eq!(end.backlog(&file(n), at), Backlog::Behind);
    assert_eq!(end.backlog(&file(n), at2), Backlog::Current);

    // A rotation writes only the next file's header: a stream at the old end is current.
    my.sql("app", "FLUSH BINARY LOGS;").expect("rotate");
    wait_end(&end, |(f, _)| f == n + 1).await;
    assert_eq!(end.backlog(&file(n), at2), Backlog::Current);
    // Not a binlog file name: the source cannot tell.
    assert_eq!(end.backlog("", at2), Backlog::Unknown);
}
