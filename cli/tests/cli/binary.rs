//! The `platform` binary's contract with shells and scripts: exit codes (0 ok, 1 failure,
//! 2 usage), messages with hints on stderr, JSON on stdout.

use std::process::{Command, Output};

fn platform(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_platform"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Usage errors exit 2; `--help` exits 0.
#[test]
fn usage_errors_exit_2() {
    assert_eq!(platform(&["frobnicate"], &[]).status.code(), Some(2));
    assert_eq!(
        platform(&["up", "--timeout", "soon"], &[]).status.code(),
        Some(2)
    );
    assert_eq!(platform(&["--help"], &[]).status.code(), Some(0));
    assert_eq!(platform(&["stack", "--help"], &[]).status.code(), Some(0));
}

/// A service name that is not in the stack is a usage error naming the stack's services.
#[test]
fn unknown_service_exits_2() {
    let o = platform(&["build", "no-such-service", "--no-cargo"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown service `no-such-service`"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("hint:"));
}

/// An invalid stack file exits 2 (bad input) with `file:line:column` diagnostics; `--json` puts them on
/// stdout instead.
#[test]
fn invalid_stack_exits_2() {
    let o = platform(
        &[
            "stack",
            "validate",
            "--stack",
            "tests/cli/fixtures/broken.toml",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("broken.toml:9:16: error: dependency cycle"),
        "{}",
        stderr(&o)
    );
    let o = platform(
        &[
            "stack",
            "validate",
            "--json",
            "--stack",
            "tests/cli/fixtures/broken.toml",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"].as_array().unwrap().len(), 6);
}

/// A stack path that is a directory, a file that is not UTF-8 and an invalid file are bad input
/// (exit 2), each said once and plainly; `scale` takes what a stack file may say.
#[test]
fn bad_stack_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let o = platform(&["stack", "show", "--stack", &d], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is a directory, not a stack file"),
        "{}",
        stderr(&o)
    );
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let o = platform(
        &["stack", "show", "--stack", &binary.display().to_string()],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.matches("valid UTF-8").count(), 1, "{err}");
    let o = platform(
        &["stack", "show", "--stack", "tests/cli/fixtures/broken.toml"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = platform(&["scale", "order-service", "17"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("0..=16"), "{}", stderr(&o));
}

/// A missing stack is a usage error with a hint.
#[test]
fn missing_stack_exits_2() {
    let o = platform(&["stack", "show", "--stack", "nope"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no stack `nope`"), "{}", stderr(&o));
}

/// With Docker unreachable, commands that need it fail with where it was looked for and how
/// to start it; `version` still answers and says Docker is not reachable.
#[test]
fn docker_unreachable_is_explained() {
    let env = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let o = platform(&["images"], &env);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("Docker is not reachable at unix:///nonexistent/docker.sock"),
        "{err}"
    );
    assert!(
        err.contains("hint: is the daemon running? try `sudo systemctl start docker`"),
        "{err}"
    );
    let o = platform(&["version", "--json"], &env);
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["docker"]["reachable"], false);
}

/// `version --json` names the engine's API version when Docker is there.
#[test]
fn version_reports_the_engine() {
    let o = platform(&["version", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["docker"]["reachable"], true, "{json}");
    assert!(
        json["docker"]["api_version"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );
}

/// Completion scripts are generated for the common shells.
#[test]
fn completions() {
    for shell in ["bash", "zsh", "fish"] {
        let o = platform(&["completions", shell], &[]);
        assert_eq!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stdout).contains("platform"));
    }
}

/// The full stack's official images are not here and are never pulled: `up` says so and
/// points at the offline stack, before creating anything.
#[test]
fn full_stack_without_images_is_explained() {
    let o = platform(&["up", "--stack", "full", "zipkin"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("image openzipkin/zipkin:3 of service `zipkin` is not on this machine"),
        "{err}"
    );
    assert!(err.contains("--stack dev"), "{err}");
}

/// A bad scenario file exits 2 before anything is touched (no Docker needed), naming file,
/// line and key of every error; bad `platform load` arguments exit 2 too.
#[test]
fn bad_scenarios_and_load_arguments_exit_2() {
    let o = platform(
        &["scenario", "run", "tests/cli/fixtures/bad-scenario.toml"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("nothing was run"), "{e}");
    assert!(
        e.contains("bad-scenario.toml:12:46: error: unknown field `colour`"),
        "{e}"
    );
    let o = platform(
        &["scenario", "validate", "tests/cli/fixtures/no-such.toml"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no scenario file"), "{}", stderr(&o));
    for args in [
        &["load", "--rate", "0"][..],
        &["load", "--rate", "1e9"],
        &["load", "--mix", "orders=80,carts=20"],
        &["load", "--duration", "soon"],
        &["load", "--max-in-flight", "0"],
        &["load", "--connections", "0"],
        &["load", "--connections", "10001"],
        &["load", "--connections", "many"],
        &["load", "--users", " , "],
        &["load", "--rate", "50000", "--duration", "1h"],
    ] {
        let o = platform(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

/// `platform scenario ls` lists the shipped scenarios, each validated.
#[test]
fn scenario_ls() {
    let o = platform(&["scenario", "ls"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in [
        "inventory-down",
        "slow-inventory",
        "order-instance-killed",
        "broker-outage",
        "inventory-db-down",
        "identity-down",
        "inventory-latency",
        "notification-partition",
    ] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
}

/// Bad fault input exits 2 with a message naming the problem and a hint, before Docker is
/// asked anything (so also where there is no engine): unknown kind, target, option, bad
/// duration, percentage, instance or selection.
#[test]
fn bad_fault_input_exits_2() {
    let cases: [(&[&str], &str); 8] = [
        (
            &["inject", "explode", "inventory-service"],
            "unknown fault kind `explode`",
        ),
        (
            &["inject", "pause", "no-such-service"],
            "unknown target `no-such-service`",
        ),
        (
            &["inject", "pause", "inventory-service", "--duration", "soon"],
            "--duration",
        ),
        (
            &["inject", "pause", "inventory-service", "--duration", "25h"],
            "--duration",
        ),
        (
            &["inject", "pause", "inventory-service", "--delay", "1s"],
            "takes no option --delay",
        ),
        (
            &["inject", "loss", "inventory-service", "--percent", "150"],
            "--percent",
        ),
        (
            &["inject", "pause", "inventory-service", "--instance", "0"],
            "numbered from 1",
        ),
        (
            &["inject", "bandwidth", "inventory-service"],
            "needs --rate",
        ),
    ];
    let no_docker = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    for (args, message) in cases {
        let o = platform(args, &no_docker);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("hint:"), "{args:?}: {}", stderr(&o));
    }
    let o = platform(&["inject", "pause", "x", "--all", "--random"], &no_docker);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = platform(&["heal"], &no_docker);
    assert_eq!(
        o.status.code(),
        Some(2),
        "heal without ID or --all: {}",
        stderr(&o)
    );
}
