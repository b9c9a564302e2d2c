//! Draining a backlog: tidewater is stopped while a workload is written, then
//! timed catching up, beside the source's own change reader reading exactly
//! the same changes (PostgreSQL: `pg_recvlogical` on a copy of tidewater's
//! slot; MariaDB: `mariadb-binlog` reading the binlog files of the workload).

use std::path::Path;
use std::time::Instant;

use tidewater_harness::PgServer;

use crate::error::{BenchError, Result};
use crate::pg_client::PgClient;
use crate::runner::{wait_for, Apply, Tidewater};
use crate::source::{gtid_reached, Db, Kind};
use crate::tools::run_timed;
use crate::workload::{self, Txn, Width};
use crate::Bench;

pub struct Drain {
    pub label: &'static str,
    pub kind: Kind,
    pub tables: usize,
    pub width: Width,
    pub txns: Vec<Txn>,
    /// Time the source's own change reader(s) on the same changes.
    pub baselines: bool,
    /// Run `tidewater verify` afterwards (beside the source's client reading the tables).
    pub verify: bool,
    /// `[apply]` settings of the draining run.
    pub apply: Apply,
}

pub struct Drained {
    pub changes: u64,
    pub load_seconds: f64,
    /// From the process start to the commit of the last batch.
    pub tidewater_seconds: f64,
    pub peak_rss_mib: f64,
    /// (tool, seconds) per baseline reader.
    pub baselines: Vec<(String, f64)>,
    pub verify: Option<Verified>,
}

pub struct Verified {
    pub rows: u64,
    pub tidewater_seconds: f64,
    pub baseline_tool: String,
    pub baseline_seconds: f64,
}

impl Drained {
    pub fn rate(&self) -> f64 {
        self.changes as f64 / self.tidewater_seconds
    }

    /// Changes per second of baseline `i`.
    pub fn baseline_rate(&self, i: usize) -> Option<(&str, f64)> {
        self.baselines
            .get(i)
            .map(|(tool, s)| (tool.as_str(), self.changes as f64 / s))
    }

    pub fn describe(&self) -> String {
        format!(
            "{} changes written in {:.1} s while tidewater was stopped; tidewater drained them in {:.2} s \
             (process start to last commit); peak RSS {:.0} MiB",
            self.changes, self.load_seconds, self.tidewater_seconds, self.peak_rss_mib
        )
    }
}

/// Where the source stands after the workload: what "caught up" means.
/// Where the source's log ends: what tidewater has caught up with once it reached it.
pub enum Target {
    Lsn(String),
    Gtid(String),
}

impl Target {
    /// The end of the source's log now.
    pub fn now(db: &Db) -> Result<Target> {
        Ok(match db.kind() {
            Kind::Postgres => {
                Target::Lsn(db.sql("SELECT pg_current_wal_lsn()")?.trim().to_string())
            }
            Kind::MariaDb => Target::Gtid(db.sql("SELECT @@gtid_binlog_pos")?.trim().to_string()),
        })
    }
}

pub fn drain(bench: &Bench, spec: Drain) -> Result<Drained> {
    let (id, db) = bench.db(spec.kind, spec.label)?;
    db.sql(&db.create_tables(spec.tables, spec.width))?;
    let mut tw = bench.tidewater(&db, id, "run", &spec.apply)?;
    tw.start()?;
    tw.wait_streaming(bench.timeout(0))?;
    tw.stop()?;

    let first_binlog = if spec.baselines {
        start_baseline_copy(&db)?
    } else {
        None
    };
    let script = db.render(&spec.txns, spec.width);
    let changes = workload::total_changes(&spec.txns);
    let started = Instant::now();
    db.sql(&script)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let target = Target::now(&db)?;
    let baselines = if spec.baselines {
        let dir = bench.dir(&format!("{}-baseline", db.name()))?;
        read_changes(&db, &target, first_binlog.as_deref(), &dir)?
    } else {
        Vec::new()
    };

    tw.start()?;
    wait_caught_up(&mut tw, &db, &target, bench.timeout(changes))?;
    let last_apply = tw.metrics()?.and_then(|m| m.last_apply()).ok_or_else(|| {
        BenchError::Tidewater("caught up but /metrics has no last apply time".into())
    })?;
    let tidewater_seconds = last_apply - tw.started();
    let peak_rss_mib = tw.peak_rss_mib()?;
    tw.stop()?;
    let verify = if spec.verify {
        Some(verify(&tw, &db, spec.tables)?)
    } else {
        None
    };
    drop_pg_slots(&db)?;
    Ok(Drained {
        changes,
        load_seconds,
        tidewater_seconds,
        peak_rss_mib,
        baselines,
        verify,
    })
}

/// Positions a baseline reader where tidewater's stopped reader stands: a copy
/// of its slot (PostgreSQL), or a new binlog file (MariaDB; returns its name).
fn start_baseline_copy(db: &Db) -> Result<Option<String>> {
    match db.kind() {
        Kind::Postgres => {
            let slot = db.slot();
            // One copy for the client reader, one for the server's own decoding.
            db.sql(&format!(
                "SELECT pg_copy_logical_replication_slot('{slot}', '{slot}_baseline'); \
                 SELECT pg_copy_logical_replication_slot('{slot}', '{slot}_ceiling');"
            ))?;
            Ok(None)
        }
        Kind::MariaDb => {
            db.sql("FLUSH BINARY LOGS;")?;
            let logs = db.sql("SHOW BINARY LOGS;")?;
            let last = logs.lines().last().and_then(|l| l.split('\t').next());
            let file =
                last.ok_or_else(|| BenchError::Other("SHOW BINARY LOGS returned nothing".into()))?;
            Ok(Some(file.to_string()))
        }
    }
}

