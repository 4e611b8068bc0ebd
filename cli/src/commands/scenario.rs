//! `platform scenario run FILE... [--junit FILE] [--json]` and `platform scenario ls`: resilience
//! scenarios against the running stack (see [`crate::chaos::scenario`] for the file format and
//! the runner).
//!
//! `run` validates every file first: one bad file (exit 2) means nothing runs and nothing is
//! injected. Then each scenario runs in turn with a live timeline (stdout; stderr with
//! `--json`), a summary with pass or fail and the measured figure of every check, and with
//! `--junit` a JUnit XML file (written on failure too). Exit 0 when all passed, 1 when any
//! failed, 130 after Ctrl-C, which stops the steps and heals every fault the scenario injected
//! before exiting.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::Global;
use crate::chaos::load::fixture::check_target;
use crate::chaos::scenario::{self, ScenarioError, ScenarioReport, report};
use crate::observe::Observer;
use crate::paths::Workspace;
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Error, Result, output};

/// `platform scenario` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Run scenario files against the running stack.
    Run(RunArgs),
    /// List the scenarios in stacks/scenarios/ (each file is validated).
    Ls,
    /// Validate scenario files without running anything.
    Validate {
        /// Scenario files [default: every file in stacks/scenarios/].
        files: Vec<PathBuf>,
    },
}

/// `platform scenario run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files (TOML), run in the order given.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file (written on failure too).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// The gateway's URL [default: the api-gateway's published port on localhost].
    #[arg(long, env = "PLATFORM_GATEWAY_URL")]
    pub gateway: Option<Url>,
}

/// What `scenario run --json` prints.
#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    pub stack: String,
    pub passed: bool,
    pub interrupted: bool,
    pub scenarios: Vec<ScenarioReport>,
}

pub async fn run(g: &Global, cmd: ScenarioCommand) -> Result<()> {
    match cmd {
        ScenarioCommand::Run(args) => run_files(g, args).await,
        ScenarioCommand::Ls => ls(g),
        ScenarioCommand::Validate { files } => validate(g, files),
    }
}

/// The shipped scenarios' directory (`stacks/scenarios` of the workspace).
pub fn scenarios_dir() -> Result<PathBuf> {
    let ws = Workspace::locate().map_err(|searched| crate::stack::StackError::NoWorkspace {
        searched: searched.iter().map(|p| p.display().to_string()).collect(),
    })?;
    Ok(ws.stacks_dir().join("scenarios"))
}

fn validate(g: &Global, files: Vec<PathBuf>) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let files = if files.is_empty() {
        scenario::files_in(&scenarios_dir()?)
    } else {
        files
    };
    let scenarios = scenario::load_all(&files, &stack)?;
    if g.json {
        return output::json(&scenarios);
    }
    for s in &scenarios {
        crate::outln!("{}: ok ({}, {} steps)", s.file, s.name, s.steps.len());
    }
    Ok(())
}

/// The valid scenarios of `dir` for `stack`, each with the file as `scenario run` takes it
/// (invalid files are left out: `scenario ls` and `validate` name their errors).
pub fn valid_in(
    dir: &std::path::Path,
    stack: &crate::stack::Stack,
) -> Vec<(String, scenario::Scenario)> {
    scenario::files_in(dir)
        .iter()
        .filter_map(|path| {
            let display = scenario::display(path);
            let text = std::fs::read_to_string(path).ok()?;
            let s = scenario::check_text(&text, &display, stack).scenario?;
            Some((display, s))
        })
        .collect()
}

