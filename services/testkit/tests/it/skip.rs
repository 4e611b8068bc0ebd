//! A Python compatibility suite without its venv: skipped visibly on a developer's machine, failed
//! under `CI=true`. Proven by running a helper test in a child process with `TESTKIT_VENV` pointing
//! at a directory that does not exist (the shared venv itself is never touched).

use std::process::{Command, Output};

/// Set in the child process only, so the helper does nothing in a normal run.
const HELPER_ENV: &str = "TESTKIT_SKIP_TEST_HELPER";

fn run_helper(ci: Option<&str>) -> Output {
    let missing = tempfile::tempdir().unwrap().path().join("no-venv");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "skip::helper_needs_the_venv",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, "1")
        .env(testkit::VENV_ENV, &missing)
        .env_remove("CI");
    if let Some(ci) = ci {
        command.env("CI", ci);
    }
    command.output().unwrap()
}

/// Without CI the test passes, and its output carries the skip line with the test and the reason.
#[test]
fn missing_venv_skips_visibly_outside_ci() {
    let out = run_helper(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(testkit::SKIP_MARKER))
        .unwrap_or_else(|| panic!("no skip line in {stdout}"));
    assert!(
        line.starts_with("TESTKIT-SKIPPED skip::helper_needs_the_venv "),
        "{line}"
    );
    assert!(line.contains("no-venv/bin/python is missing"), "{line}");
}

/// Under `CI=true` the same test fails, saying why.
#[test]
fn missing_venv_fails_under_ci() {
    for ci in ["true", "1"] {
        let out = run_helper(Some(ci));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "CI={ci}: {stdout}");
        assert!(
            stderr.contains("CI=true and the Python compatibility suite cannot run"),
            "{stderr}"
        );
        assert!(!stdout.contains(testkit::SKIP_MARKER), "{stdout}");
    }
}

/// Helper for the tests above, run only in their child process.
#[test]
#[ignore = "helper: run by the tests above in a child process"]
fn helper_needs_the_venv() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    assert!(testkit::python_venv(&["json"]).is_none());
}
