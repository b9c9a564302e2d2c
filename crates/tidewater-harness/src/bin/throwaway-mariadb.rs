//! Starts a throwaway MariaDB (binlog on, ROW format), prints its root URL on stdout, and
//! removes it when stdin closes. For benchmarks and manual experiments:
//! `cargo run -p tidewater-harness --bin throwaway-mariadb [--mariadbd-arg ...]`.

use std::io::Read;

use tidewater_harness::{MariaDbOptions, MariaDbServer};

fn main() {
    let extra_args = std::env::args().skip(1).collect();
    let server = MariaDbServer::start_with(MariaDbOptions {
        extra_args,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!("{}", server.url(""));
    eprintln!("server log: {}", server.log_path().display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}
