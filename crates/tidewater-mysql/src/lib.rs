//! MySQL and MariaDB source for tidewater: a consistent snapshot whose binlog position is
//! known exactly, then the row binlog from that position (GTID or file:pos), decoded into the
//! core's change model.

pub mod backlog;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod ddl;
pub mod driver;
pub mod gtid;
pub mod gtid_pos;
mod guard;
mod join;
pub mod position;
mod raw_values;
pub mod read;
pub mod rows;
pub mod snapshot;
pub mod source;
pub mod stream;
pub mod types;
pub mod value;

pub use config::MySqlSourceConfig;
pub use source::MySqlSource;
pub use value::ZeroDates;
pub mod check;
pub use driver::{MySqlDriver, MySqlReader};
