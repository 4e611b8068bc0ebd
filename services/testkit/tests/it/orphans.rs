//! Servers must not outlive a test process that is killed without running destructors (nextest's
//! timeout, Ctrl-C, abort). Proven by running a helper test in a child process, SIGKILLing it, and
//! checking that the servers it started are gone.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Set in the child process: where the helper writes the pids of the servers it started.
const PIDFILE_ENV: &str = "TESTKIT_ORPHAN_TEST_PIDFILE";

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Killing a test process with SIGKILL kills the MariaDB, broker and spawned processes it started.
#[tokio::test]
async fn servers_die_with_a_killed_test_process() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "orphans::helper_starts_servers_and_hangs",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(PIDFILE_ENV, &pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let pids = wait_for_pids(&pidfile, Duration::from_secs(90)).await;
    assert_eq!(pids.len(), 3, "{pids:?}");
    for pid in &pids {
        assert!(alive(*pid), "server {pid} not running before the kill");
    }

    child.start_kill().unwrap(); // SIGKILL: no destructor runs in the child.
    child.wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        survivors.is_empty(),
        "servers outlived the killed test: {survivors:?}"
    );
}

/// Where the helper lists its servers' instance dirs.
fn dirs_file(pidfile: &Path) -> std::path::PathBuf {
    pidfile.with_extension("dirs")
}

async fn wait_for_pids(path: &Path, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "helper wrote no pids");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Helper for `servers_die_with_a_killed_test_process`, run only in its child process: starts one
/// server of each kind, reports their pids, then waits to be killed.
#[tokio::test]
#[ignore = "helper: run by servers_die_with_a_killed_test_process in a child process"]
async fn helper_starts_servers_and_hangs() {
    let Some(pidfile) = std::env::var_os(PIDFILE_ENV) else {
        return;
    };
    let db = testkit::MariaDb::start().await.unwrap();
    let kafka = testkit::Broker::start().await.unwrap();
    // Logs into the parent's temp dir, which the parent removes.
    let log_dir = Path::new(&pidfile).parent().unwrap().to_path_buf();
    let sleeper = testkit::spawn_process_in(
        log_dir,
        "/bin/sleep",
        ["600"],
        std::iter::empty::<(&str, &str)>(),
    )
    .await
    .unwrap();
    let pids = format!(
        "{} {} {}\n",
        db.pid().unwrap(),
        kafka.pid().unwrap(),
        sleeper.pid()
    );
    let dirs = format!("{}\n{}\n", db.dir().display(), kafka.dir().display());
    std::fs::write(dirs_file(Path::new(&pidfile)), dirs).unwrap();
    let tmp = Path::new(&pidfile).with_extension("tmp");
    std::fs::write(&tmp, pids).unwrap();
    std::fs::rename(&tmp, &pidfile).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}
