//! Scenario files: the shipped ones validate against the dev stack; bad files are refused with
//! file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::{Bound, Instances, Probe, Since, Step};
use super::*;
use crate::stack::StackFile;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dev() -> Stack {
    StackFile::at(root().join("stacks/dev.toml"))
        .load()
        .unwrap()
}

fn errors(text: &str) -> Vec<String> {
    let parsed = check_text(text, "s.toml", &dev());
    assert!(parsed.scenario.is_none(), "expected errors for:\n{text}");
    parsed.diagnostics.iter().map(ToString::to_string).collect()
}

const GOOD: &str = r#"
[scenario]
name = "demo"
description = "a demo"
timeout = "2m"

[steady_state]
within = "30s"
checks = [{ healthy = true }, { breaker = "CLOSED" }]

[[step]]
load = { rate = 10, duration = "20s", mix = "orders=50,products=50" }

[[step]]
inject = "stop inventory-service --duration 1m"

[[step]]
assert = { breaker = "open", within = "20s", since = "inject", instances = "any" }

[[step]]
assert = { error_rate = "< 1%", kinds = ["products"], since = "inject" }

[[step]]
heal = "all"

[[step]]
wait_until = { load = "done" }

[[step]]
assert = { notified_once = true, within = "1m", title = "exactly once" }
"#;

/// Every file shipped in stacks/scenarios/ validates against the dev stack.
#[test]
fn shipped_scenarios_validate() {
    let files = files_in(&root().join("stacks/scenarios"));
    assert!(files.len() >= 8, "{files:?}");
    let scenarios = load_all(&files, &dev()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenarios.len(), files.len());
}

/// A complete file reads into the model with defaults filled in and titles made up.
#[test]
fn reads_a_scenario() {
    let s = check_text(GOOD, "s.toml", &dev()).scenario.unwrap();
    assert_eq!(s.name, "demo");
    assert_eq!(s.timeout, Duration::from_secs(120));
    assert_eq!(s.steady_state.checks.len(), 2);
    assert_eq!(s.steps.len(), 7);
    let Step::Assert(c) = &s.steps[2] else {
        panic!("{:?}", s.steps[2])
    };
    assert_eq!(c.since, Since::Inject);
    assert_eq!(
        c.probe,
        Probe::Breaker {
            service: "order-service".into(),
            breaker: "inventory-service".into(),
            state: circuit_breaker::State::Open,
            instances: Instances::Any,
        }
    );
    assert!(c.title.contains("OPEN within 20s"), "{}", c.title);
    let Step::Assert(c) = &s.steps[3] else {
        panic!()
    };
    assert!(matches!(
        c.probe,
        Probe::ErrorRate {
            bound: Bound::Below(b),
            ..
        } if b == 1.0
    ));
    let Step::WaitUntil(c) = &s.steps[5] else {
        panic!()
    };
    assert_eq!(c.within, Duration::from_secs(60), "waits default to 60s");
    let Step::Assert(c) = &s.steps[6] else {
        panic!()
    };
    assert_eq!(c.title, "exactly once");
}

