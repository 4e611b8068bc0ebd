//! Faults through the binary on a copy of the dev stack: bad input injects nothing (exit 2);
//! every container kind, a tc kind and the application kinds take effect and are reverted by the
//! supervisor at their end; a fault whose injecting CLI was `kill -9`ed right after injecting is
//! still reverted at its end, and `heal` reverts another at once; afterwards no record, no qdisc,
//! no rule, every container running and healthy.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::docker;
use e2e::{Platform, TestStack};
use serde_json::Value;

use crate::{eventually, setup};

/// `up` of the copy (warm images: 8-20 s; a cold build is the lifecycle test's to pay).
const UP_LIMIT: Duration = Duration::from_secs(600);
/// `inject`, `heal`, `faults`.
const LIMIT: Duration = Duration::from_secs(180);
/// From a fault's end to everything reverted and healthy again.
const REVERT_LIMIT: Duration = Duration::from_secs(120);
/// How long the auto-reverted faults last.
const SHORT: &str = "4s";

fn platform_faults(run: &e2e::Run) -> anyhow::Result<Vec<Value>> {
    Ok(run.json()?.as_array().cloned().unwrap_or_default())
}

async fn faults(platform: &Platform, s: &str) -> anyhow::Result<Vec<Value>> {
    let run = platform
        .run(&["faults", "--json", "--stack", s], LIMIT)
        .await?
        .success()?;
    platform_faults(&run)
}

/// Bad kinds, targets, instances, durations and options exit 2 with a message naming the
/// problem; every container kind, bandwidth (tc tbf), latency (netem, or an NFQUEUE agent on a
/// kernel without it: +200 ms on a TCP connect, healed to nothing left), loss (netem or
/// iptables), app-error and kill-app take effect and are gone
/// after their duration without anyone healing them; a CLI killed with SIGKILL right after
/// injecting leaves a fault the supervisor still reverts; `heal ID` and `heal --all` revert at
/// once and verify; in the end `faults --json` is empty, no container has a qdisc or a fault
/// rule, and every container runs and is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_take_effect_and_always_revert() {
    let (platform, docker) = setup().await;
    let stack = TestStack::dev_copy(&platform, "fault").unwrap();
    eprintln!("stack {} ({})", stack.name, stack.file.display());
    if let Err(e) = walk(&platform, &docker, &stack).await {
        panic!("{e:#}");
    }
}

