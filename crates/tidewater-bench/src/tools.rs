//! Running the external tools the baselines and load generators are made of
//! (`pg_recvlogical`, `pgbench`, `psql`, `mariadb`, `mariadb-binlog`), with a
//! clear error naming the package to install when one is missing.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};

/// The Debian package that ships `tool`.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "psql" | "pg_recvlogical" => "postgresql-client",
        // Debian ships pgbench with the server (postgresql-15), not the client.
        "pgbench" => "postgresql",
        "mariadb" | "mariadb-binlog" => "mariadb-client",
        "mkfifo" => "coreutils",
        _ => "that provides it",
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn tool_name(cmd: &Command) -> String {
    let program = std::path::Path::new(cmd.get_program());
    program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Starts `cmd` with stderr captured (and stdin closed).
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            let tool = tool_name(cmd);
            BenchError::MissingTool {
                package: package_of(&tool),
                tool,
            }
        } else {
            BenchError::Io {
                what: format!("starting `{}`", describe(cmd)),
                source: e,
            }
        }
    })
}

/// Waits for a child started by [`spawn`]; an unsuccessful exit is an error with its stderr.
pub fn finish(mut child: Child, cmd: &Command) -> Result<()> {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(BenchError::io(format!("waiting for `{}`", describe(cmd))))?;
    if status.success() {
        return Ok(());
    }
    Err(BenchError::Command {
        command: describe(cmd),
        status: status.to_string(),
        stderr: stderr.trim().to_string(),
    })
}

/// Runs `cmd` to completion with stdout discarded; returns how long it took.
pub fn run_timed(cmd: &mut Command) -> Result<Duration> {
    cmd.stdout(Stdio::null());
    let started = Instant::now();
    let child = spawn(cmd)?;
    finish(child, cmd)?;
    Ok(started.elapsed())
}

/// Runs `cmd` to completion; returns its stdout.
pub fn output(cmd: &mut Command) -> Result<String> {
    cmd.stdout(Stdio::piped());
    let mut child = spawn(cmd)?;
    let mut out = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut out)
            .map_err(BenchError::io(format!("reading `{}`", describe(cmd))))?;
    }
    finish(child, cmd)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let err = run_timed(&mut Command::new("pg_recvlogical-not-installed")).unwrap_err();
        assert!(matches!(err, BenchError::MissingTool { .. }), "{err}");
        let err = run_timed(&mut Command::new("/nonexistent/mariadb-binlog")).unwrap_err();
        assert!(err.to_string().contains("mariadb-client"), "{err}");
    }

    #[test]
    fn a_failing_tool_reports_its_stderr() {
        let err = output(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
