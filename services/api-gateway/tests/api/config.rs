//! A bad configuration stops the real binary at start with a clear error.

use std::path::Path;
use std::time::Duration;

/// Runs the gateway binary with `routes` written to a file; it must exit
/// (non-zero) by itself. Returns the routes file path and stderr.
async fn start_expecting_failure(routes: Option<&str>, extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    if let Some(text) = routes {
        std::fs::write(&path, text).unwrap();
    }
    let output = run_gateway(&path, extra).await;
    assert!(
        !output.status.success(),
        "the gateway should refuse to start; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        path.display().to_string(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn run_gateway(routes: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_api-gateway"));
    cmd.arg("--routes")
        .arg(routes)
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--registry-url", "http://127.0.0.1:1"])
        .args(extra)
        .env_remove("ISSUER_URL")
        .env_remove("ROUTES_FILE")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("the gateway should exit on a bad configuration")
        .unwrap()
}

/// Each kind of mistake names the file, the line and the key, and the
/// process exits non-zero without serving.
#[tokio::test]
async fn bad_routes_files_name_file_line_and_key() {
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            // TOML syntax: an unquoted string.
            "[[routes]]\nid = \"a\"\nuri = lb://a\npredicates = [\"Path=/a/**\"]\n",
            "line 3",
            &["key `uri`"],
        ),
        (
            "[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a/**\"]\n\n[[routes]]\nid = \"b\"\nuri = \"lb://b\"\npredicates = [\"Path=/b/**\"]\nfilters = [\"StripPrefix=1\", \"StripPrefx=1\"]\n",
            "line 10",
            &["key `routes[1].filters[1]`", "unknown filter `StripPrefx`"],
        ),
        (
            "[defaults]\ntimeout = \"5s\"\n\n[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a/**\"]\n[routes.retry]\nmethods = [\"GET\", \"POST\"]\n",
            "line 9",
            &["key `routes[0].retry.methods[1]`", "POST is not idempotent"],
        ),
        (
            "[[routes]]\nid = \"a\"\nuri = \"http://10.1.2.3:8081\"\npredicates = [\"Path=/a/**\"]\n",
            "line 3",
            &["key `routes[0].uri`", "not a registry upstream"],
        ),
    ];
    for (text, line, needles) in cases {
        let (path, stderr) = start_expecting_failure(Some(text), &[]).await;
        assert!(stderr.contains(&path), "names the file: {stderr}");
        assert!(stderr.contains(line), "{line}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{n}: {stderr}");
        }
    }
}

/// A missing file, and protected routes without an issuer, are refused too.
#[tokio::test]
async fn missing_file_and_missing_issuer() {
    let (path, stderr) = start_expecting_failure(None, &[]).await;
    assert!(
        stderr.contains(&format!("cannot read the routes file {path}")),
        "{stderr}"
    );
    let protected = "[[routes]]\nid = \"orders\"\nuri = \"lb://order-service\"\npredicates = [\"Path=/api/order/**\"]\n";
    let (_, stderr) = start_expecting_failure(Some(protected), &["--admin-token", "x"]).await;
    assert!(
        stderr.contains("route `orders` requires a token but no issuer is configured"),
        "{stderr}"
    );
    assert!(stderr.contains("ISSUER_URL"), "{stderr}");
}
