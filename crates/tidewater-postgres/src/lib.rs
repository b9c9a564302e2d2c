//! PostgreSQL source: publication and slot setup, the initial snapshot inside the snapshot
//! exported by slot creation, and pgoutput streaming with feedback after each sink commit.

mod backlog;
pub mod catalog;
pub mod check;
pub mod config;
pub mod conn;
pub mod driver;
mod guard;
mod join;
pub mod pgoutput;
mod placement;
pub mod read;
mod setup;
mod snapshot;
mod source;
mod stream;
pub mod teardown;
pub mod text;
mod tls;
pub mod types;

pub use config::PgSourceConfig;
pub use driver::{PgDriver, PgReader};
pub use source::PgSource;
pub use tokio_postgres;
