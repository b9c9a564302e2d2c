//! The throwaway MariaDB server.

mod bins;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use self::bins::{command, hand_over, install_db, percent_encode, user_arg, INNODB_ARGS};

use crate::bins::run;
use crate::instance::Instance;
use crate::launch::{self, Launchable, HOST};
use crate::{wait_until, HarnessError};

const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const SOCKET_FILE: &str = "mysqld.sock";
/// What `mariadbd` logs when it lost the race for its port ...
const BIND_FAILED: &str = "Bind on TCP/IP port";
/// ... and once it listens. Until then a client could be talking to a
/// squatter, which may never answer the handshake.
const READY: &str = "ready for connections";

/// Knobs for [`MariaDbServer::start_with`].
#[derive(Debug, Clone)]
pub struct MariaDbOptions {
    /// Extra `mariadbd` arguments (`--name=value`), appended last and so
    /// overriding the defaults, e.g. `--binlog-format=MIXED`. Server only:
    /// `mariadb-install-db` does not see them. Keep `--log-error` and
    /// `--port`: readiness is read from that log and probed on that port.
    pub extra_args: Vec<String>,
    /// Binary log on (`--log-bin=<data>/mariadb-bin`) when true, the default.
    pub binlog: bool,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            binlog: true,
        }
    }
}

/// A running MariaDB server in its own temp dir; killed and deleted on drop.
pub struct MariaDbServer {
    opts: MariaDbOptions,
    /// Its child is `mariadbd` itself: as root it drops to `mysql` on its own, no wrapper.
    instance: Instance,
}

impl MariaDbServer {
    pub fn start() -> Result<MariaDbServer, HarnessError> {
        Self::start_with(MariaDbOptions::default())
    }

    pub fn start_with(opts: MariaDbOptions) -> Result<MariaDbServer, HarnessError> {
        let instance = Instance::create("MariaDB", "tw-my-", SOCKET_FILE)?;
        // A private tmpdir: in the shared /tmp, temp table files of parallel
        // bootstraps were seen deleted under them.
        let tmp_dir = instance.dir().join("tmp");
        fs::create_dir(&tmp_dir).map_err(HarnessError::io("creating tmpdir"))?;
        hand_over(instance.dir())?;

        let started = Instant::now();
        install_db(instance.dir(), &instance.data_dir, &tmp_dir)?;
        tracing::debug!(elapsed = ?started.elapsed(), dir = %instance.data_dir.display(), "mariadb-install-db done");

        launch::start_on_free_port(MariaDbServer { opts, instance })
    }

    pub fn port(&self) -> u16 {
        self.instance.port
    }

    pub fn host(&self) -> &str {
        HOST
    }

