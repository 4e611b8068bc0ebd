//! `platform dashboard`: the live TUI of the running stack (the `dashboard` crate), fed by
//! background collectors ([`feed`]) and acting through the CLI's libraries ([`act`]).
//!
//! The UI loop is one `tokio::select!` over a redraw tick (4 a second by default), crossterm's
//! key and resize events and the collectors' updates; it draws after every tick and every key,
//! so a key is answered at once and a busy stack never redraws more than the tick allows. The
//! terminal is restored on exit, on error and on a panic of the UI (ratatui's hook); a panic in
//! a collector is reported in the timeline and the collector restarted, the screen stays.
//! While the screen is in use, the CLI's own warnings go to a log file, not over the screen.
//!
//! `--snapshot` runs the collectors until every backend answered or failed once (or `--wait`
//! passed), prints one frame as text and exits: without a running stack every panel says what
//! it could not reach.

mod act;
pub mod convert;
mod feed;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Offset as _, Utc};
use clap::{Args, ValueEnum};
use crossterm::event::{Event, EventStream};
use dashboard::model::sources::{Reach, Source};
use dashboard::model::{CommandStatus, Model};
use dashboard::{App, Catalog, KindInfo, Update, View};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Global;
use crate::chaos::faults::{self, Kind};
use crate::observe::{ObserveError, Route};
use crate::stack::{Stack, StackFile};
use crate::{Error, Result};

/// How long leaving the dashboard waits for its scenario's cleanup (healing what it injected,
/// as `platform heal` waits for a healed container) and its load's stop.
const WIND_DOWN: Duration = crate::chaos::faults::HEAL_TIMEOUT;

/// Set to make the UI panic after its first frame (the end-to-end test of terminal restore).
const PANIC_ENV: &str = "PLATFORM_DASHBOARD_TEST_PANIC";

/// `platform dashboard` arguments.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print one frame as text to stdout and exit (for docs, bug reports and tests); works
    /// without a running stack, each panel then says what it could not reach.
    #[arg(long)]
    pub snapshot: bool,
    /// The view to start on (or to print with --snapshot).
    #[arg(long, value_enum, default_value_t = ViewArg::Overview)]
    pub view: ViewArg,
    /// --snapshot: columns of the frame [default: the terminal's, else 120].
    #[arg(long, requires = "snapshot", value_parser = clap::value_parser!(u16).range(20..=500))]
    pub width: Option<u16>,
    /// --snapshot: rows of the frame [default: the terminal's, else 36].
    #[arg(long, requires = "snapshot", value_parser = clap::value_parser!(u16).range(6..=300))]
    pub height: Option<u16>,
    /// --snapshot: the longest wait for every backend's first answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Time between redraws, 50ms to 250ms (at least 4 refreshes a second).
    #[arg(long, default_value = "250ms", value_parser = parse_refresh)]
    pub refresh: Duration,
    /// Where the CLI's warnings go while the screen is in use [default:
    /// $TMPDIR/platform-dashboard-STACK.log].
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Write frame-time statistics (JSON) to this file on exit (benchmarks use it).
    #[arg(long)]
    pub frame_stats: Option<PathBuf>,
    /// Show trace links as plain text rather than OSC 8 hyperlinks (for terminals that print
    /// the escape codes).
    #[arg(long)]
    pub no_links: bool,
}

/// The views, as `--view` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    Overview,
    Services,
    Breakers,
    Kafka,
    Traces,
    Events,
    Logs,
    Commands,
}

impl From<ViewArg> for View {
    fn from(v: ViewArg) -> View {
        match v {
            ViewArg::Overview => View::Overview,
            ViewArg::Services => View::Services,
            ViewArg::Breakers => View::Breakers,
            ViewArg::Kafka => View::Kafka,
            ViewArg::Traces => View::Traces,
            ViewArg::Events => View::Events,
            ViewArg::Logs => View::Logs,
            ViewArg::Commands => View::Commands,
        }
    }
}

fn parse_refresh(text: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if (Duration::from_millis(50)..=Duration::from_millis(250)).contains(&d) {
        Ok(d)
    } else {
        Err("the refresh must be between 50ms and 250ms (4 to 20 frames a second)".into())
    }
}

/// Where the CLI's log goes for this command line: a file while the dashboard owns the screen.
pub fn log_file(args: &DashboardArgs, stack: &str) -> Option<PathBuf> {
    if args.snapshot {
        return None;
    }
    Some(args.log_file.clone().unwrap_or_else(|| {
        let name: String = stack
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::env::temp_dir().join(format!("platform-dashboard-{name}.log"))
    }))
}

/// What the fault menu and completion offer: the fault library's kinds, targets and options.
fn catalog() -> Catalog {
    let inject_flags =
        <super::faults::InjectArgs as clap::Args>::augment_args(clap::Command::new("inject"))
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
    Catalog {
        kinds: Kind::ALL
            .iter()
            .map(|k| KindInfo {
                name: k.name().to_string(),
                summary: k.summary().to_string(),
            })
            .collect(),
        shorthands: faults::DEPENDENCIES
            .iter()
            .map(|(name, _, _)| name.to_string())
            .collect(),
        inject_flags,
        durations: ["30s", "1m", "2m", "5m", "10m"].map(String::from).to_vec(),
        scenarios: Vec::new(),
    }
}