async fn walk(
    platform: &Platform,
    docker: &bollard::Docker,
    stack: &TestStack,
) -> anyhow::Result<()> {
    let s = stack.arg().to_string();
    let started = Instant::now();
    let container = |service: &str, n: u32| format!("platform-{}-{service}-{n}", stack.name);

    // ---- bad input, before anything runs: exit 2, a clear message, nothing recorded
    let bad: [(&[&str], &str); 7] = [
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
            &["inject", "pause", "inventory-service", "--duration", "0s"],
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
    ];
    for (args, message) in bad {
        let mut args = args.to_vec();
        args.extend(["--stack", &s]);
        let run = platform.run(&args, LIMIT).await?.expect_code(2)?;
        anyhow::ensure!(
            run.stderr.contains(message),
            "`{}`: stderr lacks `{message}`:\n{}",
            run.command,
            run.stderr
        );
    }
    anyhow::ensure!(
        faults(platform, &s).await?.is_empty(),
        "bad input recorded a fault"
    );

    platform
        .run(&["up", "--stack", &s], UP_LIMIT)
        .await?
        .success()?;
    eprintln!("timing: up after {:.1}s", started.elapsed().as_secs_f64());
    let run = platform
        .run(
            &[
                "inject",
                "pause",
                "inventory-service",
                "--instance",
                "7",
                "--stack",
                &s,
            ],
            LIMIT,
        )
        .await?
        .expect_code(2)?;
    anyhow::ensure!(
        run.stderr.contains("no running instance 7"),
        "{}",
        run.stderr
    );

    // ---- network latency first, on the fresh stack: +200 ms measured, healed to nothing left
    let network = format!("platform-{}", stack.name);
    let inventory = container("inventory-service", 1);
    let pid = docker::state(docker, &inventory).await?.pid;
    latency(platform, docker, stack, &inventory, pid, &network).await?;
    wait_whole(platform, docker, stack, "the latency fault's heal").await?;

    // ---- every container kind at once, reverted by the supervisor at the end
    let t = Instant::now();
    let before_restart = docker::state(docker, &container("order-service", 1)).await?;
    let injects: [&[&str]; 5] = [
        &["inject", "kill", "product-service"],
        &["inject", "stop", "trace-collector", "--grace", "2s"],
        &["inject", "pause", "inventory-service"],
        &["inject", "disconnect", "identity-provider"],
        &["inject", "restart", "order-service"],
    ];
    let runs = futures::future::join_all(injects.iter().map(|args| {
        let mut args = args.to_vec();
        args.extend(["--duration", SHORT, "--json", "--stack", &s]);
        let platform = platform.clone();
        async move { platform.run(&args, LIMIT).await?.success() }
    }))
    .await;
    for run in runs {
        let run = run?;
        anyhow::ensure!(
            !platform_faults(&run)?.is_empty(),
            "{} printed no record",
            run.command
        );
    }
    eprintln!(
        "timing: five container faults effective in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // In effect now (each command returns once it is).
    let product = docker::state(docker, &container("product-service", 1)).await?;
    anyhow::ensure!(
        product.status == "exited",
        "killed product-service is {}",
        product.status
    );
    let tracer = docker::state(docker, &container("trace-collector", 1)).await?;
    anyhow::ensure!(
        tracer.status == "exited",
        "stopped trace-collector is {}",
        tracer.status
    );
    let inventory = docker::state(docker, &container("inventory-service", 1)).await?;
    anyhow::ensure!(
        inventory.status == "paused",
        "paused inventory-service is {}",
        inventory.status
    );
    let idp = docker::state(docker, &container("identity-provider", 1)).await?;
    anyhow::ensure!(
        !idp.networks.contains_key(&network),
        "identity-provider still on {network}"
    );
    let order = docker::state(docker, &container("order-service", 1)).await?;
    anyhow::ensure!(
        order.started_at != before_restart.started_at,
        "order-service was not restarted"
    );
    let listed = faults(platform, &s).await?;
    anyhow::ensure!(
        listed.len() == 4,
        "expected 4 active faults (restart is one-shot): {listed:?}"
    );
    anyhow::ensure!(
        listed
            .iter()
            .all(|f| f["intended_stop"] == (f["kind"] != "disconnect")),
        "kill/stop/pause are intended stops, disconnect is not: {listed:?}"
    );
    wait_whole(platform, docker, stack, "the container faults' end").await?;
    let idp = docker::state(docker, &container("identity-provider", 1)).await?;
    anyhow::ensure!(
        idp.networks
            .get(&network)
            .is_some_and(|a| a.iter().any(|a| a == "identity-provider")),
        "identity-provider is back without its alias: {:?}",
        idp.networks
    );
    eprintln!(
        "timing: container faults reverted {:.1}s after injecting",
        t.elapsed().as_secs_f64()
    );

    // ---- kill -9 of the injecting CLI right after it injected: the supervisor still reverts
    let t = Instant::now();
    let mut child = tokio::process::Command::new(platform.bin())
        .args([
            "inject",
            "pause",
            "inventory-service",
            "--duration",
            SHORT,
            "--stack",
            &s,
        ])
        .current_dir(platform.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start platform inject")?;
    eventually("the killed CLI's record", LIMIT, || async {
        anyhow::Ok((!faults(platform, &s).await?.is_empty()).then_some(()))
    })
    .await;
    child.start_kill().context("kill -9 the injecting CLI")?;
    child.wait().await?;
    wait_whole(
        platform,
        docker,
        stack,
        "the revert of the killed CLI's fault",
    )
    .await?;
    eprintln!(
        "timing: fault of a killed CLI reverted after {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // ---- the same, healed at once instead of at its end
    let mut child = tokio::process::Command::new(platform.bin())
        .args([
            "inject",
            "stop",
            "product-service",
            "--duration",
            "10m",
            "--stack",
            &s,
        ])
        .current_dir(platform.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start platform inject")?;
    eventually("the killed CLI's record", LIMIT, || async {
        anyhow::Ok((!faults(platform, &s).await?.is_empty()).then_some(()))
    })
    .await;
    child.start_kill().context("kill -9 the injecting CLI")?;
    child.wait().await?;
    let t = Instant::now();
    let heal = platform
        .run(&["heal", "--all", "--json", "--stack", &s], LIMIT)
        .await?
        .success()?;
    let reports = heal.json()?;
    anyhow::ensure!(
        reports
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["healed"] == true),
        "{reports}"
    );
    // Ready as `platform` sees it (what `heal` verified): Docker's own status may say starting
    // or unhealthy for up to a health-check interval longer on engines without a start interval.
    let status = platform
        .run(&["status", "--json", "--stack", &s], LIMIT)
        .await?
        .success()?
        .json()?;
    let product = container("product-service", 1);
    anyhow::ensure!(
        e2e::shop::ready_containers(&status).get(&product) == Some(&true),
        "{product} is not ready after `heal --all`: {status}"
    );
    eprintln!("timing: heal --all {:.1}s", t.elapsed().as_secs_f64());
    anyhow::ensure!(faults(platform, &s).await?.is_empty());

    // ---- network: bandwidth (tbf) reverted at its end
    let pid = docker::state(docker, &container("inventory-service", 1))
        .await?
        .pid;
    platform
        .run(
            &[
                "inject",
                "bandwidth",
                "inventory-service",
                "--rate",
                "1mbit",
                "--duration",
                SHORT,
                "--stack",
                &s,
            ],
            LIMIT,
        )
        .await?
        .success()?;
    let left = docker::network_leftovers(pid)?;
    anyhow::ensure!(
        left.iter().any(|l| l.starts_with("tbf qdisc")),
        "no tbf qdisc: {left:?}"
    );
    wait_whole(platform, docker, stack, "the bandwidth fault's end").await?;

    // loss (netem, or iptables where the kernel has no netem), healed by id
    let run = inject_long(
        platform,
        &s,
        &["loss", "inventory-service", "--percent", "30"],
    )
    .await?
    .success()?;
    let id = platform_faults(&run)?[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        !docker::network_leftovers(pid)?.is_empty(),
        "loss left no trace in the namespace"
    );
    platform
        .run(&["heal", &id, "--stack", &s], LIMIT)
        .await?
        .success()?;
    anyhow::ensure!(
        docker::network_leftovers(pid)?.is_empty(),
        "heal left the loss fault"
    );
    let unknown = platform
        .run(&["heal", &id, "--stack", &s], LIMIT)
        .await?
        .expect_code(2)?;
    anyhow::ensure!(
        unknown.stderr.contains("no active fault"),
        "{}",
        unknown.stderr
    );

    // ---- application: app-error answered by the service itself, then expired; kill-app
    platform
        .run(
            &[
                "inject",
                "app-error",
                "product-service",
                "--status",
                "503",
                "--route",
                "/api/product",
                "--duration",
                SHORT,
                "--stack",
                &s,
            ],
            LIMIT,
        )
        .await?
        .success()?;
    let product = container("product-service", 1);
    let ip = address(docker, &product, &network).await?;
    let port = stack.port_of("product-service")?;
    let res = reqwest::get(format!("http://{ip}:{port}/api/product")).await?;
    anyhow::ensure!(
        res.status() == 503,
        "app-error: product-service answered {}",
        res.status()
    );
    let body: Value = res.json().await?;
    anyhow::ensure!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.contains("injected-fault")),
        "{body}"
    );
    let health = reqwest::get(format!("http://{ip}:{port}/health/ready")).await?;
    anyhow::ensure!(health.status() == 200, "app-error hit the health probe");
    wait_whole(platform, docker, stack, "the app-error fault's end").await?;
    let res = reqwest::get(format!("http://{ip}:{port}/api/product")).await?;
    anyhow::ensure!(
        res.status() != 503,
        "app-error still answered after its end"
    );

    let before = docker::state(docker, &product).await?;
    platform
        .run(
            &[
                "inject",
                "kill-app",
                "product-service",
                "--duration",
                SHORT,
                "--stack",
                &s,
            ],
            LIMIT,
        )
        .await?
        .success()?;
    let after = docker::state(docker, &product).await?;
    anyhow::ensure!(
        after.status != "running" || after.started_at != before.started_at,
        "kill-app: product-service kept running"
    );
    wait_whole(platform, docker, stack, "the kill-app fault's end").await?;

    eprintln!(
        "timing: whole fault walk {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `platform inject ARGS --duration 10m --json` on stack `s` (healed by the test, not by time).
async fn inject_long(platform: &Platform, s: &str, args: &[&str]) -> anyhow::Result<e2e::Run> {
    let mut all = vec!["inject"];
    all.extend(args);
    all.extend(["--duration", "10m", "--json", "--stack", s]);
    platform.run(&all, LIMIT).await
}

/// TCP connects from this host (on the stack network's bridge) to `ip:port`: the median of
/// `n`, in milliseconds. The container's SYN-ACK is one packet it sends, so a delay on what it
/// sends shows once in each connect.
async fn connect_ms(ip: &str, port: u16, n: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((ip, port)),
        )
        .await
        .context("connect timed out")??;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(stream);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[n / 2])
}

/// `latency --delay 200ms` on inventory-service: netem where the kernel has it, else the
/// NFQUEUE rule and its fault agent; either way a TCP connect to the service takes about 200 ms
/// longer while it lasts, and after `heal` no qdisc, rule, bound queue or agent is left and
/// connects are fast again. Where neither can work the refusal says why and nothing is left.
async fn latency(
    platform: &Platform,
    docker: &bollard::Docker,
    stack: &TestStack,
    inventory: &str,
    pid: i64,
    network: &str,
) -> anyhow::Result<()> {
    let s = stack.arg().to_string();
    let ip = address(docker, inventory, network).await?;
    let port = stack.port_of("inventory-service")?;
    let before = connect_ms(&ip, port, 9).await?;
    let t = Instant::now();
    let run = inject_long(
        platform,
        &s,
        &["latency", "inventory-service", "--delay", "200ms"],
    )
    .await?;
    if run.code == Some(1) {
        // Neither netem nor NFQUEUE here: a clear refusal, nothing recorded or left.
        anyhow::ensure!(run.stderr.contains("queueing discipline"), "{}", run.stderr);
        testkit::skip(format!(
            "latency cannot be injected here: {}",
            run.stderr.trim()
        ));
        anyhow::ensure!(
            faults(platform, &s).await?.is_empty(),
            "a refused latency fault was recorded"
        );
        anyhow::ensure!(docker::network_leftovers(pid)?.is_empty());
        return Ok(());
    }
    let run = run.success()?;
    let effective = t.elapsed().as_secs_f64();
    let rec = platform_faults(&run)?
        .first()
        .cloned()
        .context("latency printed no record")?;
    let id = rec["id"].as_str().unwrap_or_default().to_string();
    let mechanism = rec["revert"]["mechanism"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let left = docker::network_leftovers(pid)?;
    match mechanism.as_str() {
        "netem" => anyhow::ensure!(
            left.iter().any(|l| l.starts_with("netem qdisc")),
            "no netem qdisc: {left:?}"
        ),
        "nfqueue" => {
            anyhow::ensure!(
                left.iter().any(|l| l.contains("NFQUEUE --queue-num"))
                    && left.iter().any(|l| l.starts_with("fault agent")),
                "no NFQUEUE rule and agent: {left:?}"
            );
            anyhow::ensure!(
                rec["revert"]["nfqueue"]["agent_pid"]
                    .as_i64()
                    .is_some_and(|p| p > 0),
                "the record lacks the agent: {rec}"
            );
        }
        other => anyhow::bail!("latency by `{other}`: {rec}"),
    }
    let during = connect_ms(&ip, port, 9).await?;
    eprintln!(
        "latency ({mechanism}): 200 ms requested; TCP connect median {before:.1} ms before, \
         {during:.1} ms during (+{:.1} ms); effective after {effective:.1}s",
        during - before
    );
    anyhow::ensure!(
        (180.0..=300.0).contains(&(during - before)),
        "200 ms of latency added {:.1} ms to a TCP connect ({before:.1} -> {during:.1})",
        during - before
    );
    let t = Instant::now();
    platform
        .run(&["heal", &id, "--stack", &s], LIMIT)
        .await?
        .success()?;
    eprintln!(
        "timing: latency healed in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let left = docker::network_leftovers(pid)?;
    anyhow::ensure!(left.is_empty(), "heal left the latency fault: {left:?}");
    let agents = docker::fault_agents(&format!("--fault {id}"));
    anyhow::ensure!(agents.is_empty(), "agents left: {agents:?}");
    let after = connect_ms(&ip, port, 9).await?;
    anyhow::ensure!(
        after < before + 50.0,
        "connects still slow after heal: {after:.1} ms (before {before:.1} ms)"
    );
    Ok(())
}

/// The container's address on `network`.
async fn address(docker: &bollard::Docker, name: &str, network: &str) -> anyhow::Result<String> {
    let c = docker.inspect_container(name, None).await?;
    c.network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("{name} has no address on {network}"))
}

/// Waits until no fault is recorded and the stack is whole (every container running and ready,
/// no qdisc, no fault rule).
async fn wait_whole(
    platform: &Platform,
    docker: &bollard::Docker,
    stack: &TestStack,
    what: &str,
) -> anyhow::Result<()> {
    let s = stack.arg().to_string();
    eventually(what, REVERT_LIMIT, || async {
        let listed = faults(platform, &s).await?;
        if !listed.is_empty() {
            anyhow::bail!("still recorded: {listed:?}");
        }
        let left = docker::fault_leftovers(docker, &stack.name).await?;
        if !left.is_empty() {
            anyhow::bail!("left: {left:?}");
        }
        Ok(Some(()))
    })
    .await;
    Ok(())
}
