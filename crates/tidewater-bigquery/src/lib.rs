//! BigQuery sink: replica tables kept fresh within seconds, `<table>_log` change tables that
//! fill in real time, and `_tidewater_state`, in one dataset (docs/bigquery.md).
//!
//! Each batch's changes are appended to the logs as they arrive (`tabledata.insertAll`); its
//! commit is one multi-statement transaction that MERGEs them into the replicas and advances
//! the stored position (see `sink` for the exactly-once argument).

mod client;
pub mod config;
mod errors;
mod merge;
mod rows;
mod sink;
mod state;
mod tables;
mod types;

pub use client::{BqClient, Connection, Rows};
pub use config::BigQueryConfig;
pub use merge::literal as sql_literal;
pub use sink::{BigQueryOptions, BigQuerySink};
pub use tables::{table_names, TableNames, STATE_TABLE};