    /// `mysql://root@127.0.0.1:PORT/DB`; root has no password.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@{HOST}:{}/{db}", self.instance.port)
    }

    /// `mysql://USER:PASSWORD@127.0.0.1:PORT/DB`, user and password
    /// percent-encoded; an empty password leaves out the `:PASSWORD` part.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        let mut userinfo = percent_encode(user);
        if !password.is_empty() {
            userinfo.push(':');
            userinfo.push_str(&percent_encode(password));
        }
        format!("mysql://{userinfo}@{HOST}:{}/{db}", self.instance.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.instance.data_dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.instance.log_path.clone()
    }

    /// Process id of the running `mariadbd`, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.instance.child.as_ref().map(Child::id)
    }

    /// Runs `sql` (any number of `;`-terminated statements) as root through
    /// the `mariadb` client in batch mode, stopping at the first error; an
    /// empty `db` means no default database.
    ///
    /// Output is `-N -B`: no header, one line per row, tab-separated columns,
    /// NULL as `NULL`, and tabs, newlines and backslashes in values escaped.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String, HarnessError> {
        let mut cmd = self.client();
        cmd.args(["-N", "-B"]);
        if !db.is_empty() {
            cmd.arg(format!("--database={db}"));
        }
        run(&mut cmd, Some(sql))
    }

    pub fn create_database(&self, name: &str) -> Result<(), HarnessError> {
        let ident = name.replace('`', "``");
        self.sql("", &format!("CREATE DATABASE `{ident}`;"))
            .map(drop)
    }

    /// Orderly shutdown (SIGTERM), then the same datadir comes back on the
    /// same port; binlogs and GTID state are kept.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        launch::restart(self, |db| db.shutdown(true))
    }

    /// SIGKILL, like a crash; a later [`restart`](Self::restart) runs crash
    /// recovery. Commits survive: they reach the OS on commit, just unsynced.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        self.shutdown(false)
    }

    /// `mariadbd` arguments; `--no-defaults` must come first.
    fn server_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        let tmp = self.instance.dir();
        let socket = self.instance.sock_dir.join(SOCKET_FILE);
        let mut args = vec!["--no-defaults".to_owned()];
        args.extend(user_arg());
        args.extend([
            format!("--datadir={}", path(&self.instance.data_dir)),
            format!("--port={}", self.instance.port),
            format!("--bind-address={HOST}"),
            format!("--socket={}", path(&socket)),
            format!("--pid-file={}", path(&tmp.join("mariadbd.pid"))),
            format!("--log-error={}", path(&self.instance.log_path)),
            format!("--tmpdir={}", path(&tmp.join("tmp"))),
        ]);
        if self.opts.binlog {
            args.push(format!(
                "--log-bin={}",
                path(&self.instance.data_dir.join("mariadb-bin"))
            ));
        }
        let defaults = [
            "--server-id=1",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--gtid-strict-mode=1",
            "--sync-binlog=0",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--default-time-zone=+00:00",
            "--skip-name-resolve",
        ];
        args.extend(defaults.iter().chain(&INNODB_ARGS).map(|s| s.to_string()));
        args.extend(self.opts.extra_args.iter().cloned());
        args
    }

    /// A root query over TCP succeeds and reports *our* datadir (so the port
    /// is not answered by a server that won a bind race).
    fn answers_as_us(&self) -> bool {
        let mut cmd = self.client();
        cmd.args(["-N", "-B", "--connect-timeout=5", "-e", "SELECT @@datadir"]);
        cmd.stdin(Stdio::null()).stderr(Stdio::null());
        cmd.output().is_ok_and(|out| {
            out.status.success()
                && Path::new(String::from_utf8_lossy(&out.stdout).trim()) == self.instance.data_dir
        })
    }

    /// The `mariadb` client, logged in as root over TCP.
    fn client(&self) -> Command {
        let mut cmd = self.tool("mariadb");
        cmd.arg("--default-character-set=utf8mb4");
        cmd
    }

    /// A MariaDB client tool (`mariadb`, `mariadb-binlog`, ...) connecting to
    /// this server as root over TCP; add the tool's own arguments.
    pub fn tool(&self, name: &str) -> Command {
        let mut cmd = command(name, self.instance.dir());
        cmd.args([
            "--no-defaults",
            "--protocol=TCP",
            "--user=root",
            "--host",
            HOST,
            "--port",
        ]);
        cmd.arg(self.instance.port.to_string());
        cmd
    }

    /// `clean`: SIGTERM and wait for an orderly exit; otherwise (or if that
    /// fails) SIGKILL. The child is `mariadbd` itself, so signals reach it.
    fn shutdown(&mut self, clean: bool) -> Result<(), HarnessError> {
        let Some(mut child) = self.instance.child.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut outcome = Ok(());
        if clean && matches!(child.try_wait(), Ok(None)) {
            let mut term = Command::new("kill");
            term.args(["-TERM", &child.id().to_string()]);
            outcome = run(&mut term, None).and_then(|_| {
                wait_until(STOP_TIMEOUT, "mariadbd to shut down", || {
                    !matches!(child.try_wait(), Ok(None))
                })
            });
        }
        // A no-op once it has exited (std remembers the reaped status).
        let _ = child.kill();
        let _ = child.wait();
        tracing::debug!(elapsed = ?started.elapsed(), clean, port = self.instance.port, "mariadbd stopped");
        outcome
    }
}

impl Launchable for MariaDbServer {
    const PROGRAM: &'static str = "mariadbd";
    const READY_MEANS: &'static str = "answering queries";
    /// After a failed bind `mariadbd` takes a while to abort: do not wait for it.
    const QUIT_ON_PORT_TAKEN: bool = true;

    fn instance(&self) -> &Instance {
        &self.instance
    }

    fn instance_mut(&mut self) -> &mut Instance {
        &mut self.instance
    }

    fn server_command(&self) -> Command {
        let mut cmd = command("mariadbd", self.instance.dir());
        cmd.args(self.server_args());
        cmd
    }

    fn port_taken(log: &str) -> bool {
        log.contains(BIND_FAILED)
    }

    fn is_ready(&self, log: &str) -> bool {
        log.contains(READY) && self.answers_as_us()
    }

    fn stop_now(&mut self) -> Result<(), HarnessError> {
        self.stop()
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        launch::stop_on_drop(self);
    }
}

impl std::fmt::Debug for MariaDbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.instance.debug("MariaDbServer", f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_reported_as_retryable() {
        let db = MariaDbServer::start().unwrap();
        launch::assert_taken_port_is_retryable(db, BIND_FAILED);
    }
}
