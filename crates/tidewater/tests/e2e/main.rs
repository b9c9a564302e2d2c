//! The end-to-end tests of tidewater in one test binary (one module per topic): linking one
//! binary instead of one per file is most of what building the tests costs. `common` holds
//! the rig (throwaway source server, config, the real `tidewater` binary), `observe_support`
//! the helpers of the HTTP endpoint tests.

mod common;
mod observe_support;

mod bench_smoke;
mod bigquery;
mod bigquery_chunks;
mod bigquery_kill;
mod bigquery_replica;
mod bigquery_rows;
mod bigquery_schema;
mod bigquery_snapshot;
mod change_log;
mod chunked_snapshot;
mod chunked_snapshot_keys;
mod chunked_snapshot_mariadb;
mod config;
mod connection_limits;
mod continuous_verify;
mod crash;
mod degraded;
mod demo;
mod errors;
mod friction;
mod install;
mod mysql_errors;
mod mysql_replication;
mod mysql_types;
mod observe;
mod partitions;
mod position_guard;
mod psql_browse;
mod query;
mod readme_quickstart;
mod recopy_chunked;
mod replica_identity;
mod replication;
mod resnapshot;
mod restart_chunked;
mod schema_changes;
mod selection;
mod split_transaction;
mod sql_endpoint;
mod status_page;
mod teardown;
mod tls;
mod types;
mod uncarried_ddl;
mod verify;
