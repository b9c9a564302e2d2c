//! The throwaway server itself.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bins::{describe, run, tools};
use crate::{free_port, wait_until, HarnessError};

const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 3;
/// `sun_path` is 108 bytes including the NUL terminator.
const MAX_SOCKET_PATH: usize = 107;

/// Knobs for [`PgServer::start_with`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Extra `-c name=value` settings, applied after (and so overriding) the defaults.
    pub extra_conf: Vec<(String, String)>,
    /// `wal_level=logical` when true (the default), `replica` otherwise.
    pub wal_level_logical: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            extra_conf: Vec::new(),
            wal_level_logical: true,
        }
    }
}

/// A running PostgreSQL cluster in its own temp dir; stopped and deleted on drop.
pub struct PgServer {
    port: u16,
    data_dir: PathBuf,
    sock_dir: PathBuf,
    log_path: PathBuf,
    opts: PgOptions,
    /// `postgres` itself, or the `runuser` wrapping it when we are root.
    child: Option<Child>,
    /// Declared last: dropped after `Drop::drop` has stopped the server.
    tmp: TempDir,
}

/// Why a single launch attempt failed; only a lost port race is worth retrying.
enum Launch {
    PortTaken(HarnessError),
    Fatal(HarnessError),
}

impl PgServer {
    pub fn start() -> Result<PgServer, HarnessError> {
        Self::start_with(PgOptions::default())
    }

    pub fn start_with(opts: PgOptions) -> Result<PgServer, HarnessError> {
        let tmp = tempfile::Builder::new()
            .prefix("tw-pg-")
            .tempdir_in(short_tmp_root())
            .map_err(HarnessError::io("creating temp dir"))?;
        let sock_dir = tmp.path().join("sock");
        let socket_len = sock_dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(HarnessError::Start {
                server: "PostgreSQL",
                reason: format!(
                    "socket dir {} is too long for a unix socket",
                    sock_dir.display()
                ),
                log_tail: String::new(),
            });
        }
        fs::create_dir(&sock_dir).map_err(HarnessError::io("creating socket dir"))?;
        let log_path = tmp.path().join("server.log");
        File::create(&log_path).map_err(HarnessError::io("creating server log"))?;
        if tools().as_root() {
            let mut chown = std::process::Command::new("chown");
            run(
                chown.args(["-R", "postgres:postgres"]).arg(tmp.path()),
                None,
            )?;
        }

