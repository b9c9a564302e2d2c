//! `tidewater teardown`: what tidewater created at the source is gone afterwards (asserted
//! from the source's catalog), the replica stays unless asked, and a running pipeline is
//! never torn down under it.

use crate::common;

use std::time::Duration;

use common::{expect, run_cli, Rig, SLOT};

const T: Duration = Duration::from_secs(120);

/// Slots and publications at the source, as `name` lines.
fn source_objects(rig: &Rig) -> String {
    rig.sql(
        "SELECT 'slot ' || slot_name FROM pg_replication_slots \
         UNION ALL SELECT 'publication ' || pubname FROM pg_publication ORDER BY 1",
    )
}

#[test]
fn teardown_drops_slot_and_publications_and_keeps_the_replica() {
    let mut rig = Rig::new(
        "CREATE TABLE orders (id int PRIMARY KEY, note text); \
         CREATE TABLE events (note text); INSERT INTO orders VALUES (1, 'a');",
    );
    rig.start();
    rig.wait_caught_up(T);
    let created = source_objects(&rig);
    assert!(created.contains(&format!("slot {SLOT}")), "{created}");
    assert!(created.contains("publication tidewater"), "{created}");
    assert!(
        created.contains("publication tidewater_insert_only"),
        "{created}"
    );

    // Never under a running pipeline.
    let out = expect(
        run_cli(&["teardown", "--yes"], &rig.config),
        2,
        &["teardown refuses while `tidewater run` is running"],
    );
    assert!(!out.contains("dropped"), "{out}");
    assert_eq!(source_objects(&rig), created);
    rig.stop();

    // Without --yes: a list, nothing dropped.
    expect(
        run_cli(&["teardown"], &rig.config),
        0,
        &[
            &format!("source: would drop replication slot {SLOT} (retaining "),
            "source: would drop publication tidewater\n",
            "source: would drop publication tidewater_insert_only\n",
            "replica: kept",
            "nothing was dropped",
        ],
    );
    assert_eq!(source_objects(&rig), created);

    expect(
        run_cli(&["teardown", "--yes"], &rig.config),
        0,
        &[
            &format!("source: dropped replication slot {SLOT}"),
            "source: dropped publication tidewater\n",
            "replica: kept",
        ],
    );
    assert_eq!(source_objects(&rig).trim(), "", "left at the source");
    assert!(rig.db.exists(), "the replica is kept");

    // Again: nothing left to drop; --drop-replica deletes the file.
    expect(
        run_cli(&["teardown", "--yes", "--drop-replica"], &rig.config),
        0,
        &["source: nothing to drop", "replica: deleted"],
    );
    assert!(!rig.db.exists(), "the replica is deleted");
}

#[test]
fn teardown_of_a_mysql_pipeline_has_nothing_to_drop_at_the_source() {
    let mut rig = Rig::mysql("CREATE TABLE orders (id int PRIMARY KEY, note text);");
    rig.start();
    rig.wait_caught_up(T);
    rig.stop();
    expect(
        run_cli(&["teardown", "--yes"], &rig.config),
        0,
        &[
            "source: nothing to drop: a MySQL/MariaDB binlog reader",
            "replica: kept",
        ],
    );
    assert!(rig.db.exists());
}