/// Unknown keys, wrong types, unknown probes and services, bad durations and bounds: each an
/// error with the file, line and key.
#[test]
fn bad_files_name_line_and_key() {
    let e = errors(&GOOD.replace("timeout = \"2m\"", "timeout = \"2 fortnights\""));
    assert!(
        e.iter()
            .any(|d| d.starts_with("s.toml:5:") && d.contains("scenario.timeout")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace("description = \"a demo\"", "descripton = \"a demo\""));
    assert!(
        e.iter()
            .any(|d| d.contains("unknown field `descripton`") && d.contains("s.toml:4:")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace("rate = 10", "rate = \"fast\""));
    assert!(
        e.iter()
            .any(|d| d.contains("s.toml:12:") && d.contains("key `step[0].load.rate`")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace("breaker = \"open\"", "breaker = \"ajar\""));
    assert!(
        e.iter()
            .any(|d| d.contains("not a breaker state") && d.contains("step[2].assert.breaker")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace("kinds = [\"products\"]", "kinds = [\"carts\"]"));
    assert!(
        e.iter()
            .any(|d| d.contains("unknown request kind `carts`") && d.contains("kinds[0]")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace(
        "wait_until = { load = \"done\" }",
        "wait_until = { load = \"done\", smoke = true }",
    ));
    assert!(e.iter().any(|d| d.contains("reads one thing")), "{e:?}");
    let e = errors(&GOOD.replace("heal = \"all\"", "heal = \"some\""));
    assert!(e.iter().any(|d| d.contains("step[4].heal")), "{e:?}");
    let e = errors(&GOOD.replace("< 1%", "lots"));
    assert!(e.iter().any(|d| d.contains("not a bound")), "{e:?}");
    let e = errors(&GOOD.replace(
        "heal = \"all\"",
        "scale = { service = \"payment-service\", instances = 2 }",
    ));
    assert!(
        e.iter()
            .any(|d| d.contains("unknown service `payment-service`")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace("instances = \"any\"", "instances = \"any\", min = 3"));
    assert!(
        e.iter().any(|d| d.contains("`breaker` takes no `min`")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace(
        "inject = \"stop inventory-service --duration 1m\"",
        "inject = \"stop\"",
    ));
    assert!(e.iter().any(|d| d.contains("step[1].inject")), "{e:?}");
}

/// Structure rules: a steady state is required, load checks need a load step before them,
/// heal needs an inject, one load at most, one action per step.
#[test]
fn structure_rules() {
    let no_load = GOOD.replace(
        "load = { rate = 10, duration = \"20s\", mix = \"orders=50,products=50\" }",
        "wait = \"1s\"",
    );
    let e = errors(&no_load);
    assert!(
        e.iter().any(|d| d.contains("put a `load` step before it")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace(
        "[steady_state]\nwithin = \"30s\"\nchecks = [{ healthy = true }, { breaker = \"CLOSED\" }]",
        "",
    ));
    assert!(
        e.iter().any(|d| d.contains("needs a [steady_state]")),
        "{e:?}"
    );
    let e = errors(&GOOD.replace("heal = \"all\"", "heal = \"all\"\nwait = \"1s\""));
    assert!(e.iter().any(|d| d.contains("does one thing")), "{e:?}");
    let e = errors(&format!(
        "{GOOD}\n[[step]]\nload = {{ rate = 1, duration = \"1s\" }}\n"
    ));
    assert!(e.iter().any(|d| d.contains("at most one `load`")), "{e:?}");
    // The load's connection bound: the engine's own limits, with the step's key.
    let load = "load = { rate = 10, duration = \"20s\", mix = \"orders=50,products=50\" }";
    for bad in ["0", "10001", "-1"] {
        let e = errors(&GOOD.replace(
            load,
            &format!("load = {{ rate = 10, duration = \"20s\", connections = {bad} }}"),
        ));
        assert!(
            e.iter().any(|d| d.contains("connections must be 1 to")),
            "{bad}: {e:?}"
        );
    }
    let e = errors(&GOOD.replace(
        load,
        "load = { rate = 10, duration = \"20s\", connections = \"many\" }",
    ));
    assert!(e.iter().any(|d| d.contains("connections")), "{e:?}");
    let e = errors(
        "[scenario]\nname = \"Bad Name\"\n[steady_state]\nchecks=[{smoke=true}]\n[[step]]\nwait=\"1s\"\n",
    );
    assert!(e.iter().any(|d| d.contains("lowercase")), "{e:?}");
}

/// A missing file and two files with one name are refused before anything runs.
#[test]
fn files_are_checked_together() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, GOOD).unwrap();
    std::fs::write(&b, GOOD).unwrap();
    let e = load_all(&[a.clone(), b], &dev()).unwrap_err();
    assert!(matches!(e, ScenarioError::DuplicateName { .. }), "{e}");
    assert_eq!(e.exit_code(), 2);
    let e = load_all(&[a, dir.path().join("missing.toml")], &dev()).unwrap_err();
    assert!(matches!(e, ScenarioError::NotFound { .. }), "{e}");
}

/// Inject lines split into words like a shell would, quotes kept together.
#[test]
fn splits_inject_lines() {
    assert_eq!(
        parse::split_words("app-error order-service --route '/api/order' --status 503").unwrap(),
        [
            "app-error",
            "order-service",
            "--route",
            "/api/order",
            "--status",
            "503"
        ]
    );
    assert!(parse::split_words("x 'y").is_err());
}
