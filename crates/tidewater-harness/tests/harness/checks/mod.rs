//! Checks that hold for both throwaway servers, written once against
//! [`Throwaway`], the part of their API the two have in common.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewater_harness::{wait_until, HarnessError, MariaDbServer, PgServer};

pub trait Throwaway {
    /// `psql` or `sql`: runs `sql` in `db` through the server's own client.
    fn query(&self, db: &str, sql: &str) -> Result<String, HarnessError>;
    fn create_database(&self, name: &str) -> Result<(), HarnessError>;
    fn port(&self) -> u16;
    fn host(&self) -> &str;
    fn url(&self, db: &str) -> String;
    fn data_dir(&self) -> &Path;
    fn log_path(&self) -> PathBuf;
    fn stop(&mut self) -> Result<(), HarnessError>;
    fn restart(&mut self) -> Result<(), HarnessError>;
}

macro_rules! throwaway {
    ($server:ty, $query:ident) => {
        impl Throwaway for $server {
            fn query(&self, db: &str, sql: &str) -> Result<String, HarnessError> {
                self.$query(db, sql)
            }
            fn create_database(&self, name: &str) -> Result<(), HarnessError> {
                <$server>::create_database(self, name)
            }
            fn port(&self) -> u16 {
                <$server>::port(self)
            }
            fn host(&self) -> &str {
                <$server>::host(self)
            }
            fn url(&self, db: &str) -> String {
                <$server>::url(self, db)
            }
            fn data_dir(&self) -> &Path {
                <$server>::data_dir(self)
            }
            fn log_path(&self) -> PathBuf {
                <$server>::log_path(self)
            }
            fn stop(&mut self) -> Result<(), HarnessError> {
                <$server>::stop(self)
            }
            fn restart(&mut self) -> Result<(), HarnessError> {
                <$server>::restart(self)
            }
        }
    };
}

throwaway!(PgServer, psql);
throwaway!(MariaDbServer, sql);

/// A fresh server is not on the machine's own `usual_port`, its URL is
/// `<url_base>@127.0.0.1:PORT/DB`, its data dir holds `marker`, and it has
/// a log. Returns its port.
pub fn check_fresh(server: &impl Throwaway, usual_port: u16, url_base: &str, marker: &str) -> u16 {
    let port = server.port();
    assert_ne!(port, usual_port, "must never use the machine's own server");
    assert_eq!(server.host(), "127.0.0.1");
    let url = format!("{url_base}@127.0.0.1:{port}/app");
    assert_eq!(server.url("app"), url);
    assert!(server.data_dir().join(marker).exists(), "no {marker}");
    assert!(server.log_path().is_file());
    port
}

/// Unwraps, printing the server log path so failures can be diagnosed.
pub fn ok<T>(server: &impl Throwaway, r: Result<T, HarnessError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}\n(server log: {})", server.log_path().display()))
}

/// The output of `sql` in `db`, trimmed: for queries of a single value.
pub fn value(server: &impl Throwaway, db: &str, sql: &str) -> String {
    ok(server, server.query(db, sql)).trim().to_owned()
}

/// Reads back the table [`create_app_table`] makes.
pub const APP_ROWS: &str = "SELECT id, v FROM t ORDER BY id";

/// Creates database `app` holding `t (id int PRIMARY KEY, v text)`, filled
/// with the rows `values` (an SQL `VALUES` list).
pub fn create_app_table(server: &impl Throwaway, values: &str) {
    ok(server, server.create_database("app"));
    let sql =
        format!("CREATE TABLE t (id int PRIMARY KEY, v text);\nINSERT INTO t VALUES {values};");
    ok(server, server.query("app", &sql));
}

/// Restarts `server`, which must come back on the same port.
pub fn restart(server: &mut impl Throwaway) {
    let port = server.port();
    let restarted = server.restart();
    ok(server, restarted);
    assert_eq!(server.port(), port, "restart keeps the port");
}

/// Stopping twice is fine and leaves the server down, with its port free.
pub fn check_stop_is_idempotent(server: &mut impl Throwaway, db: &str) {
    server.stop().unwrap();
    server.stop().unwrap();
    assert!(server.query(db, "SELECT 1").is_err());
    TcpListener::bind(("127.0.0.1", server.port())).expect("port is free after stop");
}

/// After a stop (a crash), a restart recovers: `sql` in `db`, reading back
/// committed data, comes to return `expected`.
pub fn check_restart_recovers(server: &mut impl Throwaway, db: &str, sql: &str, expected: &str) {
    restart(server);
    wait_until(Duration::from_secs(10), "kept row readable", || {
        server.query(db, sql).is_ok_and(|o| o.trim() == expected)
    })
    .unwrap();
}

/// A failing statement in `db` stops the batch and the error names `client`
/// and carries the server's message; so does creating a database twice.
pub fn check_errors_name_client_and_stderr(server: &impl Throwaway, db: &str, client: &str) {
    let err = server
        .query(db, "SELECT 1; SELECT * FROM no_such_table; SELECT 2;")
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(client), "{msg}");
    assert!(msg.contains("no_such_table"), "{msg}");
    assert!(server.create_database("dup").is_ok());
    let dup = server.create_database("dup").unwrap_err().to_string();
    assert!(dup.contains("exists"), "{dup}");
}

/// Dropping `server` deletes its files and frees its port.
pub fn check_drop_cleans_up(server: impl Throwaway) {
    let port = server.port();
    let data_dir = server.data_dir().to_path_buf();
    let root = data_dir.parent().unwrap().to_path_buf();
    drop(server);
    let gone = |dir: &Path| assert!(!dir.exists(), "{} survived drop", dir.display());
    gone(&data_dir);
    gone(&root);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still answering"
    );
    TcpListener::bind(("127.0.0.1", port)).expect("port is free after drop");
}
