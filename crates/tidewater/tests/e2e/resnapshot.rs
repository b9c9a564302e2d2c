//! `tidewater resnapshot --tables GLOB` (`POST /resnapshot` on the running process): a
//! replica made to differ from the source while stopped (rows deleted, values changed) is
//! repaired by copying the table again while `run` keeps streaming and a writer keeps
//! changing it; an unknown table is refused with the fix, and without a running process the
//! command says so.

use crate::chunked_snapshot::{assert_same_rows, my_setup, transaction};
use crate::common;
use common::workload::Workload;
use common::{expect, run_cli, Rig};
use std::time::Duration;

#[test]
fn resnapshot_repairs_a_table_while_streaming_under_writes() {
    let mut rig = Rig::mysql(&my_setup());
    let query = "SELECT concat_ws(',', id, coalesce(v, '-'), n) FROM big";
    // Not running: said, with the fix.
    expect(
        run_cli(&["resnapshot", "--tables", "shop.big"], &rig.config),
        2,
        &["no `tidewater run` is running", "start `tidewater run`"],
    );
    rig.start();
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    // The replica made wrong behind tidewater's back.
    let damage = tidewater_duckdb::duckdb::Connection::open(&rig.db).expect("open replica");
    damage
        .execute_batch(
            "DELETE FROM shop.big WHERE id <= 100; \
             UPDATE shop.big SET v = 'wrong' WHERE id BETWEEN 200 AND 300; \
             INSERT INTO shop.big VALUES (-1, 'extra', 0);",
        )
        .expect("damage the replica");
    drop(damage);
    assert_ne!(rig.source_lines(query).len(), 0);
    let workload = Workload::start(&rig, transaction);
    rig.start();
    // Once the process publishes its address, an unknown table is refused with the fix.
    let mut unknown = (0, String::new());
    tidewater_harness::wait_until(
        Duration::from_secs(60),
        "run to publish its address",
        || {
            unknown = run_cli(&["resnapshot", "--tables", "shop.nope*"], &rig.config);
            !unknown.1.contains("no `tidewater run` is running")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    expect(
        unknown,
        2,
        &["no replicated table matches shop.nope*", "tidewater status"],
    );
    let asked = run_cli(&["resnapshot", "--tables", "shop.big"], &rig.config);
    expect(asked, 0, &["copying again while streaming: shop.big"]);
    let copied = "the table is copied again";
    tidewater_harness::wait_until(Duration::from_secs(120), "the re-copy", || {
        rig.log().contains(copied)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let sent = workload.finish();
    rig.wait_caught_up(Duration::from_secs(300));
    rig.stop();
    assert!(sent > 0);
    assert_same_rows(&rig, query);
    assert_same_rows(
        &rig,
        "SELECT concat_ws(',', a, b, coalesce(v, '-')) FROM comp",
    );
}
