//! Starts a throwaway PostgreSQL (wal_level=logical), prints its URL on stdout, and removes
//! it when stdin closes. For benchmarks and manual experiments:
//! `cargo run -p tidewater-harness --bin throwaway-pg [name=value ...]`.

mod serve;

use tidewater_harness::{PgOptions, PgServer};

fn main() {
    let extra_conf = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let started = PgServer::start_with(PgOptions {
        extra_conf,
        ..Default::default()
    });
    serve::until_stdin_closes(started, |pg| pg.url("postgres"), PgServer::log_path);
}
