// Shared by the build scripts of the crates that link DuckDB: points the linker and the
// runtime loader (rpath) at the prebuilt libduckdb.so unless DuckDB is compiled in (`bundled`).
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
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
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
