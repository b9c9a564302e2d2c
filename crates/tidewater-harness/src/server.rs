//! The throwaway PostgreSQL server.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins::{run, tools};
use crate::instance::Instance;
use crate::launch::{self, Launchable, HOST};
use crate::{wait_until, HarnessError};

const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Knobs for [`PgServer::start_with`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Extra `-c name=value` settings, applied after (and so overriding) the defaults.
    pub extra_conf: Vec<(String, String)>,
    /// `wal_level=logical` when true (the default), `replica` otherwise.
    pub wal_level_logical: bool,
    /// When true, no `wal_level` is given on the command line (where it would override the
    /// files): the cluster's configuration decides, PostgreSQL's default `replica` or what
    /// `ALTER SYSTEM` set, as on a server a user set up. `wal_level_logical` is then unused.
    pub wal_level_from_config: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            extra_conf: Vec::new(),
            wal_level_logical: true,
            wal_level_from_config: false,
        }
    }
}

/// A running PostgreSQL cluster in its own temp dir; stopped and deleted on drop.
pub struct PgServer {
    opts: PgOptions,
    /// Its child is `postgres` itself, or the `runuser` wrapping it when we are root.
    instance: Instance,
}

impl PgServer {
    pub fn start() -> Result<PgServer, HarnessError> {
        Self::start_with(PgOptions::default())
    }

    pub fn start_with(opts: PgOptions) -> Result<PgServer, HarnessError> {
        let instance = Instance::create("PostgreSQL", "tw-pg-", ".s.PGSQL.65535")?;
        if tools().as_root() {
            let mut chown = Command::new("chown");
            run(
                chown.args(["-R", "postgres:postgres"]).arg(instance.dir()),
                None,
            )?;
        }

        let started = Instant::now();
        let mut initdb = tools().server_cmd("initdb", instance.dir());
        initdb.arg("-D").arg(&instance.data_dir);
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
        tracing::debug!(elapsed = ?started.elapsed(), dir = %instance.data_dir.display(), "initdb done");

        launch::start_on_free_port(PgServer { opts, instance })
    }

    pub fn port(&self) -> u16 {
        self.instance.port
    }

    pub fn host(&self) -> &str {
        HOST
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`; no password, the cluster trusts local TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{HOST}:{}/{db}", self.instance.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.instance.data_dir
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
            .arg(self.instance.port.to_string())
            .arg("-d")
            .arg(db)
            .args(["-f", "-"]);
        run(&mut cmd, Some(sql))
    }

    /// A PostgreSQL client tool (`psql`, `pgbench`, `pg_recvlogical`, ...)
    /// of the same installation as the server, with the caller's `PG*`
    /// variables removed; pass it [`url`](Self::url) as its connection string.
    pub fn tool(name: &str) -> Command {
        tools().client_cmd(name)
    }

    pub fn create_database(&self, name: &str) -> Result<(), HarnessError> {
        let ident = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{ident}\";"))
            .map(drop)
    }

    /// Fast shutdown (clean checkpoint, slots and WAL kept), then the same
    /// cluster comes back on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        launch::restart(self, |pg| pg.shutdown("fast"))
    }

    /// Immediate shutdown, like a crash; a later [`restart`](Self::restart) recovers.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        self.shutdown("immediate")
    }

    pub fn log_path(&self) -> PathBuf {
        self.instance.log_path.clone()
    }

    fn settings(&self) -> Vec<(String, String)> {
        let wal_level = if self.opts.wal_level_logical {
            "logical"
        } else {
            "replica"
        };
        let sock = self.instance.sock_dir.to_string_lossy().into_owned();
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
        let from_config = self.opts.wal_level_from_config;
        let defaults = defaults
            .iter()
            .filter(|(k, _)| !(from_config && *k == "wal_level"))
            .map(|(k, v)| (k.to_string(), v.to_string()));
        defaults
            .chain(self.opts.extra_conf.iter().cloned())
            .collect()
    }

    fn shutdown(&mut self, mode: &str) -> Result<(), HarnessError> {
        let Some(mut child) = self.instance.child.take() else {
            return Ok(());
        };
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        let started = Instant::now();
        let mut pg_ctl = tools().server_cmd("pg_ctl", self.instance.dir());
        pg_ctl.arg("stop").arg("-D").arg(&self.instance.data_dir);
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
        tracing::debug!(elapsed = ?started.elapsed(), mode, port = self.instance.port, "postgres stopped");
        match stopped {
            Err(e) if exited.is_err() => Err(e),
            _ => exited,
        }
    }

    /// `postmaster.pid`: the pid on line 1, the status on line 8; empty when absent.
    fn postmaster_pid(&self) -> String {
        let path = self.instance.data_dir.join("postmaster.pid");
        fs::read_to_string(path).unwrap_or_default()
    }

    /// Last resort: as root our child is `runuser`, and killing it would
    /// orphan the postmaster, so signal the pid the cluster recorded.
    fn kill_postmaster(&self) {
        let pid_file = self.postmaster_pid();
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
}

impl Launchable for PgServer {
    const PROGRAM: &'static str = "postgres";
    const READY_MEANS: &'static str = "accepting connections";
    /// `postgres` exits right after a failed bind.
    const QUIT_ON_PORT_TAKEN: bool = false;

    fn instance(&self) -> &Instance {
        &self.instance
    }

    fn instance_mut(&mut self) -> &mut Instance {
        &mut self.instance
    }

    fn server_command(&self) -> Command {
        let mut cmd = tools().server_cmd("postgres", self.instance.dir());
        cmd.arg("-D")
            .arg(&self.instance.data_dir)
            .arg("-p")
            .arg(self.instance.port.to_string());
        for (name, value) in self.settings() {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd
    }

    fn port_taken(log: &str) -> bool {
        log.contains("Address already in use") || log.contains("could not bind")
    }

    /// Ready means *our* postmaster reports "ready" in its pid file (so the
    /// port is not answered by someone who won a bind race) and accepts a
    /// connection.
    fn is_ready(&self, _log: &str) -> bool {
        let pid_file = self.postmaster_pid();
        if pid_file.lines().nth(7).map(str::trim) != Some("ready") {
            return false;
        }
        let mut cmd = tools().client_cmd("pg_isready");
        cmd.args([
            "-q", "-h", HOST, "-U", "postgres", "-d", "postgres", "-t", "5", "-p",
        ]);
        cmd.arg(self.instance.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    fn stop_now(&mut self) -> Result<(), HarnessError> {
        self.stop()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        launch::stop_on_drop(self);
    }
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.instance.debug("PgServer", f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_reported_as_retryable() {
        let pg = PgServer::start().unwrap();
        launch::assert_taken_port_is_retryable(pg, "server log tail");
    }
}
