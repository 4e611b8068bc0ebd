//! The read and operate commands against the real dev stack on Docker: a copy of
//! `stacks/dev.toml` under a unique stack name (its own network, volumes and containers) with
//! the gateway on a free loopback port, so it runs next to a developer's `dev` stack and other
//! tests. It needs the release binaries of the services (`up` builds what is missing) and
//! removes everything with its label, pass or fail.
//!
//! One test walks the whole life: `up` → `status` (no drift; golden JSON) → `token` (the
//! in-network issuer) → admin readers → `smoke` → trace readers → `scale order-service 3`
//! (registered, in the gateway's upstreams, logs of all three merged) → `scale 1` (deregistered)
//! → `down --volumes` → `status` says the stack is not running. Timings go to stderr
//! (`--nocapture` shows them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use platform::commands::Global;
use platform::commands::down::{self, DownArgs};
use platform::commands::scale;
use platform::commands::smoke::{self, Outcome};
use platform::commands::status;
use platform::commands::up::{self, UpArgs};
use platform::observe::Observer;
use platform::observe::admin::{self, Admin};
use platform::observe::auth::{self, Grant};
use platform::observe::registry as reg;
use platform::observe::traces::{Collector, TraceQuery};
use platform::runtime::Runtime;
use platform::stack::StackFile;

use crate::support::{eventually, runtime, unique_stack, with_stack};

/// The whole walk may take this long (a warm `up` takes ~25 s, the smoke a few seconds).
const WALK_LIMIT: Duration = Duration::from_secs(600);

/// Writes the dev stack as stack `name`, publishing the gateway on `port` of the loopback.
fn dev_stack_copy(dir: &Path, name: &str, port: u16) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    let mut text = std::fs::read_to_string(root.join("stacks/dev.toml")).unwrap();
    let realm = root.join("keycloak/realm.json");
    for (from, to) in [
        ("name = \"dev\"".to_string(), format!("name = \"{name}\"")),
        (
            "\"8080:8080\"".to_string(),
            format!("\"127.0.0.1:{port}:8080\""),
        ),
        (
            "\"127.0.0.1:19092:9092\"".to_string(),
            format!("\"127.0.0.1:{}:9092\"", testkit::free_port().unwrap()),
        ),
        (
            "\"../keycloak/realm.json:".to_string(),
            format!("\"{}:", realm.display()),
        ),
    ] {
        assert_eq!(
            text.matches(&from).count(),
            1,
            "stacks/dev.toml changed: `{from}` is not there once"
        );
        text = text.replace(&from, &to);
    }
    let file = dir.join("stack.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn global(file: &Path, json: bool) -> Global {
    Global {
        json,
        stack: file.display().to_string(),
        verbose: 0,
    }
}

/// Runs the `platform` binary.
async fn platform(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_platform"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap()
}

