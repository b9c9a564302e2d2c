//! Facts about the machine and the software a run measured.

use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub ram_gib: f64,
    pub kernel: String,
    pub postgres: String,
    pub mariadb: String,
    pub duckdb: String,
    /// UTC, when the run started.
    pub date: String,
    pub git_rev: String,
}

impl Machine {
    /// Server versions are filled in by the run (it knows its servers).
    pub fn here() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let ram_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let duckdb = duckdb::Connection::open_in_memory()
            .and_then(|c| c.query_row("SELECT version()", [], |r| r.get::<_, String>(0)))
            .unwrap_or_else(|e| format!("unknown ({e})"));
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            ram_gib: ram_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            postgres: "not used".into(),
            mariadb: "not used".into(),
            duckdb,
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            git_rev: git_rev(),
        }
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The commit of the source tree this suite was built from, `+dirty` with local changes.
fn git_rev() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let rev = command_line("git", &["-C", dir, "rev-parse", "--short", "HEAD"]);
    let dirty = !command_line(
        "git",
        &["-C", dir, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_empty();
    if dirty && rev != "unknown" {
        format!("{rev}+dirty")
    } else {
        rev
    }
}
