//! Tests that cannot run on this machine say so, in a line `.ci/run` collects.
//!
//! A test that returns early counts as passed in nextest and in JUnit. So that a green run does not
//! overstate what ran, such a test calls [`skip`] first: it prints one line
//!
//! ```text
//! TESTKIT-SKIPPED <test> <reason>
//! ```
//!
//! to stdout, which nextest keeps in the JUnit report's `system-out` (the `ci` profile stores the
//! output of passing tests), and `.ci/run`'s summary lists every such test with its reason.
//!
//! The third-party Python clients are not optional under CI: [`python_venv`] skips only on a
//! developer's machine and fails the test when `CI=true`.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace_root;

/// The first word of the line [`skip`] prints; `.ci/run` looks for it.
pub const SKIP_MARKER: &str = "TESTKIT-SKIPPED";

/// Overrides the Python venv of the compatibility suites (default `<workspace>/.tools/venv`).
pub const VENV_ENV: &str = "TESTKIT_VENV";

/// The line [`skip`] prints for `test` and `reason`: the marker, the test's name without spaces,
/// and the reason on the same line (line breaks become spaces).
pub fn skip_line(test: &str, reason: &str) -> String {
    let test = if test.is_empty() {
        "?".to_owned()
    } else {
        test.replace(char::is_whitespace, "_")
    };
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{SKIP_MARKER} {test} {reason}")
}

/// Reports that the calling test does not run its checks here, and why; the caller then returns.
///
/// The test's name is the current thread's (libtest names a test's thread after the test, and
/// `#[tokio::test]` runs the body on it); `.ci/run` takes the name from the JUnit report anyway.
pub fn skip(reason: impl Display) {
    let thread = std::thread::current();
    println!(
        "{}",
        skip_line(thread.name().unwrap_or_default(), &reason.to_string())
    );
}

/// Whether this is a CI run (`CI=true` or `CI=1`, as CI systems and `.ci/run` set it).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The Python venv of the compatibility suites: `$TESTKIT_VENV`, else `<workspace>/.tools/venv`
/// (install.sh creates it with the pinned third-party clients).
pub fn venv_dir() -> PathBuf {
    match std::env::var_os(VENV_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".tools/venv"),
    }
}

/// Why the venv's Python cannot run a suite needing `modules`, or `None` when it can.
fn venv_problem(python: &Path, modules: &[&str]) -> Option<String> {
    if !python.is_file() {
        return Some(format!("{} is missing", python.display()));
    }
    if modules.is_empty() {
        return None;
    }
    let import = format!("import {}", modules.join(", "));
    match Command::new(python).args(["-c", &import]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "{} cannot `{import}`: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no message")
        )),
        Err(e) => Some(format!("{} does not run: {e}", python.display())),
    }
}

/// The venv's Python when it exists and imports `modules`.
///
/// Otherwise, on a developer's machine the test is reported skipped ([`skip`]) and `None` returned;
/// under CI ([`is_ci`]) it panics: a CI run without the third-party clients must not pass.
pub fn python_venv(modules: &[&str]) -> Option<PathBuf> {
    let python = venv_dir().join("bin/python");
    let Some(problem) = venv_problem(&python, modules) else {
        return Some(python);
    };
    let reason = format!(
        "{problem}; run ./install.sh (it creates .tools/venv with the pinned Python clients), \
         or point {VENV_ENV} at such a venv"
    );
    assert!(
        !is_ci(),
        "CI=true and the Python compatibility suite cannot run: {reason}"
    );
    skip(&reason);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line is one line: marker, test name, reason with its line breaks flattened.
    #[test]
    fn skip_line_is_one_machine_readable_line() {
        let line = skip_line("mod::a test", "no server\n  here");
        assert_eq!(line, "TESTKIT-SKIPPED mod::a_test no server here");
        assert_eq!(skip_line("", "why"), "TESTKIT-SKIPPED ? why");
    }

    /// The current thread carries the test's name, which `skip` prints.
    #[test]
    fn test_thread_is_named_after_the_test() {
        let name = std::thread::current().name().map(str::to_owned);
        assert!(
            name.as_deref()
                .is_some_and(|n| n.ends_with("test_thread_is_named_after_the_test")),
            "{name:?}"
        );
    }

    /// A venv that does not exist is a reason, naming the path.
    #[test]
    fn missing_venv_is_a_problem() {
        let python = Path::new("/nonexistent/venv/bin/python");
        let problem = venv_problem(python, &["json"]).unwrap();
        assert!(problem.contains("/nonexistent/venv/bin/python is missing"));
    }

    /// The system Python imports the standard library, and a module that does not exist is named.
    #[test]
    fn imports_are_checked() {
        let Some(python) = crate::paths::find_in_path("python3") else {
            skip("python3 is not on PATH");
            return;
        };
        assert_eq!(venv_problem(&python, &["json", "os"]), None);
        let problem = venv_problem(&python, &["no_such_module_here"]).unwrap();
        assert!(problem.contains("no_such_module_here"), "{problem}");
    }
}
