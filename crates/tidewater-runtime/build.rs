include!("../../build/duckdb_rpath.rs");
