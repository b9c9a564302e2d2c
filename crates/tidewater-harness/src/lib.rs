//! Throwaway PostgreSQL and MariaDB servers for tidewater's integration
//! tests, benchmarks and the `tidewater demo` command.
//!
//! [`PgServer::start`] runs `initdb` into a fresh directory under `/tmp`, then
//! starts `postgres` on a free port of 127.0.0.1 with `wal_level=logical`,
//! trust authentication and durability switched off (`fsync=off`) for speed.
//! Dropping the server stops it (immediate mode) and deletes the directory.
//!
//! Binaries come from `$TIDEWATER_PG_BINDIR`, else `pg_config --bindir`, else
//! the newest `/usr/lib/postgresql/*/bin`, else `PATH`. When running as root
//! the server binaries are run as the `postgres` user through `runuser`.
//!
//! [`MariaDbServer::start`] likewise runs `mariadb-install-db` into a fresh
//! directory under `/tmp` and starts `mariadbd` on a free port of 127.0.0.1,
//! set up as a CDC source: binary log on with `binlog_format=ROW`,
//! `binlog_row_image=FULL`, `binlog_row_metadata=FULL`, `gtid_strict_mode=1`,
//! `server_id=1`, utf8mb4 and UTC; `root` has no password and real grants
//! (no `--skip-grant-tables`); commits are not synced to disk. Dropping the
//! server kills it and deletes the directory. Binaries come from `/usr/sbin`,
//! `/usr/bin`, else `PATH`; when running as root both get `--user=mysql`,
//! so `mariadbd` switches to the `mysql` account by itself.
//!
//! [`BqEmulator::start`] runs the BigQuery emulator (PyPI `bqemulator`, installed by
//! `scripts/install-bqemulator.sh`) in memory with its REST API on a free port; dropping it
//! kills it. [`StrictProxy`] sits between the sink and the emulator and refuses DML on
//! tables that received streamed rows, as BigQuery does.
//!
//! Everything is blocking; from async code call it via
//! `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidewater_harness::{wait_until, PgServer};
//!
//! # fn main() -> Result<(), tidewater_harness::HarnessError> {
//! let mut pg = PgServer::start()?;
//! pg.create_database("app")?;
//! pg.psql("app", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")?;
//! let url = pg.url("app"); // hand this to the code under test
//! # let _ = url;
//!
//! // Synchronise on observable state with a deadline, never with sleeps.
//! wait_until(Duration::from_secs(10), "row 1 to exist", || {
//!     pg.psql("app", "SELECT count(*) FROM t").is_ok_and(|out| out.trim() == "1")
//! })?;
//!
//! pg.restart()?; // same cluster, same port
//! eprintln!("server log: {}", pg.log_path().display());
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! use tidewater_harness::MariaDbServer;
//!
//! # fn main() -> Result<(), tidewater_harness::HarnessError> {
//! let mut my = MariaDbServer::start()?;
//! my.create_database("app")?;
//! my.sql("app", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');")?;
//! assert_eq!(my.sql("app", "SELECT id, v FROM t")?, "1\ta\n"); // -N -B: tab-separated
//! let url = my.url("app"); // mysql://root@127.0.0.1:PORT/app
//! # let _ = url;
//! my.restart()?; // same datadir, same port
//! # Ok(())
//! # }
//! ```

mod bins;
mod bqemu;
mod bqstrict;
mod error;
mod instance;
mod launch;
mod mariadb;
mod server;

use std::time::{Duration, Instant};

pub use bqemu::{BqEmulator, BQ_PROJECT};
pub use bqstrict::{dml_targets, StrictLog, StrictProxy};
pub use error::HarnessError;
pub use mariadb::{MariaDbOptions, MariaDbServer};
pub use server::{PgOptions, PgServer};

/// Polls `cond` every 20 ms until it returns true or `timeout` passes; on
/// timeout returns [`HarnessError::Timeout`] naming `what`.
///
/// Tests should wait on a condition with a deadline, never sleep to synchronise.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<(), HarnessError> {
    const POLL: Duration = Duration::from_millis(20);
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// A free TCP port on 127.0.0.1 (bind port 0, read it, release it).
///
/// Another process may grab it before we use it; [`PgServer::start`] and
/// [`MariaDbServer::start`] retry.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 must work on a test machine")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_once_condition_holds() {
        let mut calls = 0;
        wait_until(Duration::from_secs(5), "third call", || {
            calls += 1;
            calls >= 3
        })
        .unwrap();
        assert_eq!(calls, 3);
    }

    #[test]
    fn wait_until_times_out_naming_what() {
        let err = wait_until(Duration::from_millis(50), "the impossible", || false).unwrap_err();
        assert!(matches!(err, HarnessError::Timeout { .. }));
        assert!(err.to_string().contains("the impossible"), "{err}");
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
