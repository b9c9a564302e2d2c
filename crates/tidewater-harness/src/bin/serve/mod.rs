//! What both throwaway-server binaries do once they have a server.

use std::io::Read;
use std::path::PathBuf;

use tidewater_harness::HarnessError;

/// Exits 1 with the error if the server did not start; otherwise prints
/// `url` on stdout and the log path on stderr, and keeps the server running
/// until stdin closes. The server is removed on return.
pub fn until_stdin_closes<S>(
    started: Result<S, HarnessError>,
    url: impl FnOnce(&S) -> String,
    log_path: impl FnOnce(&S) -> PathBuf,
) {
    let server = started.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!("{}", url(&server));
    eprintln!("server log: {}", log_path(&server).display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}
