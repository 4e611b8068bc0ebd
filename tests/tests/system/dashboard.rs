//! `platform dashboard` in a real terminal (tmux) against a running copy of the dev stack, read
//! back with capture-pane as a user sees it: keys scale, inject and heal, the panels show the
//! effect, the command log shows the CLI equivalents, and the terminal is restored on exit and
//! on a panic.

use std::time::Duration;

use anyhow::ensure;
use e2e::tmux::{Session, line_with};
use e2e::{Platform, TestStack, docker};

use crate::setup;

/// `up` of the stack copy (images are usually built by then; a cold build is minutes).
const UP_LIMIT: Duration = Duration::from_secs(600);
/// The first full screen: every collector's first answer.
const FIRST_SCREEN: Duration = Duration::from_secs(60);
/// A new instance started, registered and shown UP.
const SCALED: Duration = Duration::from_secs(120);
/// The breaker of both order-service instances opening under load once inventory is stopped.
const OPENED: Duration = Duration::from_secs(90);
/// Inventory started again and the breakers closing (open wait, then half-open calls).
const CLOSED: Duration = Duration::from_secs(150);
/// `q` to exit.
const EXIT: Duration = Duration::from_secs(20);

/// The dashboard in a 150×45 terminal on the stack copy: `+` on order-service starts a second
/// instance that the services panel shows UP in the registry; `i` on inventory-service → stop →
/// 2m → y (with `:load` running orders) turns both breakers OPEN on screen; `h` → all heals
/// and they turn CLOSED; the commands view lists `platform scale`, `platform load`,
/// `platform inject` and `platform heal` as they were run; `q` exits 0 with the terminal back on
/// its main screen. A second dashboard made to panic after its first frame leaves the terminal
/// restored too (main screen, cursor visible) and exits non-zero. No container restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_tmux_scales_injects_and_heals() {
    let (platform, docker) = setup().await;
    let stack = TestStack::dev_copy(&platform, "dash").unwrap();
    let s = stack.arg().to_string();
    let up = platform.run(&["up", "--stack", &s], UP_LIMIT).await;
    if let Err(e) = up.and_then(|r| r.success()) {
        panic!("{e:#}");
    }
    let driver = platform.clone();
    let stack_arg = s.clone();
    let result = tokio::task::spawn_blocking(move || drive(&driver, &stack_arg))
        .await
        .expect("the tmux driver panicked");
    if let Err(e) = result {
        panic!("{e:#}");
    }
    let panicked = tokio::task::spawn_blocking({
        let platform = platform.clone();
        move || restored_after_panic(&platform, &s)
    })
    .await
    .expect("the tmux driver panicked");
    if let Err(e) = panicked {
        panic!("{e:#}");
    }
    let owned = docker::owned(&docker, &stack.name).await.unwrap();
    for c in &owned.containers {
        let state = docker::state(&docker, &c.name).await.unwrap();
        assert_eq!(
            (state.restart_count, state.oom_killed),
            (0, false),
            "{} restarted or was OOM-killed while the dashboard drove the stack",
            c.name
        );
    }
}

