//! Load and resilience scenarios on one dev stack brought up once (CI time is tight: one `up`
//! for all of them, one `down` whatever happens).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::docker;
use e2e::{Platform, TestStack};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::setup;

/// `up` of the stack copy (images are usually built by then; a cold build is minutes).
const UP_LIMIT: Duration = Duration::from_secs(600);
/// Every shipped scenario, one after another (each has its own timeout of 3 to 5 minutes).
const SCENARIOS_LIMIT: Duration = Duration::from_secs(35 * 60);
/// One short scenario or load run.
const SHORT_LIMIT: Duration = Duration::from_secs(180);
/// From SIGINT to the scenario's exit (it heals first).
const HEAL_LIMIT: Duration = Duration::from_secs(180);

/// On one copy of the dev stack: every scenario in stacks/scenarios/ passes (with a JUnit
/// report of every check); a scenario with a deliberately false expectation exits 1 naming the
/// assertion and the measured value; SIGINT during a scenario with two faults active exits 130
/// after healing both (no fault listed, every container running, no qdisc left); `platform
/// load` sends exactly rate × duration requests and reports them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_on_one_dev_stack() {
    let (platform, docker) = setup().await;
    let stack = TestStack::dev_copy(&platform, "scen").unwrap();
    let s = stack.arg().to_string();
    let up = platform.run(&["up", "--stack", &s], UP_LIMIT).await;
    if let Err(e) = up.and_then(|r| r.success()) {
        panic!("{e:#}");
    }
    let mut failures = Vec::new();
    let started = Instant::now();
    for (what, result) in [
        ("load", load(&platform, &s).await),
        ("false expectation", false_expectation(&platform, &s).await),
        (
            "Ctrl-C heals",
            interrupted(&platform, &docker, &stack).await,
        ),
        ("shipped scenarios", shipped(&platform, &stack).await),
    ] {
        eprintln!(
            "timing: {what} done at {:.0}s",
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = result {
            failures.push(format!("{what}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `platform load` for 4 s at 25/s: 100 requests scheduled, sent and answered, with
/// percentiles and answers by status in the JSON report.
async fn load(platform: &Platform, s: &str) -> anyhow::Result<()> {
    let run = platform
        .run(
            &[
                "load",
                "--stack",
                s,
                "--rate",
                "25",
                "--duration",
                "4s",
                "--mix",
                "orders=50,products=25,health=25",
                "--json",
            ],
            SHORT_LIMIT,
        )
        .await?
        .success()?;
    let r = run.json()?;
    anyhow::ensure!(r["scheduled"] == 100 && r["sent"] == 100, "{r:#}");
    anyhow::ensure!(r["counts"]["total"] == 100, "{r:#}");
    anyhow::ensure!(
        r["counts"]["ok"] == 100,
        "every request should succeed: {r:#}"
    );
    anyhow::ensure!(r["statuses"]["201"] == 50, "{r:#}");
    anyhow::ensure!(
        r["latency_ms"]["p99"].as_f64().is_some_and(|p| p > 0.0),
        "{r:#}"
    );
    anyhow::ensure!(
        r["tokens"]["users"]
            .as_array()
            .is_some_and(|u| u.len() == 4),
        "{r:#}"
    );
    Ok(())
}

/// The false expectation fails with exit 1 and names the assertion and what it measured.
async fn false_expectation(platform: &Platform, s: &str) -> anyhow::Result<()> {
    let run = platform
        .run(
            &[
                "scenario",
                "run",
                "--stack",
                s,
                "tests/scenarios/false-expectation.toml",
            ],
            SHORT_LIMIT,
        )
        .await?
        .expect_code(1)?;
    let out = &run.stdout;
    for needle in [
        "scenario false-expectation FAILED",
        "FAIL assert",
        "breaker inventory-service of every order-service is OPEN within 2s",
        "measured: ",
        "CLOSED",
        "0 of 1 scenarios passed",
    ] {
        anyhow::ensure!(out.contains(needle), "no `{needle}` in:\n{out}");
    }
    Ok(())
}

/// SIGINT while two faults are active: the scenario heals both, exits 130, and nothing is
/// left: no active fault, every container running, no qdisc on order-service.
async fn interrupted(
    platform: &Platform,
    docker: &bollard::Docker,
    stack: &TestStack,
) -> anyhow::Result<()> {
    let s = stack.arg();
    let mut child = platform.spawn(&[
        "scenario",
        "run",
        "--stack",
        s,
        "tests/scenarios/interrupted.toml",
    ])?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let waiting = tokio::time::timeout(SHORT_LIMIT, async {
        while let Some(line) = lines.next_line().await? {
            eprintln!("[scenario] {line}");
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("step 3 wait") {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    anyhow::ensure!(
        matches!(waiting, Ok(Ok(true))),
        "the scenario never reached its wait:\n{seen}"
    );
    let pid = child.id().context("the scenario exited early")?;
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    anyhow::ensure!(kill.success(), "kill -INT {pid} failed");
    let rest = tokio::time::timeout(HEAL_LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[scenario] {line}");
            seen.push_str(&line);
            seen.push('\n');
        }
        child.wait().await
    })
    .await
    .context("the interrupted scenario did not exit")??;
    anyhow::ensure!(
        rest.code() == Some(130),
        "exit {rest:?}, expected 130:\n{seen}"
    );
    anyhow::ensure!(seen.contains("cleanup: healed"), "no heal in:\n{seen}");
    let faults = platform
        .run(&["faults", "--json", "--stack", s], SHORT_LIMIT)
        .await?
        .success()?
        .json()?;
    anyhow::ensure!(
        faults.as_array().is_some_and(Vec::is_empty),
        "faults left: {faults:#}"
    );
    let owned = docker::owned(docker, &stack.name).await?;
    let stopped: Vec<&docker::Container> = owned
        .containers
        .iter()
        .filter(|c| c.state != "running")
        .collect();
    anyhow::ensure!(stopped.is_empty(), "containers not running: {stopped:?}");
    let order = owned.of("order-service");
    let container = order.first().context("no order-service container")?;
    let qdisc = qdisc_of(&container.name)?;
    anyhow::ensure!(
        !qdisc.contains("netem") && !qdisc.contains("tbf"),
        "a fault's qdisc is left on {}: {qdisc}",
        container.name
    );
    Ok(())
}

/// `tc qdisc show` inside a container's network namespace (from the host, as the faults do).
fn qdisc_of(container: &str) -> anyhow::Result<String> {
    let pid = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", container])
        .output()?;
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-n", "tc", "qdisc", "show"])
        .output()
        .context("nsenter + tc")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `platform scenario run stacks/scenarios/*.toml --junit F`: all pass (or are skipped, with
/// the reason printed, when this machine cannot inject their fault), the JUnit file counts
/// every check and no failure.
async fn shipped(platform: &Platform, stack: &TestStack) -> anyhow::Result<()> {
    let root = platform.root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("stacks/scenarios"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(files.len() >= 8, "expected the eight scenarios: {files:?}");
    let junit = stack.file.with_extension("scenarios.junit.xml");
    let junit_arg = junit.display().to_string();
    let mut args = vec![
        "scenario",
        "run",
        "--stack",
        stack.arg(),
        "--junit",
        &junit_arg,
    ];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let run = platform.run(&args, SCENARIOS_LIMIT).await?;
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    let run = run.success()?;
    // A scenario this machine cannot run (e.g. network latency on a kernel without netem) is
    // reported as skipped with its reason: say so where the CI log reader looks.
    for line in run.stdout.lines().filter(|l| l.contains("SKIPPED,")) {
        eprintln!("SKIPPED scenario{line}");
    }
    // Network latency needs netem or, without it, nfnetlink_queue for the NFQUEUE agent; the
    // kernels this project's CI runs on have the latter, so the latency scenario runs there.
    let netem_or_nfqueue = std::path::Path::new("/proc/net/netfilter/nfnetlink_queue").exists()
        || std::path::Path::new("/sys/module/sch_netem").exists();
    anyhow::ensure!(
        !(netem_or_nfqueue && run.stdout.contains("scenario inventory-latency SKIPPED")),
        "inventory-latency was skipped although this kernel can delay packets:\n{}",
        run.stdout
    );
    let skipped = run.stdout.matches("SKIPPED,").count();
    anyhow::ensure!(
        run.stdout.contains(&format!(
            "{} of {} scenarios passed",
            files.len() - skipped,
            files.len()
        )),
        "{}",
        run.stdout
    );
    anyhow::ensure!(report.contains("failures=\"0\""), "{report}");
    let suites = report.matches("<testsuite ").count();
    anyhow::ensure!(suites == files.len(), "{suites} suites in:\n{report}");
    Ok(())
}