/// Replaces what differs between runs in printed JSON: the stack name, addresses and host
/// ports (on the text, so the snapshot keeps the order the command prints).
fn mask(json: &str, stack: &str) -> String {
    let ip = regex::Regex::new(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").unwrap();
    let port = regex::Regex::new(r#""host_port": \d+"#).unwrap();
    let text = json.replace(stack, "<stack>");
    let text = ip.replace_all(&text, "<ip>");
    port.replace_all(&text, r#""host_port": "<port>""#)
        .to_string()
}

async fn observer(rt: &Runtime, file: &Path) -> Observer {
    let stack = StackFile::at(file.to_path_buf()).load().unwrap();
    Observer::new(rt.clone(), stack).await.unwrap()
}

/// The instances of `app` the registry lists as UP.
async fn up_instances(obs: &Observer, app: &str) -> usize {
    let (_, apps) = reg::applications(obs).await.unwrap();
    apps.instances()
        .filter(|i| {
            i.app.eq_ignore_ascii_case(app)
                && i.effective_status() == registry_client::model::InstanceStatus::Up
        })
        .count()
}

/// The dev stack's life through the CLI's read and operate commands (see the module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_stack_end_to_end() {
    let rt = runtime().await;
    let name = unique_stack("dev");
    let dir = tempfile::tempdir().unwrap();
    let file = dev_stack_copy(dir.path(), &name, testkit::free_port().unwrap());
    let stack_arg = file.display().to_string();
    with_stack(&rt, &name, || async {
        tokio::time::timeout(WALK_LIMIT, walk(&rt, &name, &file, &stack_arg))
            .await
            .expect("the walk through the dev stack took longer than its limit");
    })
    .await;
}

async fn walk(rt: &Runtime, name: &str, file: &Path, stack_arg: &str) {
    // ---- up
    let t0 = Instant::now();
    up::run(
        &global(file, false),
        UpArgs {
            services: vec![],
            build: false,
            timeout: Duration::from_secs(180),
            keep_on_failure: false,
        },
    )
    .await
    .unwrap();
    eprintln!(
        "timing: up (warm images) {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // ---- status: every container running, every registering service UP, no drift
    let mut obs = observer(rt, file).await;
    let view = eventually("status without drift", Duration::from_secs(60), || {
        let obs = &obs;
        async move {
            let v = status::view(obs).await;
            let settled = v.drift.is_empty()
                && v.containers.iter().all(|c| {
                    c.state == "running"
                        && (!c.registers || c.registered.as_ref().is_some_and(|r| r.status == "UP"))
                });
            settled.then_some(v)
        }
    })
    .await;
    assert!(view.running);
    assert!(view.registry.reachable);
    assert_eq!(view.containers.len(), 10);
    assert!(view.not_created.is_empty());
    // Consumer lag comes from the broker (its figures and member ids change from run to run).
    let mut view = view;
    let kafka = view.kafka.take().expect("the dev stack has a broker");
    assert!(kafka.reachable, "{kafka:?}");
    let json = platform::output::json_string(&view).unwrap();
    insta::assert_snapshot!("status_dev_stack", mask(&json, name));
    let o = platform(&["status", "--json", "--stack", stack_arg]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed["running"], true);
    let o = platform(&["ps", "--stack", stack_arg]).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("10 of 10 containers running"), "{text}");
    assert!(!text.contains("drift"), "{text}");

    // ---- token: issued for the issuer the services check, from the host
    let t = Instant::now();
    let user = auth::fetch_token(&obs, &Grant::default_user())
        .await
        .unwrap();
    eprintln!("timing: token {:.3}s", t.elapsed().as_secs_f64());
    assert_eq!(
        user.token_issuer().as_deref(),
        Some("http://identity-provider:8180/realms/platform")
    );
    let claims = auth::unverified_claims(&user.token.access_token).unwrap();
    assert_eq!(claims["preferred_username"], "admin");
    let o = platform(&["token", "--user", "alice", "--stack", stack_arg]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let alice = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let alice = auth::unverified_claims(&alice).unwrap();
    assert_eq!(
        alice["iss"],
        "http://identity-provider:8180/realms/platform"
    );
    assert_eq!(alice["preferred_username"], "alice");
    let o = platform(&[
        "token",
        "--client-credentials",
        "--json",
        "--stack",
        stack_arg,
    ])
    .await;
    let answer: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    let o = platform(&["token", "-u", "alice", "-p", "wrong", "--stack", stack_arg]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid_grant"));

    // ---- admin readers with a client-credentials token (the services accept its issuer)
    let admin = Admin::connect(&obs).await.unwrap();
    let breakers = admin.breakers(admin::BREAKERS_SERVICE).await;
    assert_eq!(breakers.len(), 1);
    let snaps = breakers[0]
        .value
        .as_ref()
        .unwrap_or_else(|| panic!("{breakers:?}"));
    assert!(!snaps.is_empty(), "order-service has a breaker");
    assert_eq!(snaps[0].state, circuit_breaker::State::Closed);
    let consumer = admin.consumer(admin::CONSUMER_SERVICE).await;
    let report = consumer[0]
        .value
        .as_ref()
        .unwrap_or_else(|| panic!("{consumer:?}"));
    assert_eq!(report.topic, "order-placed");
    let upstreams = admin.upstreams(admin::UPSTREAMS_SERVICE).await;
    let ups = upstreams[0]
        .value
        .as_ref()
        .unwrap_or_else(|| panic!("{upstreams:?}"));
    assert!(ups.contains_key("order-service"), "{ups:?}");

    // ---- smoke (its verdict is asserted at the very end)
    let report = smoke::smoke(obs.clone(), None, Duration::from_secs(90), |step| {
        eprintln!("smoke: {}", smoke::step_line(step));
    })
    .await;
    let junit = report.to_junit("2025-01-01T00:00:00");
    assert!(junit.contains("tests=\"7\""), "{junit}");
    let passed_until_trace = report
        .steps
        .iter()
        .take(6)
        .all(|s| s.outcome == Outcome::Passed);
    assert!(passed_until_trace, "{:#?}", report.steps);

    // ---- trace readers: the order's trace by id, and a query by service
    let collector = Collector::of(&obs).unwrap();
    let trace = report.trace.as_ref().expect("the trace step ran");
    let spans = collector
        .trace(&obs, &trace.trace_id)
        .await
        .unwrap()
        .expect("the collector has the order's trace");
    assert!(spans.iter().any(|s| s.service() == Some("order-service")));
    let recent = collector
        .traces(
            &obs,
            &TraceQuery {
                service_name: Some("order-service".into()),
                limit: Some(5),
                ..TraceQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(!recent.is_empty());
    let page = reqwest::get(collector.link(&trace.trace_id)).await.unwrap();
    assert!(page.status().is_success(), "{}", page.status());

    // ---- scale up: three order-service instances, registered, in the gateway's upstreams
    let order = obs.stack().services["order-service"].clone();
    let t = Instant::now();
    let scaled = scale::scale(&obs, &order, 3, Duration::from_secs(120), false)
        .await
        .unwrap();
    eprintln!(
        "timing: scale order-service 1 -> 3 {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(scaled.started.len(), 2);
    assert_eq!(up_instances(&obs, "order-service").await, 3);
    obs.refresh().await.unwrap();
    let again = scale::scale(&obs, &order, 3, Duration::from_secs(30), false)
        .await
        .unwrap();
    assert!(
        again.started.is_empty() && again.removed.is_empty(),
        "idempotent"
    );
    let admin = Admin::connect(&obs).await.unwrap();
    eventually(
        "the gateway balances over 3 order-service instances",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            async move {
                let reads = admin.upstreams(admin::UPSTREAMS_SERVICE).await;
                let n = reads[0]
                    .value
                    .as_ref()?
                    .get("order-service")?
                    .instances
                    .len();
                (n == 3).then_some(())
            }
        },
    )
    .await;
    let breakers = admin.breakers(admin::BREAKERS_SERVICE).await;
    assert_eq!(breakers.len(), 3, "one breaker reading per instance");

    // ---- logs of all three, merged in time order
    let o = platform(&["logs", "order-service", "--json", "--stack", stack_arg]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let instances: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["instance"].as_str())
        .collect();
    assert_eq!(
        instances,
        BTreeSet::from(["order-service-1", "order-service-2", "order-service-3"])
    );
    let stamps: Vec<chrono::DateTime<chrono::FixedOffset>> = lines
        .iter()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "merged in time order"
    );
    let o = platform(&[
        "logs",
        "order-service",
        "--grep",
        "registered with the registry",
        "--tail",
        "2",
        "--stack",
        stack_arg,
    ])
    .await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("order-service-")),
        "{text}"
    );

    // ---- logs --follow: the three live streams merged, ended by Ctrl-C with exit 0
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_platform"))
        .args([
            "logs",
            "order-service",
            "--follow",
            "--tail",
            "1",
            "--json",
            "--stack",
            stack_arg,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while seen.len() < 3 {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("follow ended early");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            seen.insert(v["instance"].as_str().unwrap().to_string());
        }
    })
    .await
    .expect("the last line of each instance arrives while following");
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("follow stops on Ctrl-C")
        .unwrap();
    assert_eq!(exit.code(), Some(0));

    // ---- scale down: the surplus leaves the registry, then its container goes
    obs.refresh().await.unwrap();
    let t = Instant::now();
    let down_to_one = scale::scale(&obs, &order, 1, Duration::from_secs(60), false)
        .await
        .unwrap();
    eprintln!(
        "timing: scale order-service 3 -> 1 {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        down_to_one.removed,
        vec![
            format!("platform-{name}-order-service-3"),
            format!("platform-{name}-order-service-2")
        ]
    );
    assert_eq!(up_instances(&obs, "order-service").await, 1);
    obs.refresh().await.unwrap();
    assert!(status::view(&obs).await.drift.is_empty());

    // ---- scale with instances that never get ready: a clear failure after the timeout, and
    // the new instance is removed again (a copy of the stack with a wrong database password)
    let broken = file.with_file_name("broken.toml");
    let text = std::fs::read_to_string(file).unwrap();
    let bad = text.replace("mysql://orders:orders-secret@", "mysql://orders:wrong@");
    assert_ne!(
        bad, text,
        "stacks/dev.toml changed: order-service's DATABASE_URL"
    );
    std::fs::write(&broken, bad).unwrap();
    let broken_obs = observer(rt, &broken).await;
    let broken_order = broken_obs.stack().services["order-service"].clone();
    let t = Instant::now();
    let err = scale::scale(&broken_obs, &broken_order, 2, Duration::from_secs(8), false)
        .await
        .unwrap_err();
    eprintln!(
        "timing: failed scale {:.1}s: {err}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        err.to_string()
            .contains(&format!("platform-{name}-order-service-2")),
        "{err}"
    );
    assert!(
        err.hint().unwrap_or_default().contains("removed again"),
        "{:?}",
        err.hint()
    );
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "bounded by the timeout"
    );
    let left = rt
        .list_containers(Some(name), Some("order-service"))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the failed instance is removed");
    assert_eq!(up_instances(&obs, "order-service").await, 1);

    // ---- down --volumes, then status says the stack is not running (exit 1)
    let stack = StackFile::at(file.to_path_buf()).load().unwrap();
    let t = Instant::now();
    down::down(
        rt,
        &stack,
        &DownArgs {
            volumes: true,
            timeout: Duration::from_secs(10),
        },
    )
    .await
    .unwrap();
    eprintln!("timing: down --volumes {:.1}s", t.elapsed().as_secs_f64());
    assert!(
        rt.list_containers(Some(name), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(rt.list_volumes(Some(name)).await.unwrap().is_empty());
    let o = platform(&["status", "--stack", stack_arg]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // ---- the smoke's verdict, last, so a failing hop does not hide the rest
    assert!(
        report.passed,
        "smoke failed: {}",
        report
            .steps
            .iter()
            .map(smoke::step_line)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
