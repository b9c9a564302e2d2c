//! tidewater's runtime: everything the `tidewater` binary runs, below its command line.
//!
//! The binary (`crates/tidewater`) parses arguments and prints; this crate owns the rest, and
//! its dependencies point only down (to `tidewater-core` and the source and sink crates):
//!
//! - [`config`]: `tidewater.toml`, parsed and validated;
//! - [`registry`]: the only place that maps a configured source or sink kind to its crate;
//! - [`pipeline`]: source → apply loop → sink, restarted from the committed position;
//! - [`monitor`], [`status_view`], [`status_file`]: what a running process knows and shows;
//! - [`verify`]: the row-by-row comparison of source and replica;
//! - [`http`], [`sql_endpoint`], [`query`]: the servers of a running process and the
//!   read-only query path they share;
//! - [`demo`]: the throwaway sources of `tidewater demo`.
//!
//! See docs/architecture.md for the picture.

pub mod client;
pub mod config;
mod config_sections;
pub mod config_template;
pub mod degraded;
pub mod demo;
pub mod forget;
pub mod http;
pub mod monitor;
pub mod own_run;
pub mod pipeline;
pub mod query;
pub mod registry;
pub mod shutdown;
pub mod single_writer;
pub mod sql_endpoint;
pub mod status_file;
pub mod status_view;
pub mod teardown;
pub mod verify;
pub mod verify_passes;
pub mod verify_report;
