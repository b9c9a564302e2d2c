//! The DuckDB sink's integration tests in one test binary (one module per topic).

mod schema_change;
mod sink;
