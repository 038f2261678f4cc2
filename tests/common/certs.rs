//! Certificates made by `openssl` for each run of a TLS test: a CA and a certificate it signs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate it signs for `usage` (`serverAuth` or `clientAuth`), both named for
/// 127.0.0.1, in `dir`; returns the paths of the CA, the certificate and its key.
pub fn issue(dir: &Path, name: &str, usage: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 -days 2 -subj /CN=pipit-test-ca {ec} -keyout {name}-ca.key -out {name}-ca.pem"
        ),
    );
    openssl(
        dir,
        &format!("req -subj /CN=127.0.0.1 {ec} -keyout {name}.key -out {name}.csr"),
    );
    let ext = format!(
        "basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1\n"
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -days 2 -in {name}.csr -CA {name}-ca.pem -CAkey {name}-ca.key -CAcreateserial \
             -extfile {name}.ext -out {name}.pem"
        ),
    );
    (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}
