//! spawn_process / ChildGuard with a real server program, and wait_for_http.

use std::time::Duration;

use testkit::{free_port, spawn_process, spawn_process_in, wait_for_http};

fn python() -> std::path::PathBuf {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .expect("python3 (Debian's python3 package)")
}

/// A spawned HTTP server is awaited with wait_for_http, gets its environment, logs to its file,
/// dies with SIGKILL like `kill -9`, and comes back with restart on the same arguments.
#[tokio::test]
async fn spawned_server_can_be_killed_and_restarted() {
    let port = free_port().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("health"), "ok").unwrap();
    let directory = dir.path().to_str().unwrap();
    let mut server = spawn_process(
        python(),
        [
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            directory,
            &port,
        ],
        [("PYTHONUNBUFFERED", "1")],
    )
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    wait_for_http(&url, Duration::from_secs(20)).await.unwrap();
    assert!(server.is_running());
    let first_pid = server.pid();

    let status = server.kill().await.unwrap();
    assert_eq!(status.code(), Some(128 + 9));
    assert!(!server.is_running());
    assert!(
        wait_for_http(&url, Duration::from_millis(300))
            .await
            .is_err()
    );

    server.restart().await.unwrap();
    wait_for_http(&url, Duration::from_secs(20)).await.unwrap();
    assert_ne!(server.pid(), first_pid);
    // Both runs logged their requests into the same file.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert_eq!(log.matches("=== testkit: starting").count(), 2, "{log}");
    assert!(log.contains("GET /health"), "{log}");
}

/// SIGSTOP freezes a service (requests hang), SIGCONT resumes it: a hung dependency for timeout tests.
#[tokio::test]
async fn stop_and_cont_freeze_a_process() {
    let port = free_port().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_process_in(
        dir.path(),
        python(),
        [
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            dir.path().to_str().unwrap(),
            &port,
        ],
        std::iter::empty::<(&str, &str)>(),
    )
    .await
    .unwrap();
    assert_eq!(server.log_path(), dir.path().join("python3.log"));
    let url = format!("http://127.0.0.1:{port}/");
    wait_for_http(&url, Duration::from_secs(20)).await.unwrap();
    server.signal("STOP").await.unwrap();
    assert!(
        wait_for_http(&url, Duration::from_millis(500))
            .await
            .is_err()
    );
    server.signal("CONT").await.unwrap();
    wait_for_http(&url, Duration::from_secs(5)).await.unwrap();
    let status = server.stop(Duration::from_secs(5)).await.unwrap();
    assert!(!status.success() || status.code() == Some(0));
}

/// A missing program is reported as NotFound, before anything is spawned.
#[tokio::test]
async fn missing_program_is_reported() {
    let err = spawn_process(
        "/nonexistent/service",
        ["x"],
        std::iter::empty::<(&str, &str)>(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, testkit::Error::NotFound { .. }), "{err}");
}