        let data_dir = tmp.path().join("data");
        let started = Instant::now();
        let mut initdb = tools().server_cmd("initdb", tmp.path());
        initdb.arg("-D").arg(&data_dir);
        initdb.args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]);
        run(&mut initdb, None)?;
        tracing::debug!(elapsed = ?started.elapsed(), dir = %data_dir.display(), "initdb done");

        let mut server = PgServer {
            port: 0,
            data_dir,
            sock_dir,
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

    /// `postgres://postgres@127.0.0.1:PORT/DB`; no password, the cluster trusts local TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{HOST}:{}/{db}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `sql` (any number of statements, each in its own implicit
    /// transaction) through `psql`, stopping at the first error.
    ///
    /// Output is unaligned and tuples-only (`-A -t`), so `SHOW x` yields the
    /// bare value plus a newline and result rows come out `|`-separated.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, HarnessError> {
        let mut cmd = tools().client_cmd("psql");
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-U",
            "postgres",
        ]);
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .args(["-f", "-"]);
        run(&mut cmd, Some(sql))
    }

    pub fn create_database(&self, name: &str) -> Result<(), HarnessError> {
        let ident = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{ident}\";"))
            .map(drop)
    }

    /// Fast shutdown (clean checkpoint, slots and WAL kept), then the same
    /// cluster comes back on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        self.shutdown("fast")?;
        self.launch()
            .map_err(|(Launch::PortTaken(e) | Launch::Fatal(e))| e)?;
        tracing::debug!(elapsed = ?started.elapsed(), port = self.port, "restarted");
        Ok(())
    }

    /// Immediate shutdown, like a crash; a later [`restart`](Self::restart) recovers.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        self.shutdown("immediate")
    }

    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    fn settings(&self) -> Vec<(String, String)> {
        let wal_level = if self.opts.wal_level_logical {
            "logical"
        } else {
            "replica"
        };
        let sock = self.sock_dir.to_string_lossy().into_owned();
        let defaults = [
            ("listen_addresses", HOST),
            ("unix_socket_directories", sock.as_str()),
            ("wal_level", wal_level),
            ("max_replication_slots", "20"),
            ("max_wal_senders", "20"),
            ("fsync", "off"),
            ("full_page_writes", "off"),
            ("shared_buffers", "128MB"),
            ("log_min_messages", "warning"),
            ("wal_sender_timeout", "60s"),
        ];
        let defaults = defaults.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        defaults
            .chain(self.opts.extra_conf.iter().cloned())
            .collect()
    }

    /// Spawns `postgres` on `self.port` and waits until it accepts connections.
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

        let mut cmd = tools().server_cmd("postgres", self.tmp.path());
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string());
        for (name, value) in self.settings() {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
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
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log_tail = self.log_tail(log_offset);
                let port_taken = log_tail.contains("Address already in use")
                    || log_tail.contains("could not bind");
                let err = HarnessError::Start {
                    server: "PostgreSQL",
                    reason: format!("postgres on port {} exited with {status}", self.port),
                    log_tail,
                };
                return Err(if port_taken {
                    Launch::PortTaken(err)
                } else {
                    Launch::Fatal(err)
                });
            }
            if self.is_ready() {
                tracing::debug!(elapsed = ?started.elapsed(), port = self.port, "postgres ready");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.shutdown("immediate");
                return Err(fatal(HarnessError::Start {
                    server: "PostgreSQL",
                    reason: format!("not accepting connections after {READY_TIMEOUT:?}"),
                    log_tail: self.log_tail(log_offset),
                }));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ready means *our* postmaster reports "ready" in its pid file (so the
    /// port is not answered by someone who won a bind race) and accepts a
    /// connection.
    fn is_ready(&self) -> bool {
        let pid_file = fs::read_to_string(self.data_dir.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).map(str::trim) != Some("ready") {
            return false;
        }
        let mut cmd = tools().client_cmd("pg_isready");
        cmd.args([
            "-q", "-h", HOST, "-U", "postgres", "-d", "postgres", "-t", "5", "-p",
        ]);
        cmd.arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    fn shutdown(&mut self, mode: &str) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        let started = Instant::now();
        let mut pg_ctl = tools().server_cmd("pg_ctl", self.tmp.path());
        pg_ctl.arg("stop").arg("-D").arg(&self.data_dir);
        pg_ctl.args(["-m", mode, "-w", "-t", &STOP_TIMEOUT.as_secs().to_string()]);
        let stopped = run(&mut pg_ctl, None);
        // Reap the child either way; if pg_ctl failed, give it only a moment.
        let grace = if stopped.is_ok() {
            STOP_TIMEOUT
        } else {
            Duration::from_secs(2)
        };
        let exited = wait_until(grace, "postgres to exit", || {
            !matches!(child.try_wait(), Ok(None))
        });
        if exited.is_err() {
            self.kill_postmaster();
            let _ = child.kill();
            let _ = child.wait();
        }
        tracing::debug!(elapsed = ?started.elapsed(), mode, port = self.port, "postgres stopped");
        match stopped {
            Err(e) if exited.is_err() => Err(e),
            _ => exited,
        }
    }

    /// Last resort: as root our child is `runuser`, and killing it would
    /// orphan the postmaster, so signal the pid the cluster recorded.
    fn kill_postmaster(&self) {
        let pid_file = fs::read_to_string(self.data_dir.join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    fn log_tail(&self, offset: u64) -> String {
        log_tail(&self.log_path, offset)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "failed to stop throwaway PostgreSQL");
        }
    }
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// Everything written to the log at `path` since byte `offset`.
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// The last 40 lines written to the log at `path` since byte `offset`.
pub(crate) fn log_tail(path: &Path, offset: u64) -> String {
    let text = log_since(path, offset);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `/tmp` keeps the socket path short even when `TMPDIR` is deep.
pub(crate) fn short_tmp_root() -> PathBuf {
    let tmp = Path::new("/tmp");
    if tmp.is_dir() {
        tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retry in `start_with` hinges on recognising a lost bind race.
    #[test]
    fn taken_port_is_reported_as_retryable() {
        let mut pg = PgServer::start().unwrap();
        pg.stop().unwrap();
        let squatter = std::net::TcpListener::bind((HOST, 0)).unwrap();
        pg.port = squatter.local_addr().unwrap().port();
        match pg.launch() {
            Err(Launch::PortTaken(e)) => assert!(e.to_string().contains("server log tail"), "{e}"),
            Err(Launch::Fatal(e)) => panic!("expected PortTaken, got fatal: {e}"),
            Ok(()) => panic!("started on a taken port"),
        }
        assert!(pg.child.is_none());
    }
}
