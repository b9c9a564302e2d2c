//! The DuckDB sink's integration tests in one test binary (one module per topic).

mod change_log;
mod fresh_copy;
mod log_toggle;
mod recopy;
mod schema_change;
mod sink;
mod updates_in_place;
mod verify_as_of;
