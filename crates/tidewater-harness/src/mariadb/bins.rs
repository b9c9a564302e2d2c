//! Running the MariaDB binaries: which account, which files, which environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::bins::{is_root, run};
use crate::HarnessError;

/// The account `mariadbd` switches to when we are root.
const SERVER_USER: &str = "mysql";
/// Given to the bootstrap too, so it creates the redo log the server expects.
pub(super) const INNODB_ARGS: [&str; 3] = [
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=48M",
    "--innodb-flush-log-at-trx-commit=2",
];

/// As root, gives `dir` (the server's temp dir) to the server account.
pub(super) fn hand_over(dir: &Path) -> Result<(), HarnessError> {
    if as_root() {
        let mut chown = Command::new("chown");
        let owner = format!("{SERVER_USER}:{SERVER_USER}");
        run(chown.arg("-R").arg(owner).arg(dir), None)?;
    }
    Ok(())
}

/// `mariadb-install-db` into `data_dir`: system tables, no test db, `root`
/// with normal (password, here empty) authentication, and host entries for
/// 127.0.0.1, ::1 and localhost only.
pub(super) fn install_db(cwd: &Path, data_dir: &Path, tmp_dir: &Path) -> Result<(), HarnessError> {
    let mut install = command("mariadb-install-db", cwd);
    install.args([
        "--no-defaults",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
    ]);
    install.arg(format!("--datadir={}", data_dir.display()));
    install.arg(format!("--tmpdir={}", tmp_dir.display()));
    install.args(user_arg()).args(INNODB_ARGS);
    run(&mut install, None).map(drop)
}

fn as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(is_root)
}

/// As root, `--user=mysql`: `mariadb-install-db` chowns the datadir to that
/// account and `mariadbd` (which refuses to run as root) switches to it
/// right after starting. Otherwise everything runs as ourselves.
pub(super) fn user_arg() -> Option<String> {
    as_root().then(|| format!("--user={SERVER_USER}"))
}

/// `name` from `/usr/sbin` or `/usr/bin` (Debian's `mariadbd` is in sbin,
/// often not on PATH), else a bare name for PATH lookup. MYSQL_* and
/// MARIADB_* variables (MYSQL_PWD, MYSQL_TCP_PORT, ...) from the caller's
/// environment must never steer our tools towards another server.
pub(super) fn command(name: &str, cwd: &Path) -> Command {
    let program = ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name));
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("MYSQL") || k.starts_with("MARIADB") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// RFC 3986 userinfo encoding: everything but unreserved characters.
pub(super) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_as_percent_encodes_userinfo() {
        assert_eq!(percent_encode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(percent_encode("p@ss:w/rd é"), "p%40ss%3Aw%2Frd%20%C3%A9");
    }
}
