//! For the observability tests: the HTTP client of `common::http` (the endpoint and
//! chromedriver's WebDriver API), the `tidewater` CLI run to completion, and the address a
//! running `tidewater run` publishes.
#![allow(dead_code)]

pub mod webdriver;

#[allow(unused_imports)] // each test file uses some of them
pub use crate::common::http::{get, http, metric, HttpResponse};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tidewater_harness::wait_until;

/// The address a running `run` of `db` published in its status file, once it has.
pub fn published_http(db: &Path, timeout: Duration) -> String {
    let status = db.with_file_name(format!(
        "{}.status.json",
        db.file_name().unwrap().to_string_lossy()
    ));
    let mut addr = String::new();
    wait_until(timeout, "run to publish its HTTP address", || {
        let Ok(text) = std::fs::read_to_string(&status) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match v["live"]["http"].as_str() {
            Some(a) => {
                addr = a.to_string();
                true
            }
            None => false,
        }
    })
    .unwrap();
    addr
}

pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tidewater <args>` to completion (bounded: every command here ends by itself).
pub fn cli(args: &[&str]) -> CliOutput {
    let out = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run tidewater");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// A child process killed when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
