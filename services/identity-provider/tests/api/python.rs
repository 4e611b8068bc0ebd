//! Third-party clients: python-keycloak and PyJWT from PyPI, run against a
//! live provider from the project's venv (`.tools/venv`, made by install.sh).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Idp, Opts};

/// python-keycloak (discovery, password/client-credentials/refresh grants, certs, decode_token, userinfo) and PyJWT's PyJWKClient accept the provider as Keycloak, with the issuer taken from each request's Host header.
#[tokio::test]
async fn python_keycloak_and_pyjwt() {
    let Some(python) = testkit::python_venv(&["keycloak", "jwt", "jwt.algorithms"]) else {
        return;
    };
    run_clients(&python, &Idp::start().await).await;
}

/// The same clients against a provider with a configured issuer base (Keycloak's `--hostname`),
/// whose discovery document takes every endpoint from that base.
#[tokio::test]
async fn python_keycloak_and_pyjwt_with_a_configured_base() {
    let Some(python) = testkit::python_venv(&["keycloak", "jwt", "jwt.algorithms"]) else {
        return;
    };
    let idp = Idp::start_with(Opts {
        own_base: true,
        ..Opts::default()
    })
    .await;
    run_clients(&python, &idp).await;
}

/// Runs `tests/python/keycloak_clients.py` against `idp` and checks that every check passed.
async fn run_clients(python: &std::path::Path, idp: &Idp) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/keycloak_clients.py");
    let child = tokio::process::Command::new(python)
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
