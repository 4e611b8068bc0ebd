//! Third-party clients: python-keycloak and PyJWT from PyPI, run against a
//! live provider from the project's venv (`.tools/venv`, made by install.sh).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::Idp;

/// python-keycloak (discovery, password/client-credentials/refresh grants, certs, decode_token, userinfo) and PyJWT's PyJWKClient accept the provider as Keycloak.
#[tokio::test]
async fn python_keycloak_and_pyjwt() {
    let Some(python) = testkit::python_venv(&["keycloak", "jwt", "jwt.algorithms"]) else {
        return;
    };
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
