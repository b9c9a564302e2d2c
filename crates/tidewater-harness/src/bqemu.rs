//! The throwaway BigQuery emulator (PyPI `bqemulator`: DuckDB-backed, REST and Storage
//! Write gRPC), for the BigQuery sink's tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::instance::Instance;
use crate::launch::{self, Launchable, HOST};
use crate::HarnessError;

/// The project the emulator assumes when a request names none.
pub const BQ_PROJECT: &str = "tidewater-test";
/// What `scripts/install-bqemulator.sh` creates (CI runs it).
const DEFAULT_VENV: &str = ".cache/tidewater/bqemu-venv";
const GRPC_LISTEN: &str = "\"event\": \"grpc.listen\"";

/// A running emulator, in-memory, in its own temp dir; killed on drop.
pub struct BqEmulator {
    instance: Instance,
}

impl BqEmulator {
    /// Starts `bqemulator` (from `$TIDEWATER_BQEMULATOR`, else
    /// `~/.cache/tidewater/bqemu-venv/bin/bqemulator`, else `PATH`) with its REST API on a
    /// free port of 127.0.0.1 and its gRPC API on another, and waits for `/healthz`.
    pub fn start() -> Result<BqEmulator, HarnessError> {
        let instance = Instance::create("bqemulator", "tw-bq-", "none")?;
        launch::start_on_free_port(BqEmulator { instance })
    }

    /// `http://127.0.0.1:PORT`: what `[sink] endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("http://{HOST}:{}", self.instance.port)
    }

    pub fn rest_port(&self) -> u16 {
        self.instance.port
    }

    /// The Storage Write API's port, as the emulator reported it.
    pub fn grpc_port(&self) -> Option<u16> {
        let log = self.instance.log_since(0);
        let line = log.lines().rev().find(|l| l.contains(GRPC_LISTEN))?;
        let rest = &line[line.find("\"port\": ")? + 8..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    pub fn project(&self) -> &str {
        BQ_PROJECT
    }

    pub fn log_path(&self) -> PathBuf {
        self.instance.log_path.clone()
    }

    /// SIGKILL.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.instance.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// `GET /healthz` answers 200.
    fn healthy(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect((HOST, self.instance.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        conn.write_all(request.as_bytes()).is_ok()
            && conn.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }
}

fn program() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDEWATER_BQEMULATOR") {
        return p.into();
    }
    let venv = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(DEFAULT_VENV));
    match venv.map(|v| v.join("bin/bqemulator")) {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("bqemulator"),
    }
}

impl Launchable for BqEmulator {
    const PROGRAM: &'static str = "bqemulator";
    const READY_MEANS: &'static str = "answering /healthz";
    /// Python takes a moment to unwind after a failed bind: do not wait for it.
    const QUIT_ON_PORT_TAKEN: bool = true;

    fn instance(&self) -> &Instance {
        &self.instance
    }

    fn instance_mut(&mut self) -> &mut Instance {
        &mut self.instance
    }

    fn server_command(&self) -> Command {
        let mut cmd = Command::new(program());
        cmd.current_dir(self.instance.dir());
        cmd.args([
            "start",
            "--ephemeral",
            "--rest-host",
            HOST,
            "--grpc-host",
            HOST,
        ]);
        cmd.args(["--rest-port", &self.instance.port.to_string()]);
        // 0: the emulator picks a free port and logs it (read by `grpc_port`).
        cmd.args(["--grpc-port", "0", "--project", BQ_PROJECT]);
        cmd.args(["--log-level", "info", "--log-format", "json"]);
        cmd
    }

    fn port_taken(log: &str) -> bool {
        log.contains("address already in use") || log.contains("Errno 98")
    }

    /// It answers `/healthz` (a squatter on the port would not speak HTTP; a lost bind race
    /// shows in the log first).
    fn is_ready(&self, _log: &str) -> bool {
        self.healthy()
    }

    fn stop_now(&mut self) -> Result<(), HarnessError> {
        self.stop()
    }
}

impl Drop for BqEmulator {
    fn drop(&mut self) {
        launch::stop_on_drop(self);
    }
}

impl std::fmt::Debug for BqEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.instance.debug("BqEmulator", f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let mut emu = BqEmulator::start().unwrap();
        assert!(emu.healthy());
        assert!(emu.endpoint().starts_with("http://127.0.0.1:"));
        let port = emu.rest_port();
        emu.stop().unwrap();
        assert!(TcpStream::connect((HOST, port)).is_err());
    }

    #[test]
    fn taken_port_is_reported_as_retryable() {
        let emu = BqEmulator::start().unwrap();
        // The bind error itself scrolls out of the log tail behind a long traceback.
        launch::assert_taken_port_is_retryable(emu, "SystemExit");
    }
}
