//! DuckDB sink: replica tables, `<table>_log` change tables and the `_tidewater` state schema
//! in one DuckDB file (README.md, "What lands in DuckDB").

mod catalog;
mod checkpoint;
mod columns;
mod compare;
pub mod config;
mod direct;
pub mod errors;
mod feed;
mod forget;
pub mod guard;
mod in_place;
mod layouts;
mod log_restart;
pub mod memory;
mod merge;
mod order;
mod plans;
mod primary_keys;
pub mod read;
mod rowwise;
mod schema;
mod settings;
mod sink;
pub mod sql;
mod staged;
pub mod state;
pub mod status;
pub mod storage;
mod table;
mod upgrade;

pub use config::{DuckDbConfig, DuckDbOptions, COPY_BATCH};
pub use duckdb;
pub use read::DuckDbReplica;
pub use sink::DuckDbSink;
