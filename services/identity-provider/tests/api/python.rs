//! Third-party clients: python-keycloak and PyJWT from PyPI, run against a
//! live provider from the project's venv (`.tools/venv`, made by install.sh).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::Idp;

fn venv_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python")
}

/// python-keycloak (discovery, password/client-credentials/refresh grants, certs, decode_token, userinfo) and PyJWT's PyJWKClient accept the provider as Keycloak.
#[tokio::test]
async fn python_keycloak_and_pyjwt() {
    let python = venv_python();
    if !python.exists() {
        eprintln!(
            "SKIPPED: {} is absent; run install.sh to create .tools/venv with python-keycloak and PyJWT",
            python.display()
        );
        return;
    }
    let idp = Idp::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/keycloak_clients.py");
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&idp.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the Python clients finish within 2 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("checks passed"), "{stdout}");
}
