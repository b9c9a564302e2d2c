//! The longest source transaction tidewater holds open while it copies (issue 15: a long
//! transaction holds back InnoDB purge and PostgreSQL's xmin horizon), sampled from the
//! source's own view of its sessions while a step of the scenario runs:
//!
//! - PostgreSQL: `clock_timestamp() - xact_start` of the sessions named `tidewater` in
//!   `pg_stat_activity` (fractions of a second).
//! - MariaDB: the `ACTIVE N sec` of each open transaction in `SHOW ENGINE INNODB STATUS`
//!   (whole seconds; `information_schema.innodb_trx` keeps listing a committed read-only
//!   transaction with its old start time, see the e2e test of the chunked copy). Only
//!   tidewater runs transactions on the suite's server while a scenario measures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::Result;
use crate::source::{Db, Kind};

/// How often the source is asked (pacing: each sample is a client process start).
const EVERY: Duration = Duration::from_millis(100);

/// What the samples saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxAges {
    /// The oldest open transaction seen, seconds.
    pub longest: f64,
    pub samples: u32,
    /// Samples that saw an open transaction (a measure that never sees one measures nothing).
    pub seen: u32,
}

impl TxAges {
    pub fn describe(&self) -> String {
        format!(
            "{} samples every {} ms, {} saw an open transaction",
            self.samples,
            EVERY.as_millis(),
            self.seen
        )
    }
}

/// Runs `step` while sampling the transactions tidewater holds open at `db`'s server.
pub fn sample_while<T>(db: &Db, step: impl FnOnce() -> T) -> (T, Result<TxAges>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut ages = TxAges::default();
            while !stop.load(Ordering::Relaxed) {
                let open = open_transactions(db)?;
                ages.samples += 1;
                ages.seen += u32::from(!open.is_empty());
                ages.longest = open.into_iter().fold(ages.longest, f64::max);
                std::thread::sleep(EVERY);
            }
            Ok(ages)
        });
        let out = step();
        stop.store(true, Ordering::Relaxed);
        let ages = sampler.join().expect("the transaction sampler panicked");
        (out, ages)
    })
}

/// The ages (seconds) of the transactions open now.
fn open_transactions(db: &Db) -> Result<Vec<f64>> {
    Ok(match db.kind() {
        Kind::Postgres => db
            .sql(
                "SELECT extract(epoch FROM clock_timestamp() - xact_start) FROM pg_stat_activity \
                 WHERE application_name = 'tidewater' AND xact_start IS NOT NULL \
                 AND pid <> pg_backend_pid();",
            )?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
        Kind::MariaDb => innodb_active(&db.sql("SHOW ENGINE INNODB STATUS;")?),
    })
}

/// The `ACTIVE N sec` figures of `SHOW ENGINE INNODB STATUS`.
fn innodb_active(status: &str) -> Vec<f64> {
    status
        .split("ACTIVE ")
        .skip(1)
        .filter_map(|s| s.split(" sec").next()?.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_innodb_transaction_ages() {
        let status = "---TRANSACTION 421, ACTIVE 3 sec\\nmysql tables in use 1\\n\
                      ---TRANSACTION 422, not started\\n---TRANSACTION 423, ACTIVE 0 sec fetching rows";
        assert_eq!(innodb_active(status), vec![3.0, 0.0]);
        assert!(innodb_active("no transactions").is_empty());
    }
}
