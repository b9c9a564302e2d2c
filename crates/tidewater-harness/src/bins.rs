//! Locating the PostgreSQL binaries and building commands for them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::HarnessError;

pub(crate) struct Tools {
    bindir: Option<PathBuf>,
    as_root: bool,
}

/// Discovery spawns processes, so do it once per test binary.
pub(crate) fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let tools = Tools { bindir: find_bindir(), as_root: is_root() };
        tracing::debug!(bindir = ?tools.bindir, as_root = tools.as_root, "located PostgreSQL binaries");
        tools
    })
}

impl Tools {
    pub(crate) fn as_root(&self) -> bool {
        self.as_root
    }

    /// Full path when the chosen bindir has it, otherwise a bare name for PATH lookup.
    fn bin(&self, name: &str) -> PathBuf {
        match &self.bindir {
            Some(dir) if dir.join(name).is_file() => dir.join(name),
            _ => PathBuf::from(name),
        }
    }

    /// `initdb`, `postgres` and `pg_ctl` refuse to run as root, so drop to
    /// the `postgres` account in that case. `cwd` must be readable by it.
    pub(crate) fn server_cmd(&self, name: &str, cwd: &Path) -> Command {
        let mut cmd = if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(self.bin(name));
            cmd
        } else {
            Command::new(self.bin(name))
        };
        cmd.current_dir(cwd);
        scrub_env(&mut cmd);
        cmd
    }

    pub(crate) fn client_cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin(name));
        scrub_env(&mut cmd);
        cmd
    }
}

/// PG* variables (PGPORT, PGOPTIONS, PGSSLMODE, ...) from the caller's
/// environment must never steer our tools towards another server.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

fn has_server_bins(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `TIDEWATER_PG_BINDIR`, then `pg_config --bindir`, then the highest
/// `/usr/lib/postgresql/<ver>/bin`; `None` means "use PATH".
fn find_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TIDEWATER_PG_BINDIR") {
        return Some(dir.into());
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server_bins(&dir) {
            return Some(dir);
        }
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|s| {
            s.split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<_>>>()
        }) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if has_server_bins(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, dir)| dir)
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, feeding it `stdin`; returns stdout on success.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, HarnessError> {
    let command = describe(cmd);
    let spawn_err = |source| HarnessError::Spawn {
        command: command.clone(),
        source,
    };
    let out: Output = match stdin {
        None => cmd.stdin(Stdio::null()).output().map_err(spawn_err)?,
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(spawn_err)?;
            // Write from a thread so large input and large output cannot deadlock.
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let input = input.to_owned();
            let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
            let out = child.wait_with_output().map_err(spawn_err)?;
            let _ = writer.join(); // a write error shows up as a failed exit below
            out
        }
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.trim().is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    Err(HarnessError::Command {
        command,
        status: out.status.to_string(),
        stderr,
    })
}