fn ls(g: &Global) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let dir = scenarios_dir()?;
    let files = scenario::files_in(&dir);
    let mut rows = vec![vec![
        "NAME".to_string(),
        "STEPS".to_string(),
        "FILE".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    let mut listed = Vec::new();
    let mut diagnostics = Vec::new();
    for path in &files {
        let display = scenario::display(path);
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        let parsed = scenario::check_text(&text, &display, &stack);
        match parsed.scenario {
            Some(s) => {
                rows.push(vec![
                    s.name.clone(),
                    s.steps.len().to_string(),
                    display,
                    s.description.clone(),
                ]);
                listed.push(s);
            }
            None => {
                rows.push(vec![
                    "(invalid)".to_string(),
                    "-".to_string(),
                    display,
                    "see the errors below".to_string(),
                ]);
                diagnostics.extend(parsed.diagnostics);
            }
        }
    }
    if g.json {
        output::json(&listed)?;
    } else {
        crate::out!("{}", output::table(&rows));
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(ScenarioError::Invalid { diagnostics }.into())
    }
}

async fn run_files(g: &Global, args: RunArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let stack_name = stack.name.clone();
    let scenarios = scenario::load_all(&args.files, &stack)?;
    let rt = Runtime::connect().await?;
    let obs = Observer::new(rt, stack).await?;
    obs.require_running()?;
    let gateway = match &args.gateway {
        Some(u) => u.clone(),
        None => crate::commands::smoke::gateway_url(&obs)?,
    };
    check_target(&gateway, &obs).await?;

    let interrupt = CancellationToken::new();
    let watcher = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.cancel();
                // Keep the handler installed: further Ctrl-C are ignored until every fault is
                // healed (the process exits when the runner is done).
                loop {
                    if tokio::signal::ctrl_c().await.is_err() {
                        return;
                    }
                    eprintln!(
                        "platform scenario: still healing; the faults end by themselves at their duration if this is killed"
                    );
                }
            }
        })
    };
    let json = g.json;
    let print = move |e: &report::Event| {
        let line = format!("[{:>7.2}s] {}", e.at_s, e.text);
        if json {
            eprintln!("{line}");
        } else {
            crate::outln!("{line}");
        }
    };
    let mut reports = Vec::new();
    for s in &scenarios {
        if interrupt.is_cancelled() {
            break;
        }
        let mut obs = obs.clone();
        obs.refresh().await?;
        let report = scenario::run::run(s, obs, gateway.clone(), interrupt.clone(), &print).await;
        if !json {
            crate::out!("{}", report.summary());
        }
        reports.push(report);
    }
    watcher.abort();
    let interrupted = interrupt.is_cancelled();
    // A scenario this machine cannot run (a fault kind it lacks) is reported as skipped, with
    // why, and does not fail the run.
    let passed = !interrupted
        && reports.len() == scenarios.len()
        && reports.iter().all(|r| r.passed || r.skipped.is_some());
    if let Some(path) = &args.junit {
        let xml = report::junit(&reports).map_err(|message| ScenarioError::Write {
            what: "the JUnit report",
            path: path.clone(),
            message,
        })?;
        std::fs::write(path, xml).map_err(|e| ScenarioError::Write {
            what: "the JUnit report",
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    if json {
        output::json(&RunReport {
            stack: stack_name,
            passed,
            interrupted,
            scenarios: reports,
        })?;
    } else {
        let skipped: Vec<&ScenarioReport> =
            reports.iter().filter(|r| r.skipped.is_some()).collect();
        let failed: Vec<&ScenarioReport> = reports
            .iter()
            .filter(|r| !r.passed && r.skipped.is_none())
            .collect();
        crate::outln!(
            "{} of {} scenarios passed{}",
            reports.iter().filter(|r| r.passed).count(),
            scenarios.len(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", {} skipped", skipped.len())
            }
        );
        for r in skipped {
            crate::outln!(
                "  {}: SKIPPED, {}",
                r.name,
                r.skipped.as_deref().unwrap_or_default()
            );
        }
        for r in failed {
            for f in r.failures() {
                crate::outln!("  {}: {f}", r.name);
            }
        }
    }
    if interrupted {
        Err(Error::Interrupted)
    } else if passed {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}
