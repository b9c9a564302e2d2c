//! BigQuery sink: replica tables kept fresh within seconds, `<table>_log` change tables that
//! fill in real time, and `_tidewater_state`, in one dataset (docs/bigquery.md).
//!
//! Each batch's changes stream into staging tables as they arrive (`tabledata.insertAll`;
//! snapshot rows by load jobs of Parquet files, `load`); its
//! commit is one multi-statement transaction that copies them into the logs, MERGEs them into
//! the replicas and advances the stored position (see `sink` for the exactly-once argument
//! and why no DML ever meets BigQuery's streaming buffer).
//!
//! The read side (`replica`: status, read-only queries, verify) reads the same dataset.

mod appends;
mod auth;
mod client;
mod compare;
pub mod config;
mod cost;
mod definitions;
mod errors;
mod evolve;
mod load;
mod loadfile;
mod merge;
mod metrics;
mod prune;
mod replica;
mod rows;
mod session;
mod sink;
mod state;
mod tables;
mod types;

pub use client::{BqClient, Connection, Rows};
pub use config::BigQueryConfig;
pub use cost::BqCost;
pub use merge::literal as sql_literal;
pub use replica::BigQueryReplica;
pub use sink::{BigQueryOptions, BigQuerySink};
pub use tables::{table_names, TableNames, STATE_TABLE};
