//! `--wait-for HOST:PORT` on every service binary a stack builds: `platform render kubernetes`
//! runs each of them as its own init container in that mode (the images are FROM scratch, with
//! no shell to wait with), so each must exit 0 once the port accepts connections, without
//! starting the service, and keep waiting while it does not. Needs no Docker: it runs the built
//! binaries (`testkit::bin_path`: the fresher of the debug and release builds).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `build = { binary = ... }` of every service in the shipped stacks.
fn stack_binaries() -> BTreeSet<String> {
    let stacks = testkit::workspace_root().join("stacks");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&stacks).expect("read stacks/") {
        let path = entry.expect("stacks/ entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a stack file");
        let stack: toml::Table = toml::from_str(&text).expect("a stack file is TOML");
        let services = stack.get("services").and_then(toml::Value::as_table);
        for service in services.into_iter().flat_map(|s| s.values()) {
            if let Some(binary) = service
                .get("build")
                .and_then(|b| b.get("binary"))
                .and_then(toml::Value::as_str)
            {
                names.insert(binary.to_string());
            }
        }
    }
    assert!(
        !names.is_empty(),
        "no stack in {} builds a binary",
        stacks.display()
    );
    // Not in a stack, but a service binary like the others (the gateway's test upstream).
    names.insert("echo-upstream".to_string());
    names
}

/// A child process, killed when dropped (a failed assertion leaves no waiting binary behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `binary --wait-for target`, with none of the service's configuration and, should it start the
/// service after all, a port of its own choosing.
fn spawn_waiting(binary: &str, target: &str) -> Killed {
    let path = testkit::bin_path(binary).unwrap_or_else(|e| panic!("{binary}: {e}"));
    Command::new(&path)
        .args(["--wait-for", target])
        .env("PORT", "0")
        .env("REGISTRY_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Killed)
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()))
}

/// The child's exit status if it exits within `limit`, else `None` (it keeps running).
fn exit_within(Killed(child): &mut Killed, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An open port: each binary exits 0 at once (before the fix, the api-gateway and echo-upstream
/// parsed their configuration without looking at --wait-for and started serving instead).
#[test]
fn every_stack_binary_exits_once_the_port_accepts() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let target = listener.local_addr().expect("local address").to_string();
    let mut failures = Vec::new();
    for binary in stack_binaries() {
        let mut child = spawn_waiting(&binary, &target);
        match exit_within(&mut child, Duration::from_secs(10)) {
            Some(status) if status.success() => {}
            Some(status) => failures.push(format!("{binary}: exited with {status}")),
            None => failures.push(format!("{binary}: still running after 10 s")),
        }
    }
    assert!(failures.is_empty(), "--wait-for {target}: {failures:?}");
}

/// A closed port: each binary keeps waiting (an init container waits as long as Kubernetes lets
/// it), then exits 0 once the port opens.
#[test]
fn every_stack_binary_waits_while_the_port_is_closed() {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = probe.local_addr().expect("local address");
    drop(probe);
    let target = addr.to_string();
    let mut children: Vec<(String, Killed)> = stack_binaries()
        .into_iter()
        .map(|binary| {
            let child = spawn_waiting(&binary, &target);
            (binary, child)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut failures = Vec::new();
    for (binary, child) in &mut children {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            failures.push(format!(
                "{binary}: exited with {status} while the port was closed"
            ));
        }
    }
    let listener = TcpListener::bind(addr).expect("open the port");
    // The binaries try every 2 s, each for up to 2 s.
    for (binary, child) in &mut children {
        match exit_within(child, Duration::from_secs(10)) {
            Some(status) if status.success() => {}
            Some(status) => failures.push(format!("{binary}: exited with {status} once open")),
            None => failures.push(format!(
                "{binary}: still running 10 s after the port opened"
            )),
        }
    }
    drop(listener);
    assert!(failures.is_empty(), "--wait-for {target}: {failures:?}");
}
