//! Starts a throwaway MariaDB (binlog on, ROW format), prints its root URL on stdout, and
//! removes it when stdin closes. For benchmarks and manual experiments:
//! `cargo run -p tidewater-harness --bin throwaway-mariadb [--mariadbd-arg ...]`.

mod serve;

use tidewater_harness::{MariaDbOptions, MariaDbServer};

fn main() {
    let extra_args = std::env::args().skip(1).collect();
    let started = MariaDbServer::start_with(MariaDbOptions {
        extra_args,
        ..Default::default()
    });
    serve::until_stdin_closes(started, |db| db.url(""), MariaDbServer::log_path);
}
