//! `status`, `logs`, `scale`, `token` and `smoke` in bad states and with bad input, through the
//! binary (exit codes 0 ok, 1 failure, 2 usage; messages with hints), and the golden `--json`
//! and JUnit output of a smoke report.

use std::path::Path;
use std::process::Output;

use platform::commands::smoke::{Outcome, SmokeReport, StepReport, TraceReport};
use platform::output::json_string;

use crate::support::unique_stack;

fn platform(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_platform"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A stack file named `name` with one service; nothing of it runs.
fn idle_stack(dir: &Path, name: &str) -> String {
    let file = dir.join("stack.toml");
    std::fs::write(
        &file,
        format!(
            "[stack]\nname = \"{name}\"\n[services.web]\nimage = \"nothing:here\"\nport = 80\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// A stack with no running container: `status` exits 1 saying so with the `up` hint, and
/// `--json` still prints the document (running: false) before exiting 1; `token`, `logs` and
/// `smoke` fail the same way, and smoke still writes its JUnit report.
#[test]
fn stack_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let stack = idle_stack(dir.path(), &unique_stack("idle"));
    let o = platform(&["status", "--stack", &stack], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hint: start it with `platform up"),
        "{}",
        stderr(&o)
    );

    let o = platform(&["status", "--json", "--stack", &stack], &[]);
    assert_eq!(o.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["running"], false);
    assert_eq!(json["not_created"], serde_json::json!(["web"]));

    let o = platform(&["token", "--stack", &stack], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));

    let o = platform(&["logs", "web", "--stack", &stack], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no running container"),
        "{}",
        stderr(&o)
    );

    let junit = dir.path().join("smoke.xml");
    let o = platform(
        &[
            "smoke",
            "--stack",
            &stack,
            "--junit",
            &junit.display().to_string(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL  stack"), "{out}");
    assert!(out.contains("smoke FAILED at step `stack`"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    // quick-junit counts skipped cases as `disabled` on the suite; each has its <skipped/>.
    assert!(
        xml.contains("failures=\"1\"")
            && xml.contains("disabled=\"6\"")
            && xml.matches("<skipped ").count() == 6,
        "{xml}"
    );
}

/// Docker unreachable: every command that needs it says where it looked and how to start it.
#[test]
fn docker_unreachable() {
    let env = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    for args in [
        vec!["status"],
        vec!["logs", "order-service"],
        vec!["scale", "order-service", "2"],
        vec!["token"],
        vec!["smoke"],
    ] {
        let o = platform(&args, &env);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("Docker is not reachable at unix:///nonexistent/docker.sock"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("hint:"), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("smoke.xml");
    let o = platform(&["smoke", "--junit", &junit.display().to_string()], &env);
    assert_eq!(o.status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("Docker is not reachable"), "{xml}");
    assert!(xml.contains("failures=\"1\""), "{xml}");
}

/// Usage errors exit 2 before touching Docker: unknown services, stateful or published
/// services for `scale` (naming the ones that scale), counts out of range, bad `--grep` or
/// `--since`, and a bad PLATFORM_REACH is a clear failure.
#[test]
fn usage_errors() {
    let no_docker = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let o = platform(&["scale", "mariadb", "2"], &no_docker);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`mariadb` cannot be scaled: it is stateful"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("hint: the stateless services of this stack scale: inventory-service, notification-service, order-service"),
        "{}",
        stderr(&o)
    );
    let o = platform(&["scale", "api-gateway", "2"], &no_docker);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("publishes host port 8080"),
        "{}",
        stderr(&o)
    );
    for args in [
        vec!["scale", "nope", "2"],
        vec!["logs", "nope"],
        vec!["scale", "order-service", "99"],
        vec!["scale", "order-service", "-1"],
        vec!["logs", "order-service", "--grep", "("],
        vec!["logs", "order-service", "--since", "yesterday"],
        vec!["token", "--client-credentials", "--user", "alice"],
    ] {
        let o = platform(&args, &no_docker);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = platform(&["status"], &[("PLATFORM_REACH", "tunnel")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("PLATFORM_REACH=tunnel is not a route"),
        "{}",
        stderr(&o)
    );
}

fn report(passed: bool) -> SmokeReport {
    let step = |name: &str, outcome: Outcome, seconds: f64, detail: &str| StepReport {
        name: name.into(),
        outcome,
        seconds,
        detail: detail.into(),
    };
    let last = if passed {
        step(
            "trace",
            Outcome::Passed,
            1.2,
            "12 spans from api-gateway, inventory-service, notification-service, order-service",
        )
    } else {
        step(
            "trace",
            Outcome::Failed,
            30.0,
            "trace abc has no spans from inventory-service after 30.0s; it has: order-service (post /api/order) & <more>",
        )
    };
    SmokeReport {
        stack: "dev".into(),
        passed,
        seconds: 35.25,
        gateway: Some("http://localhost:8080/".into()),
        order_number: Some("01ORDER".into()),
        steps: vec![
            step("stack", Outcome::Passed, 0.0, "10 containers running"),
            step("token", Outcome::Passed, 0.01, "user admin"),
            step(
                "create product",
                Outcome::Passed,
                0.02,
                "product p1, sku smoke-1",
            ),
            step("set stock", Outcome::Passed, 0.01, "10 units of smoke-1"),
            step(
                "place order",
                Outcome::Passed,
                0.03,
                "order 01ORDER (PLACED), trace abc",
            ),
            step("notification", Outcome::Passed, 3.1, "notification 1"),
            last,
        ],
        trace: Some(TraceReport {
            trace_id: "abc".into(),
            link: "http://10.0.0.6:9411/zipkin/traces/abc".into(),
            spans: 4,
            services: [(
                "order-service".to_string(),
                ["post /api/order".to_string()].into_iter().collect(),
            )]
            .into_iter()
            .collect(),
            missing: if passed {
                vec![]
            } else {
                vec!["inventory-service".into()]
            },
        }),
    }
}

/// `platform smoke --json` and `--junit` for a failed run: the failing step with its message
/// (escaped in XML), later steps skipped, counts in the suite.
#[test]
fn smoke_report_golden() {
    let mut failed = report(false);
    failed.steps.push(StepReport {
        name: "extra".into(),
        outcome: Outcome::Skipped,
        seconds: 0.0,
        detail: "an earlier step failed".into(),
    });
    insta::assert_snapshot!("smoke_report_json", json_string(&failed).unwrap());
    insta::assert_snapshot!("smoke_report_junit", failed.to_junit("2025-01-01T00:00:00"));
    assert_eq!(
        failed.summary(),
        "smoke FAILED at step `trace` after 35.25s"
    );
    assert_eq!(report(true).summary(), "smoke passed: 7 steps in 35.25s");
}
