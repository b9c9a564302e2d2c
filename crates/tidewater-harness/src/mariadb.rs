//! The throwaway MariaDB server.

mod bins;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use self::bins::{command, hand_over, install_db, percent_encode, user_arg, INNODB_ARGS};

use crate::bins::{describe, run};
use crate::server::{log_since, log_tail, short_tmp_root};
use crate::{free_port, wait_until, HarnessError};

const HOST: &str = "127.0.0.1";
const SERVER: &str = "MariaDB";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;
/// `sun_path` is 108 bytes including the NUL terminator.
const MAX_SOCKET_PATH: usize = 107;
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
    port: u16,
    data_dir: PathBuf,
    socket: PathBuf,
    log_path: PathBuf,
    opts: MariaDbOptions,
    /// `mariadbd` itself: as root it drops to `mysql` on its own, no wrapper.
    child: Option<Child>,
    /// Declared last: dropped after `Drop::drop` has stopped the server.
    tmp: TempDir,
}

/// Why a single launch attempt failed; only a lost port race is worth retrying.
enum Launch {
    PortTaken(HarnessError),
    Fatal(HarnessError),
}

impl MariaDbServer {
    pub fn start() -> Result<MariaDbServer, HarnessError> {
        Self::start_with(MariaDbOptions::default())
    }

