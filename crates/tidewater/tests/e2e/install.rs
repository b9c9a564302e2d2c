//! `scripts/install.sh PREFIX`: the installed binary finds its libduckdb.so under PREFIX
//! (the `$ORIGIN/../lib` rpath), so it runs after the checkout is gone. The checkout's own
//! copy (`.libduckdb`) is hidden from the installed binary by an empty file system mounted
//! over it in a private mount namespace (`unshare -m`), so tests running beside this one
//! keep theirs.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn installed_binary_runs_without_the_checkout() {
    let prefix = tempfile::tempdir().unwrap();
    let out = Command::new(repo().join("scripts/install.sh"))
        .arg(prefix.path())
        .env("TIDEWATER_BIN", env!("CARGO_BIN_EXE_tidewater"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install.sh failed:\n{said}");
    let bin = prefix.path().join("bin/tidewater");
    assert!(bin.is_file(), "{said}");
    assert!(prefix.path().join("lib/libduckdb.so").is_file(), "{said}");
    assert!(
        prefix
            .path()
            .join("share/bash-completion/completions/tidewater")
            .is_file(),
        "{said}"
    );

    // The loader resolves the installed library first.
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).to_string();
    assert!(
        ldd.contains(&format!(
            "libduckdb.so => {}/bin/../lib/libduckdb.so",
            prefix.path().display()
        )),
        "{ldd}"
    );

    // With the checkout's library out of sight: --version, and a demo with its throwaway
    // PostgreSQL, replica and queries.
    let checkout_lib = repo().join(".libduckdb").canonicalize().unwrap();
    let work = tempfile::tempdir().unwrap();
    let script = r#"mount -t tmpfs none "$1" && test -z "$(ls -A "$1")" \
        && "$2" --version && cd "$3" && "$2" demo --seconds 3"#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&checkout_lib)
        .arg(&bin)
        .arg(work.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("tidewater {}\n", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(
        work.path().join("demo.duckdb").is_file(),
        "{stdout}\n{stderr}"
    );
    assert!(
        checkout_lib.join("1.5.6/libduckdb.so").is_file(),
        "the checkout's library is back outside the namespace"
    );
}
