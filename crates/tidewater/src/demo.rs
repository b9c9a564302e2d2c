//! `tidewater demo`: a throwaway PostgreSQL or MariaDB with a small shop schema and a light
//! write workload, replicated live into a DuckDB file, with a line per second of progress.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::stats::Stats;
use tidewater_core::Result;
use tidewater_runtime::config::SqlEndpoint;
use tidewater_runtime::http::{self, LOCAL_ONLY};
use tidewater_runtime::monitor::Monitor;
use tidewater_runtime::query::exec;
use tidewater_runtime::query::gate::QueryGate;
use tidewater_runtime::shutdown::shutdown_signal;
use tidewater_runtime::{demo, pipeline, sql_endpoint};
use tokio::sync::watch;

pub async fn run(source: &str, seconds: Option<u64>, path: &Path) -> Result<()> {
    let demo = demo::start(source).await?;
    for f in [path.to_path_buf(), path.with_extension("duckdb.wal")] {
        let _ = std::fs::remove_file(f);
    }
    let (config_path, config) = demo.write_config(path)?;

    let stats = Arc::new(Stats::default());
    let monitor = Arc::new(Monitor::for_config(stats.clone(), &config));
    let queries = QueryGate::new(monitor.clone());
    let http = http::start(LOCAL_ONLY, monitor.clone(), queries.clone()).await?;
    // The PostgreSQL wire protocol too, on a free loopback port: psql on the live replica.
    let sql = sql_endpoint::start(
        SqlEndpoint {
            listen: LOCAL_ONLY,
            limit: exec::DEFAULT_LIMIT,
            timeout: exec::DEFAULT_TIMEOUT,
        },
        queries,
    )
    .await?;
    monitor.set_sql_addr(sql);
    let (stop_tx, stop_rx) = watch::channel(false);
    let pipeline = {
        let config = config.clone();
        tokio::spawn(async move { pipeline::run(&config, monitor, stop_rx).await })
    };

    eprintln!(
        "replicating {} into {} (Ctrl-C stops); status page: http://{http}/; \
         psql: psql -h {} -p {} -d demo",
        demo.tables,
        path.display(),
        sql.ip(),
        sql.port()
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
    demo.stop_workload();
    let _ = stop_tx.send(true);
    pipeline.await.expect("pipeline task")?;
    let schema = demo.tables.split('.').next().unwrap_or("public");
    drop(demo);
    let me = std::env::args()
        .next()
        .unwrap_or_else(|| "tidewater".into());
    let cfg = config_path.display();
    println!(
        "\nreplica written to {}; query it (this works while `run` runs, too):",
        path.display()
    );
    for example in [
        format!("\"SELECT status, count(*) AS orders, sum(amount) AS total FROM {schema}.orders GROUP BY ALL ORDER BY ALL\""),
        format!("\"SELECT _metadata_change_type AS kind, count(*) FROM {schema}.orders_log GROUP BY ALL ORDER BY ALL\""),
        format!("--format csv \"SELECT * FROM {schema}.customers ORDER BY id LIMIT 3\""),
        "--format json \"SELECT table_name, changes_applied FROM _tidewater.tables\"".to_string(),
    ] {
        println!("  {me} query --config {cfg} {example}");
    }
    println!("  {me} status --config {cfg}");
    Ok(())
}