fn drive(platform: &Platform, stack: &str) -> anyhow::Result<()> {
    let line = platform.shell_line(&[
        "dashboard",
        "--stack",
        stack,
        "--view",
        "services",
        "--no-links",
    ]);
    let tmux = Session::start("dash", 150, 45, &line)?;

    // Every service registered and shown UP.
    tmux.wait_for(
        "order-service-1 and inventory-service-1 UP",
        FIRST_SCREEN,
        |s| {
            ["order-service-1", "inventory-service-1"]
                .iter()
                .all(|i| line_with(s, i).is_some_and(|l| l.contains("UP")))
        },
    )?;

    // `/order-service` selects the service row; `+` scales it to 2.
    select(&tmux, "order-service")?;
    tmux.type_text("+")?;
    tmux.wait_for("order-service-2 running and UP", SCALED, |s| {
        line_with(s, "order-service-2").is_some_and(|l| l.contains("running") && l.contains("UP"))
    })?;
    eprintln!("dashboard: order-service-2 is UP on screen");

    // Orders through the gateway, so the breakers see calls; the load first creates and
    // stocks its products, which needs inventory, so the fault waits until it is sending.
    command(&tmux, "load 20 150s orders=80,products=20")?;
    tmux.wait_for("the load sending", SCALED, |s| {
        line_with(s, "platform load").is_some_and(|l| l.contains("sending"))
    })?;

    // `i` on inventory-service: kind 2 (stop), duration 3 (2m), confirm.
    select(&tmux, "inventory-service")?;
    tmux.type_text("i")?;
    tmux.wait_for("the fault menu", EXIT, |s| {
        s.contains("Inject a fault on inventory-service")
    })?;
    tmux.type_text("2")?;
    tmux.wait_for("the duration menu", EXIT, |s| s.contains("for how long?"))?;
    tmux.type_text("3")?;
    tmux.wait_for("the confirmation", EXIT, |s| {
        s.contains("Inject stop on inventory-service")
    })?;
    tmux.type_text("y")?;

    tmux.type_text("3")?;
    tmux.wait_for("both breakers OPEN", OPENED, |s| {
        breaker_states(s).is_some_and(|states| states.iter().all(|st| st == "OPEN"))
    })?;
    eprintln!("dashboard: both breakers OPEN on screen");

    // `h` → all heals; the breakers close once inventory answers again.
    tmux.type_text("h")?;
    tmux.wait_for("the heal menu", EXIT, |s| s.contains("every active fault"))?;
    tmux.type_text("1")?;
    tmux.wait_for("both breakers CLOSED", CLOSED, |s| {
        breaker_states(s).is_some_and(|states| states.iter().all(|st| st == "CLOSED"))
    })?;
    eprintln!("dashboard: both breakers CLOSED on screen");

    command(&tmux, "load stop")?;
    tmux.type_text("8")?;
    let screen = tmux.wait_for("the CLI equivalents", EXIT, |s| {
        [
            "platform scale order-service 2",
            "platform load",
            "platform inject stop inventory-service --all --duration 2m",
            "platform heal",
        ]
        .iter()
        .all(|c| s.contains(c))
    })?;
    ensure!(
        !screen.contains('✗'),
        "an action failed in the command log:\n{screen}"
    );

    tmux.type_text("q")?;
    let status = tmux.wait_exit(EXIT)?;
    ensure!(
        status == 0,
        "q exited {status}; the screen:\n{}",
        tmux.screen()?
    );
    ensure!(
        tmux.pane("#{alternate_on}")? == "0",
        "the terminal was left on the alternate screen"
    );
    Ok(())
}

/// Filters the services view to `service` and puts the cursor on its service row. The `/`
/// prompt starts with the current filter: Ctrl-U clears it (an Escape right before other keys
/// would reach the dashboard as Alt+key).
fn select(tmux: &Session, service: &str) -> anyhow::Result<()> {
    tmux.type_text("2")?;
    tmux.type_text("/")?;
    tmux.keys(&["C-u"])?;
    tmux.type_text(service)?;
    tmux.keys(&["Enter"])?;
    tmux.type_text("g")?;
    Ok(())
}

/// Runs a `:` command.
fn command(tmux: &Session, line: &str) -> anyhow::Result<()> {
    tmux.type_text(&format!(":{line}"))?;
    tmux.keys(&["Enter"])
}

/// The STATE column of the breakers view's inventory-service rows (`INSTANCE BREAKER STATE
/// ...`), when both instances have one.
fn breaker_states(screen: &str) -> Option<Vec<String>> {
    let states: Vec<String> = screen
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l
                .split(|c: char| c.is_whitespace() || c == '│')
                .filter(|w| !w.is_empty())
                .collect();
            match words.as_slice() {
                [instance, "inventory-service", state, ..]
                    if instance.starts_with("order-service-") =>
                {
                    Some(state.to_string())
                }
                _ => None,
            }
        })
        .collect();
    (states.len() >= 2).then_some(states)
}

/// A dashboard told to panic after its first frame (PLATFORM_DASHBOARD_TEST_PANIC) leaves the
/// terminal on its main screen with the cursor shown, prints the panic and exits non-zero, read
/// from the shell that started it, as the user gets the terminal back.
fn restored_after_panic(platform: &Platform, stack: &str) -> anyhow::Result<()> {
    let line = format!(
        "export PLATFORM_DASHBOARD_TEST_PANIC=1; {}",
        platform.shell_line(&["dashboard", "--stack", stack])
    );
    let tmux = Session::start("panic", 100, 30, &line)?;
    let status = tmux.wait_exit(FIRST_SCREEN)?;
    let screen = tmux.screen()?;
    ensure!(status != 0, "the panicking dashboard exited 0:\n{screen}");
    ensure!(
        tmux.pane("#{alternate_on}")? == "0",
        "the panic left the alternate screen on:\n{screen}"
    );
    ensure!(
        tmux.pane("#{cursor_flag}")? == "1",
        "the panic left the cursor hidden:\n{screen}"
    );
    ensure!(
        screen.contains("PLATFORM_DASHBOARD_TEST_PANIC"),
        "the panic message is not on the restored screen:\n{screen}"
    );
    Ok(())
}
