//! `tidewater demo`: a throwaway PostgreSQL or MariaDB with a small shop schema and a light
//! write workload, replicated live into a DuckDB file, with a line per second of progress.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewater_core::stats::Stats;
use tidewater_core::{Error, Result};
use tidewater_harness::{MariaDbServer, PgServer};
use tidewater_postgres::conn::connect;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::commands::shutdown_signal;
use crate::config::Config;
use crate::monitor::Monitor;
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

const MY_SCHEMA: &str = "
CREATE TABLE customers (id bigint unsigned AUTO_INCREMENT PRIMARY KEY, name varchar(100) NOT NULL,
    email varchar(200), created_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
CREATE TABLE orders (id bigint unsigned AUTO_INCREMENT PRIMARY KEY, customer_id bigint unsigned NOT NULL,
    amount decimal(12,2), status enum('new','shipped','cancelled') NOT NULL, items json,
    updated_at datetime(6) NOT NULL DEFAULT current_timestamp(6));
INSERT INTO customers (name, email) SELECT concat('customer ', seq), concat('c', seq, '@example.com')
    FROM seq_1_to_1000;
INSERT INTO orders (customer_id, amount, status, items)
    SELECT 1 + seq % 1000, (seq % 500) + 0.99, 'new', json_object('sku', seq, 'qty', 1 + seq % 3)
    FROM seq_1_to_5000;
";

const MY_WORKLOAD_TX: &str = "
START TRANSACTION;
INSERT INTO orders (customer_id, amount, status, items)
    VALUES (1 + floor(rand() * 999), round(rand() * 500, 2), 'new', '{\"sku\": 1}');
UPDATE orders SET status = 'shipped', updated_at = now(6) WHERE id = 1 + floor(rand() * 5000) LIMIT 1;
DELETE FROM orders WHERE id = 1 + floor(rand() * 5000) AND rand() < 0.1;
COMMIT;
";

/// A running demo source: the server (stopped on drop), the config's [source] section and
/// the workload task.
struct DemoSource {
    _server: Box<dyn Send>,
    source_toml: String,
    tables: &'static str,
    workload: JoinHandle<()>,
}

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

async fn start_postgres() -> Result<DemoSource> {
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
    let workload = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if client.batch_execute(WORKLOAD_TX).await.is_err() {
                break;
            }
        }
    });
    Ok(DemoSource {
        _server: Box::new(server),
        source_toml: format!("type = \"postgres\"\nurl = \"{url}\"\ntables = [\"public.*\"]"),
        tables: "public.customers and public.orders",
        workload,
    })
}

async fn start_mariadb() -> Result<DemoSource> {
    use mysql_async::prelude::Queryable;
    eprintln!("starting a throwaway MariaDB (binlog_format=ROW, GTIDs)...");
    let server = tokio::task::spawn_blocking(|| {
        let s = MariaDbServer::start()?;
        s.create_database("shop")?;
        s.sql("shop", MY_SCHEMA)?;
        Ok::<_, tidewater_harness::HarnessError>(s)
    })
    .await
    .expect("start task")
    .map_err(|e| Error::source_fatal(format!("starting the demo MariaDB: {e}")))?;
    let url = server.url("shop");
    let mut conn = mysql_async::Conn::from_url(url.as_str())
        .await
        .map_err(|e| Error::source_fatal(e.to_string()))?;
    let workload = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if conn.query_drop(MY_WORKLOAD_TX).await.is_err() {
                break;
            }
        }
    });
    Ok(DemoSource {
        _server: Box::new(server),
        source_toml: format!("type = \"mysql\"\nurl = \"{url}\"\ntables = [\"shop.*\"]"),
        tables: "shop.customers and shop.orders",
        workload,
    })
}

pub async fn run(source: &str, seconds: Option<u64>, path: &Path) -> Result<()> {
    let demo = match source {
        "postgres" => start_postgres().await?,
        "mysql" | "mariadb" => start_mariadb().await?,
        other => {
            return Err(Error::config(format!(
                "--source {other:?} is unknown; use postgres or mysql"
            )))
        }
    };
    for f in [path.to_path_buf(), path.with_extension("duckdb.wal")] {
        let _ = std::fs::remove_file(f);
    }
    // A config beside the replica, so that `tidewater query --config demo.toml` and
    // `tidewater status --config demo.toml` work during and after the demo.
    let config_path = path.with_extension("toml");
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    std::fs::write(
        &config_path,
        format!(
            "# Written by `tidewater demo` (its source server is gone once the demo ends).\n\
             [source]\n{}\n\n[sink]\ntype = \"duckdb\"\npath = {:?}\n",
            demo.source_toml, file_name
        ),
    )
    .map_err(|e| Error::config(format!("writing {}: {e}", config_path.display())))?;
    let config = Config::load(&config_path)?;

    let stats = Arc::new(Stats::default());
    let monitor = Arc::new(Monitor::new(
        stats.clone(),
        &config.source.kind,
        config.sink.path.clone(),
    ));
    let queries = crate::query::gate::QueryGate::new(monitor.clone());
    let http = crate::http::start(
        crate::commands::LOCAL_ONLY,
        monitor.clone(),
        queries.clone(),
    )
    .await?;
    // The PostgreSQL wire protocol too, on a free loopback port: psql on the live replica.
    let sql = crate::sql_endpoint::start(
        crate::config::SqlEndpoint {
            listen: crate::commands::LOCAL_ONLY,
            limit: crate::query::exec::DEFAULT_LIMIT,
            timeout: crate::query::exec::DEFAULT_TIMEOUT,
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
    demo.workload.abort();
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