    pub fn start_with(opts: MariaDbOptions) -> Result<MariaDbServer, HarnessError> {
        let tmp = tempfile::Builder::new()
            .prefix("tw-my-")
            .tempdir_in(short_tmp_root())
            .map_err(HarnessError::io("creating temp dir"))?;
        let sock_dir = tmp.path().join("sock");
        let socket = sock_dir.join("mysqld.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(HarnessError::Start {
                server: SERVER,
                reason: format!("socket {} is too long for a unix socket", socket.display()),
                log_tail: String::new(),
            });
        }
        fs::create_dir(&sock_dir).map_err(HarnessError::io("creating socket dir"))?;
        // A private tmpdir: in the shared /tmp, temp table files of parallel
        // bootstraps were seen deleted under them.
        let tmp_dir = tmp.path().join("tmp");
        fs::create_dir(&tmp_dir).map_err(HarnessError::io("creating tmpdir"))?;
        let log_path = tmp.path().join("server.log");
        File::create(&log_path).map_err(HarnessError::io("creating server log"))?;
        hand_over(tmp.path())?;

        let data_dir = tmp.path().join("data");
        let started = Instant::now();
        install_db(tmp.path(), &data_dir, &tmp_dir)?;
        tracing::debug!(elapsed = ?started.elapsed(), dir = %data_dir.display(), "mariadb-install-db done");

        let mut server = MariaDbServer {
            port: 0,
            data_dir,
            socket,
            log_path,
            opts,
            child: None,
            tmp,
        };
        let mut last = None;
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(Launch::Fatal(e)) => return Err(e),
                Err(Launch::PortTaken(e)) => {
                    tracing::debug!(attempt, port = server.port, "port taken, retrying");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        HOST
    }

    /// `mysql://root@127.0.0.1:PORT/DB`; root has no password.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@{HOST}:{}/{db}", self.port)
    }

    /// `mysql://USER:PASSWORD@127.0.0.1:PORT/DB`, user and password
    /// percent-encoded; an empty password leaves out the `:PASSWORD` part.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        let mut userinfo = percent_encode(user);
        if !password.is_empty() {
            userinfo.push(':');
            userinfo.push_str(&percent_encode(password));
        }
        format!("mysql://{userinfo}@{HOST}:{}/{db}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// Process id of the running `mariadbd`, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        let started = Instant::now();
        self.shutdown(true)?;
        self.launch()
            .map_err(|(Launch::PortTaken(e) | Launch::Fatal(e))| e)?;
        tracing::debug!(elapsed = ?started.elapsed(), port = self.port, "restarted");
        Ok(())
    }

    /// SIGKILL, like a crash; a later [`restart`](Self::restart) runs crash
    /// recovery. Commits survive: they reach the OS on commit, just unsynced.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        self.shutdown(false)
    }

    /// `mariadbd` arguments; `--no-defaults` must come first.
    fn server_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        let tmp = self.tmp.path();
        let mut args = vec!["--no-defaults".to_owned()];
        args.extend(user_arg());
        args.extend([
            format!("--datadir={}", path(&self.data_dir)),
            format!("--port={}", self.port),
            format!("--bind-address={HOST}"),
            format!("--socket={}", path(&self.socket)),
            format!("--pid-file={}", path(&tmp.join("mariadbd.pid"))),
            format!("--log-error={}", path(&self.log_path)),
            format!("--tmpdir={}", path(&tmp.join("tmp"))),
        ]);
        if self.opts.binlog {
            args.push(format!(
                "--log-bin={}",
                path(&self.data_dir.join("mariadb-bin"))
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

    /// Spawns `mariadbd` on `self.port` and waits until it answers queries.
    fn launch(&mut self) -> Result<(), Launch> {
        let fatal = Launch::Fatal;
        let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(|e| fatal(HarnessError::io("opening server log")(e)))?;
        let log2 = log
            .try_clone()
            .map_err(|e| fatal(HarnessError::io("opening server log")(e)))?;

        let mut cmd = command("mariadbd", self.tmp.path());
        cmd.args(self.server_args());
        cmd.stdin(Stdio::null()).stdout(log2).stderr(log);
        let started = Instant::now();
        let command = describe(&cmd);
        let child = cmd
            .spawn()
            .map_err(|source| fatal(HarnessError::Spawn { command, source }))?;
        self.child = Some(child);

        let deadline = started + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("just spawned");
            let exited = child.try_wait().ok().flatten();
            let log = log_since(&self.log_path, log_offset);
            // After a failed bind mariadbd takes a while to abort: do not wait for it.
            let port_taken = log.contains(BIND_FAILED);
            if exited.is_some() || port_taken {
                let _ = self.stop();
                let reason = match exited {
                    Some(status) => format!("mariadbd on port {} exited with {status}", self.port),
                    None => format!("mariadbd could not bind port {}; killed it", self.port),
                };
                let err = HarnessError::Start {
                    server: SERVER,
                    reason,
                    log_tail: log_tail(&self.log_path, log_offset),
                };
                return Err(if port_taken {
                    Launch::PortTaken(err)
                } else {
                    Launch::Fatal(err)
                });
            }
            if log.contains(READY) && self.answers_as_us() {
                tracing::debug!(elapsed = ?started.elapsed(), port = self.port, "mariadbd ready");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.stop();
                return Err(fatal(HarnessError::Start {
                    server: SERVER,
                    reason: format!("not answering queries after {READY_TIMEOUT:?}"),
                    log_tail: log_tail(&self.log_path, log_offset),
                }));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A root query over TCP succeeds and reports *our* datadir (so the port
    /// is not answered by a server that won a bind race).
    fn answers_as_us(&self) -> bool {
        let mut cmd = self.client();
        cmd.args(["-N", "-B", "--connect-timeout=5", "-e", "SELECT @@datadir"]);
        cmd.stdin(Stdio::null()).stderr(Stdio::null());
        cmd.output().is_ok_and(|out| {
            out.status.success()
                && Path::new(String::from_utf8_lossy(&out.stdout).trim()) == self.data_dir
        })
    }

    /// The `mariadb` client, logged in as root over TCP.
    fn client(&self) -> Command {
        let mut cmd = command("mariadb", self.tmp.path());
        cmd.args(["--no-defaults", "--protocol=TCP", "--user=root"]);
        cmd.args(["--default-character-set=utf8mb4", "--host", HOST, "--port"]);
        cmd.arg(self.port.to_string());
        cmd
    }

    /// `clean`: SIGTERM and wait for an orderly exit; otherwise (or if that
    /// fails) SIGKILL. The child is `mariadbd` itself, so signals reach it.
    fn shutdown(&mut self, clean: bool) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
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
        tracing::debug!(elapsed = ?started.elapsed(), clean, port = self.port, "mariadbd stopped");
        outcome
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "failed to stop throwaway MariaDB");
        }
    }
}

impl std::fmt::Debug for MariaDbServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariaDbServer")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("running", &self.child.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retry in `start_with` hinges on recognising a lost bind race.
    #[test]
    fn taken_port_is_reported_as_retryable() {
        let mut db = MariaDbServer::start().unwrap();
        db.stop().unwrap();
        let squatter = std::net::TcpListener::bind((HOST, 0)).unwrap();
        db.port = squatter.local_addr().unwrap().port();
        match db.launch() {
            Err(Launch::PortTaken(e)) => assert!(e.to_string().contains(BIND_FAILED), "{e}"),
            Err(Launch::Fatal(e)) => panic!("expected PortTaken, got fatal: {e}"),
            Ok(()) => panic!("started on a taken port"),
        }
        assert!(db.child.is_none());
    }
}
