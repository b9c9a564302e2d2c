//! Certificates for TLS tests: a private CA and a server certificate it signs (for
//! `localhost` and `127.0.0.1`, or for other names), readable by the server's user.

use std::path::Path;
use std::process::Command;

pub struct Certs {
    pub ca: String,
    pub crt: String,
    pub key: String,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the CA and the server certificate for `localhost` and `127.0.0.1` into `dir`;
/// `owner` (when we are root) is the user the server runs as.
pub fn certificates(dir: &Path, owner: &str) -> Certs {
    certificates_for(dir, owner, "DNS:localhost, IP:127.0.0.1")
}

/// [`certificates`] with a server certificate for `alt_names` (`subjectAltName` syntax).
pub fn certificates_for(dir: &Path, owner: &str, alt_names: &str) -> Certs {
    let days = ["-days", "2"];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-subj",
                "/CN=tidewater test CA",
            ][..],
            &days,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName = {alt_names}\nbasicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
            ][..],
            &days,
            &["-extfile", "server.ext", "-out", "server.crt"],
        ]
        .concat(),
        dir,
    );
    let root = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        == "0";
    if root {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{owner}:"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "chown {owner}");
    }
    Command::new("chmod")
        .arg("600")
        .arg(dir.join("server.key"))
        .status()
        .unwrap();
    Command::new("chmod").arg("755").arg(dir).status().unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    Certs {
        ca: path("ca.crt"),
        crt: path("server.crt"),
        key: path("server.key"),
    }
}
