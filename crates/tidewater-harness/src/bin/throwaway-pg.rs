//! Starts a throwaway PostgreSQL (wal_level=logical), prints its URL on stdout, and removes
//! it when stdin closes. For benchmarks and manual experiments:
//! `cargo run -p tidewater-harness --bin throwaway-pg [name=value ...]`.

use std::io::Read;

use tidewater_harness::{PgOptions, PgServer};

fn main() {
    let extra_conf = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let server = PgServer::start_with(PgOptions {
        extra_conf,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!("{}", server.url("postgres"));
    eprintln!("server log: {}", server.log_path().display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}
