// Shared by the build scripts of the crates that link DuckDB: points the linker and the
// runtime loader (rpath) at the prebuilt libduckdb.so unless DuckDB is compiled in (`bundled`).
// Two rpath entries, searched in order: `$ORIGIN/../lib`, where scripts/install.sh puts the
// library beside an installed `bin/tidewater` (so an installed binary keeps working after the
// checkout is gone, and never picks up another checkout's library), then the checkout's own
// copy for `cargo run` and the tests (`target/lib` does not exist).
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../build/duckdb_rpath.rs");
    if std::env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    let dir = std::env::var("DUCKDB_LIB_DIR").unwrap_or_default();
    let lib = std::path::Path::new(&dir).join("libduckdb.so");
    let fetch = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../../scripts/fetch-libduckdb.sh");
    if !lib.exists() && fetch.exists() {
        // A fresh checkout: fetch the prebuilt library once (cached under ~/.cache/tidewater).
        let _ = std::process::Command::new("bash").arg(&fetch).status();
    }
    if !lib.exists() {
        panic!(
            "libduckdb.so not found in DUCKDB_LIB_DIR={dir:?}: run scripts/fetch-libduckdb.sh \
             (or build with --features bundled to compile DuckDB from source)"
        );
    }
    // `$ORIGIN` reaches the linker literally (no shell in between); the loader expands it.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
