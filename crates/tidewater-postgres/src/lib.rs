//! PostgreSQL source: publication and slot setup, the initial snapshot inside the snapshot
//! exported by slot creation, and pgoutput streaming with feedback after each sink commit.

pub mod pgoutput;
pub mod text;
