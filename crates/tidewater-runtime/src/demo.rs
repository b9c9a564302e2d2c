//! The sources of `tidewater demo`: a throwaway PostgreSQL or MariaDB with a small shop
//! schema and a light write workload, and the config that replicates it into a DuckDB file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewater_core::{Error, Result};
use tidewater_harness::{MariaDbServer, PgServer};
use tidewater_postgres::conn::connect;
use tokio::task::JoinHandle;

use crate::config::Config;

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
pub struct DemoSource {
    _server: Box<dyn Send>,
    source_toml: String,
    /// The replicated tables, for people ("public.customers and public.orders").
    pub tables: &'static str,
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

/// Starts the throwaway `source` ("postgres", or "mysql" / "mariadb") and its workload.
pub async fn start(source: &str) -> Result<DemoSource> {
    match source {
        "postgres" => start_postgres().await,
        "mysql" | "mariadb" => start_mariadb().await,
        other => Err(Error::config(format!(
            "--source {other:?} is unknown; use postgres or mysql"
        ))),
    }
}

impl DemoSource {
    /// Writes a config beside the replica `path` (so that `tidewater query --config demo.toml`
    /// and `tidewater status --config demo.toml` work during and after the demo) and loads it.
    pub fn write_config(&self, path: &Path) -> Result<(PathBuf, Config)> {
        let config_path = path.with_extension("toml");
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        std::fs::write(
            &config_path,
            format!(
                "# Written by `tidewater demo` (its source server is gone once the demo ends).\n\
                 [source]\n{}\n\n[sink]\ntype = \"duckdb\"\npath = {:?}\n",
                self.source_toml, file_name
            ),
        )
        .map_err(|e| Error::config(format!("writing {}: {e}", config_path.display())))?;
        let config = Config::load(&config_path)?;
        Ok((config_path, config))
    }

    /// Stops the write workload (the server stops when this is dropped).
    pub fn stop_workload(&self) {
        self.workload.abort();
    }
}
