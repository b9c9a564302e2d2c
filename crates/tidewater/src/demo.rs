//! `tidewater demo`: a throwaway PostgreSQL with a small shop schema and a light write
//! workload, replicated live into a DuckDB file, with a line per second of progress.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::stats::Stats;
use tidewater_core::{Error, Result};
use tidewater_harness::PgServer;
use tidewater_postgres::conn::connect;
use tokio::sync::watch;

use crate::commands::shutdown_signal;
use crate::config::Config;
use crate::pipeline;

const SCHEMA: &str = "
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, email text,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, amount numeric(12,2),
    status text NOT NULL, items jsonb, tags text[], updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, email)
    SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 1000) g;
INSERT INTO orders (customer_id, amount, status, items, tags)
    SELECT 1 + g % 1000, (g % 500) + 0.99, 'new', jsonb_build_object('sku', g, 'qty', 1 + g % 3),
           ARRAY['demo', 'batch' || (g % 7)]
    FROM generate_series(1, 5000) g;
";

/// One workload transaction: a new order, a status change and now and then a delete.
const WORKLOAD_TX: &str = "
BEGIN;
INSERT INTO orders (customer_id, amount, status, items, tags)
    VALUES (1 + (random() * 999)::int, round((random() * 500)::numeric, 2), 'new', '{\"sku\": 1}', ARRAY['live']);
UPDATE orders SET status = 'shipped', updated_at = now()
    WHERE id = (SELECT (random() * (SELECT max(id) FROM orders))::bigint);
DELETE FROM orders WHERE id = (SELECT (random() * 5000)::bigint) AND random() < 0.1;
COMMIT;
";

pub async fn run(seconds: Option<u64>, path: &Path) -> Result<()> {
    eprintln!("starting a throwaway PostgreSQL (wal_level=logical)...");
    let server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("start task")
        .map_err(|e| Error::source_fatal(format!("starting the demo PostgreSQL: {e}")))?;
    let url = server.url("postgres");
    let client = connect(&url).await?;
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(|e| Error::source_fatal(e.to_string()))?;
    for f in [path.to_path_buf(), path.with_extension("duckdb.wal")] {
        let _ = std::fs::remove_file(f);
    }
    let config = Config::parse(&format!(
        "[source]\ntype = \"postgres\"\nurl = \"{url}\"\ntables = [\"public.*\"]\n[sink]\ntype = \"duckdb\"\npath = {:?}\n",
        path.display().to_string()
    ))?;

    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let pipeline = {
        let (config, stats) = (config.clone(), stats.clone());
        tokio::spawn(async move { pipeline::run(&config, stats, stop_rx).await })
    };
    let workload = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if client.batch_execute(WORKLOAD_TX).await.is_err() {
                break;
            }
        }
    });

    eprintln!(
        "replicating public.customers and public.orders into {} (Ctrl-C stops)",
        path.display()
    );
    let mut signal = shutdown_signal();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_rows = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = signal.changed() => break,
        }
        let rows = stats.rows_applied.load(Relaxed);
        let lat = stats.take_latencies();
        println!(
            "{:>4}s  changes applied {:>8} (+{:>5}/s)  transactions {:>6}  freshness source→replica p50 {:>3} ms  p99 {:>3} ms  max {:>4} ms",
            started.elapsed().as_secs(),
            rows,
            rows - last_rows,
            stats.transactions_applied.load(Relaxed),
            lat.p50_ms,
            lat.p99_ms,
            lat.max_ms
        );
        last_rows = rows;
        if seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
            || pipeline.is_finished()
        {
            break;
        }
    }
    workload.abort();
    let _ = stop_tx.send(true);
    pipeline.await.expect("pipeline task")?;
    drop(server);
    println!(
        "\nreplica written to {}; look at it with the DuckDB CLI, e.g.:",
        path.display()
    );
    println!(
        "  duckdb {} \"SELECT status, count(*) FROM public.orders GROUP BY ALL\"",
        path.display()
    );
    println!(
        "  duckdb {} \"SELECT _metadata_change_type, count(*) FROM public.orders_log GROUP BY ALL\"",
        path.display()
    );
    Ok(())
}