/// The shipped scenarios that are valid for `stack`, for the `S` menu and `:scenario`.
fn scenarios(stack: &Stack) -> Vec<dashboard::ScenarioInfo> {
    let Ok(dir) = super::scenario::scenarios_dir() else {
        return Vec::new();
    };
    super::scenario::valid_in(&dir, stack)
        .into_iter()
        .map(|(file, s)| dashboard::ScenarioInfo {
            name: s.name,
            file,
            description: s.description,
        })
        .collect()
}

pub async fn run(g: &Global, args: DashboardArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let route = Route::detect().map_err(ObserveError::Setting)?;
    let (tx, updates) = mpsc::unbounded_channel();
    let (observer_tx, observer) = watch::channel(None);
    let ctx = feed::Ctx {
        stack: stack.clone(),
        tx,
        observer,
        wake: Arc::new(Notify::new()),
        cancel: CancellationToken::new(),
    };
    feed::start(&ctx, route, observer_tx);
    // CLI equivalents name the stack unless it is the default one.
    let stack_flag = (g.stack != "dev").then(|| g.stack.clone());
    let mut choices = catalog();
    choices.scenarios = scenarios(&stack);
    let mut app = App::new(Model::new(&stack.name, Utc::now()), choices, stack_flag);
    app.show(args.view.into());
    let result = if args.snapshot {
        snapshot(&mut app, updates, &args).await
    } else {
        interactive(app, updates, &ctx, &stack, &args).await
    };
    ctx.cancel.cancel();
    result
}

/// Collects until every backend answered or failed once, then prints one frame.
async fn snapshot(
    app: &mut App,
    mut updates: mpsc::UnboundedReceiver<Update>,
    args: &DashboardArgs,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + args.wait;
    let mut stats = false;
    loop {
        let known = Source::ALL
            .iter()
            .all(|s| !matches!(app.model.sources.get(*s), Reach::Unknown));
        let docker_up = matches!(app.model.sources.get(Source::Docker), Reach::Up { .. });
        if known && (stats || !docker_up) {
            break;
        }
        tokio::select! {
            u = updates.recv() => match u {
                Some(u) => {
                    stats |= matches!(u, Update::Stats(_));
                    app.apply(u);
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    app.apply(Update::Tick(Utc::now()));
    app.clock = local_offset();
    let (w, h) = if std::io::stdout().is_terminal() {
        crossterm::terminal::size().unwrap_or((120, 36))
    } else {
        (120, 36)
    };
    let text = dashboard::ui::text::render(app, args.width.unwrap_or(w), args.height.unwrap_or(h));
    crate::out!("{text}");
    Ok(())
}

/// The user's UTC offset now (the panels show local clock times).
fn local_offset() -> chrono::FixedOffset {
    chrono::Local::now().offset().fix()
}

/// Gives the terminal back: raw mode off, the main screen, and the cursor shown (ratatui's
/// `restore` leaves the cursor as the last frame left it: hidden).
fn restore_terminal() {
    ratatui::restore();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
}

/// Restores the terminal when dropped (normal exit and errors; panics go through the hook).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The interactive dashboard.
async fn interactive(
    mut app: App,
    mut updates: mpsc::UnboundedReceiver<Update>,
    ctx: &feed::Ctx,
    stack: &Stack,
    args: &DashboardArgs,
) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Output(
            "the dashboard needs a terminal; `platform dashboard --snapshot` prints one frame"
                .into(),
        ));
    }
    let (requests, inbox) = mpsc::unbounded_channel();
    let tasks = TaskTracker::new();
    let act_task = tokio::spawn(act::run(ctx.clone(), inbox, tasks.clone()));
    app.hyperlinks = !args.no_links;
    app.clock = local_offset();

    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    // ratatui's hook restores the terminal and reports the panic; keep that for the UI (the
    // main thread) only: a collector's panic is caught and reported in the timeline.
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            restore_terminal();
            restore_and_report(info);
        } else {
            tracing::error!("a dashboard task panicked: {info}");
        }
    }));
    let test_panic = std::env::var_os(PANIC_ENV).is_some();

    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(args.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut frames = FrameTimes::default();
    // The screen until the user quits; an error of the terminal ends it too, and still goes
    // through the wind-down below before it is returned.
    let ended: Result<()> = async {
        loop {
            let mut redraw = false;
            tokio::select! {
                _ = tick.tick() => {
                    app.apply(Update::Tick(Utc::now()));
                    redraw = true;
                }
                event = events.next() => match event {
                    Some(Ok(Event::Key(key))) => {
                        app.on_key(key);
                        redraw = true;
                    }
                    Some(Ok(Event::Resize(..))) => redraw = true,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                },
                update = updates.recv() => {
                    if let Some(u) = update {
                        app.apply(u);
                    }
                    // Take what else is waiting in one go; the next tick draws it.
                    while let Ok(u) = updates.try_recv() {
                        app.apply(u);
                    }
                }
            }
            for r in app.take_requests() {
                let _ = requests.send(r);
            }
            if app.should_quit() {
                break;
            }
            if redraw {
                let started = Instant::now();
                terminal.draw(|f| dashboard::ui::draw(f, &app))?;
                frames.push(started.elapsed());
                if test_panic {
                    panic!("{PANIC_ENV} is set: panicking after the first frame");
                }
            }
        }
        Ok(())
    }
    .await;
    // Leaving: cancel what the dashboard started, then wait (bounded) for a scenario to heal
    // what it injected and a load to stop. Without this wait the runtime's shutdown dropped
    // those tasks mid-cleanup and a scenario's faults stayed in place.
    ctx.cancel.cancel();
    drop(requests);
    let _ = act_task.await;
    let finished = if tasks.is_empty() {
        tasks.close();
        true
    } else {
        app.apply(Update::Scenario(Some(format!(
            "leaving: healing what the dashboard injected and stopping its load (at most {})…",
            humantime::format_duration(WIND_DOWN)
        ))));
        let _ = terminal.draw(|f| dashboard::ui::draw(f, &app));
        let wind_down = act::wind_down(&tasks, WIND_DOWN);
        tokio::pin!(wind_down);
        // Keep the screen current (the scenario's cleanup lines) while waiting.
        loop {
            tokio::select! {
                finished = &mut wind_down => break finished,
                _ = tick.tick() => {
                    while let Ok(u) = updates.try_recv() {
                        app.apply(u);
                    }
                    app.apply(Update::Tick(Utc::now()));
                    let _ = terminal.draw(|f| dashboard::ui::draw(f, &app));
                }
            }
        }
    };
    drop(_restore);
    if !finished {
        eprintln!(
            "warning: the dashboard's scenario or load was still cleaning up after {}; \
             `platform faults` lists what is left and `platform heal` reverts it",
            humantime::format_duration(WIND_DOWN)
        );
    }
    ended?;
    print_command_log(&app, stack);
    if let Some(path) = &args.frame_stats {
        frames.write(path, args.refresh)?;
    }
    Ok(())
}

