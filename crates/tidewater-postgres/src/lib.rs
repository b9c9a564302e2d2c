//! PostgreSQL source: publication and slot setup, the initial snapshot inside the snapshot
//! exported by slot creation, and pgoutput streaming with feedback after each sink commit.

pub mod catalog;
pub mod check;
pub mod conn;
pub mod pgoutput;
pub mod read;
pub mod teardown;
mod join;
mod setup;
mod snapshot;
mod source;
mod stream;
pub mod text;
mod tls;
pub mod types;

pub use source::{PgSource, PgSourceConfig};
pub use tokio_postgres;