/// Times the baseline readers over the workload's changes.
fn read_changes(
    db: &Db,
    target: &Target,
    first_binlog: Option<&str>,
    dir: &Path,
) -> Result<Vec<(String, f64)>> {
    match (db, target) {
        (Db::Pg { .. }, Target::Lsn(end)) => {
            let publications =
                db.sql("SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication")?;
            let mut cmd = PgServer::tool("pg_recvlogical");
            cmd.args([
                "-d",
                &db.url(),
                "-S",
                &format!("{}_baseline", db.slot()),
                "--start",
                "--no-loop",
            ]);
            cmd.args(["-o", "proto_version=1", "-o"])
                .arg(format!("publication_names={}", publications.trim()));
            cmd.arg(format!("--endpos={end}")).args(["-f", "/dev/null"]);
            let took = run_timed(&mut cmd)?;
            // The decode ceiling: the walsender's work (WAL decoding and pgoutput) without a
            // client, as the SQL function that runs the same output plugin in the backend.
            let started = Instant::now();
            db.sql(&format!(
                "SELECT count(*) FROM pg_logical_slot_get_binary_changes('{}_ceiling', '{end}', \
                 NULL, 'proto_version', '1', 'publication_names', '{}')",
                db.slot(),
                publications.trim()
            ))?;
            let ceiling = started.elapsed();
            Ok(vec![
                (
                    "pg_recvlogical, pgoutput → /dev/null".into(),
                    took.as_secs_f64(),
                ),
                (
                    "pg_logical_slot_get_binary_changes, pgoutput in the backend, no client".into(),
                    ceiling.as_secs_f64(),
                ),
            ])
        }
        (Db::My { server, .. }, Target::Gtid(_)) => {
            let first = first_binlog.expect("a binlog file for MariaDB");
            let mut raw = server.tool("mariadb-binlog");
            raw.args(["--read-from-remote-server", "--raw", "--to-last-log"]);
            raw.arg(format!("--result-file={}/", dir.display()))
                .arg(first);
            let raw_took = run_timed(&mut raw)?;
            let mut decoded = server.tool("mariadb-binlog");
            decoded.args([
                "--read-from-remote-server",
                "--to-last-log",
                "--base64-output=decode-rows",
                "-v",
            ]);
            decoded.arg(first);
            let decoded_took = run_timed(&mut decoded)?;
            Ok(vec![
                ("mariadb-binlog --read-from-remote-server --raw".into(), raw_took.as_secs_f64()),
                (
                    "mariadb-binlog --read-from-remote-server --base64-output=decode-rows -v → /dev/null".into(),
                    decoded_took.as_secs_f64(),
                ),
            ])
        }
        _ => unreachable!("targets match their source"),
    }
}

/// Waits until tidewater has applied the source's log up to `target`.
pub fn wait_caught_up(
    tw: &mut Tidewater,
    db: &Db,
    target: &Target,
    timeout: std::time::Duration,
) -> Result<()> {
    match target {
        Target::Lsn(lsn) => {
            let client = PgClient::connect(&db.url())?;
            let slot = db.slot();
            wait_for(
                timeout,
                "the slot to confirm the end of the workload",
                || {
                    tw.check_alive()?;
                    client.slot_confirmed(&slot, lsn)
                },
            )
        }
        Target::Gtid(gtid) => {
            tw.wait_metrics(timeout, "the replica to reach the workload's GTID", |m| {
                m.position().is_some_and(|p| gtid_reached(p, gtid))
            })?;
            Ok(())
        }
    }
}

/// `tidewater verify` of the stopped replica, beside the source's client reading every table in key order.
fn verify(tw: &Tidewater, db: &Db, tables: usize) -> Result<Verified> {
    let mut rows = 0;
    let mut baseline_seconds = 0.0;
    for t in 0..tables.max(1) {
        let table = workload::table_name(t);
        rows += db
            .sql(&format!("SELECT count(*) FROM {table};"))?
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        let took =
            run_timed(&mut db.export_command(&format!("SELECT * FROM {table} ORDER BY id")))?;
        baseline_seconds += took.as_secs_f64();
    }
    let took = tw.verify()?;
    let baseline_tool = match db.kind() {
        Kind::Postgres => "psql \\copy … TO STDOUT (csv) in key order → /dev/null",
        Kind::MariaDb => "mariadb -B --quick in key order → /dev/null",
    };
    Ok(Verified {
        rows,
        tidewater_seconds: took.as_secs_f64(),
        baseline_tool: baseline_tool.into(),
        baseline_seconds,
    })
}

/// PostgreSQL: drops the database's slots (tidewater's and the baseline's) so they hold no WAL.
pub fn drop_pg_slots(db: &Db) -> Result<()> {
    if db.kind() == Kind::Postgres {
        db.sql(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name LIKE '{}%' AND NOT active;",
            db.slot()
        ))?;
    }
    Ok(())
}