/// After leaving the screen: the commands the dashboard ran, to copy.
fn print_command_log(app: &App, stack: &Stack) {
    if app.model.commands.is_empty() {
        return;
    }
    crate::outln!(
        "What the dashboard did on stack {}, as commands (the same from a shell):",
        stack.name
    );
    for c in &app.model.commands {
        let outcome = match &c.status {
            CommandStatus::Running => "still running when the dashboard left".to_string(),
            CommandStatus::Done(d) => d.clone(),
            CommandStatus::Failed(e) => format!("failed: {e}"),
        };
        if outcome.is_empty() {
            crate::outln!("  {}", c.cli);
        } else {
            crate::outln!("  {}  # {outcome}", c.cli);
        }
    }
}

/// How long each frame took to draw.
#[derive(Debug, Default)]
struct FrameTimes {
    micros: Vec<u64>,
}

/// What `--frame-stats` writes.
#[derive(Debug, Serialize)]
struct FrameStats {
    frames: usize,
    refresh_ms: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

impl FrameTimes {
    fn push(&mut self, d: Duration) {
        self.micros
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    fn stats(&self, refresh: Duration) -> FrameStats {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let pick = |q: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1000.0
        };
        FrameStats {
            frames: sorted.len(),
            refresh_ms: refresh.as_millis() as u64,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: sorted.last().map_or(0.0, |m| *m as f64 / 1000.0),
            mean_ms: if sorted.is_empty() {
                0.0
            } else {
                sorted.iter().sum::<u64>() as f64 / sorted.len() as f64 / 1000.0
            },
        }
    }

    fn write(&self, path: &Path, refresh: Duration) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.stats(refresh))?;
        std::fs::write(path, text).map_err(|e| {
            Error::Output(format!(
                "cannot write frame stats to {}: {e}",
                path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles of frame times pick the nearest rank.
    #[test]
    fn frame_percentiles() {
        let mut f = FrameTimes::default();
        for ms in 1..=100 {
            f.push(Duration::from_millis(ms));
        }
        let s = f.stats(Duration::from_millis(250));
        assert_eq!(s.frames, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(FrameTimes::default().stats(Duration::ZERO).p99_ms, 0.0);
    }

    /// The refresh is bounded to 4..20 frames a second.
    #[test]
    fn refresh_bounds() {
        assert!(parse_refresh("250ms").is_ok());
        assert!(parse_refresh("1s").unwrap_err().contains("between"));
        assert!(parse_refresh("10ms").is_err());
    }

    /// The catalog offers every fault kind and the options `platform inject` takes.
    #[test]
    fn catalog_from_the_fault_library() {
        let c = catalog();
        assert_eq!(c.kinds.len(), Kind::ALL.len());
        assert!(c.inject_flags.contains(&"--duration".to_string()));
        assert!(c.inject_flags.contains(&"--instance".to_string()));
        assert!(c.shorthands.contains(&"broker".to_string()));
    }
}
