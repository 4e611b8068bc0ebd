//! `platform build [SERVICE...]` and `platform images`: the stack's local images, built with a
//! live progress line per image, and their state (current, stale, missing).

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::Global;
use crate::paths::Workspace;
use crate::runtime::Runtime;
use crate::runtime::build::{Builder, ImageState, Progress};
use crate::stack::{ImageSource, Recipe, Stack, StackError, StackFile};
use crate::{Result, output};

/// `platform build` arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Services whose images to build (default: every service the stack builds locally).
    pub services: Vec<String>,
    /// Image the existing release binaries; do not run `cargo build --release` first.
    #[arg(long)]
    pub no_cargo: bool,
    /// Rebuild even when an image from the same inputs exists.
    #[arg(long)]
    pub force: bool,
}

/// The recipes of `services` (all of the stack's when empty), deduplicated and sorted.
pub fn recipes_for(stack: &Stack, services: &[String]) -> Result<Vec<Recipe>> {
    let mut out = BTreeSet::new();
    let names: Vec<String> = if services.is_empty() {
        stack.services.keys().cloned().collect()
    } else {
        services.to_vec()
    };
    for name in &names {
        let svc = stack.service(name)?;
        match &svc.source {
            ImageSource::Build(r) => {
                out.insert(r.clone());
            }
            ImageSource::Image(image) if !services.is_empty() => {
                eprintln!("{name}: uses the prebuilt image {image}; nothing to build");
            }
            ImageSource::Image(_) => {}
        }
    }
    Ok(out.into_iter().collect())
}

fn workspace() -> Result<Workspace> {
    Workspace::locate().map_err(|searched| {
        StackError::NoWorkspace {
            searched: searched.iter().map(|p| p.display().to_string()).collect(),
        }
        .into()
    })
}

/// A spinner line per image; tool output is printed above it when verbose. Without a
/// terminal (CI logs) the spinner is hidden, so each new phase is printed as a plain line.
pub(crate) struct BarProgress {
    bar: ProgressBar,
    verbose: bool,
    /// The phase (status text before its first `:`) last printed without a terminal, so a
    /// log gets one line per phase rather than one per package.
    last_phase: std::sync::Mutex<String>,
}

impl BarProgress {
    /// Reports into `bar`; `verbose` also prints tool output.
    pub(crate) fn new(bar: ProgressBar, verbose: bool) -> Self {
        Self {
            bar,
            verbose,
            last_phase: std::sync::Mutex::new(String::new()),
        }
    }
}

impl Progress for BarProgress {
    fn status(&self, message: &str) {
        self.bar.set_message(message.to_string());
        if self.bar.is_hidden() {
            let phase = message.split(':').next().unwrap_or(message).to_string();
            if let Ok(mut last) = self.last_phase.lock()
                && *last != phase
            {
                eprintln!("{}: {message}", self.bar.prefix());
                *last = phase;
            }
        }
    }
    fn output(&self, line: &str) {
        if !self.verbose {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("  {line}");
        } else {
            self.bar.println(format!("  {line}"));
        }
    }
}

pub async fn build(g: &Global, args: BuildArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let recipes = recipes_for(&stack, &args.services)?;
    let rt = Runtime::connect().await?;
    let mut builder = Builder::new(&rt, workspace()?);
    builder.cargo = !args.no_cargo;
    let style = ProgressStyle::with_template("{spinner} {prefix:<20} {wide_msg} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut results = Vec::new();
    for recipe in &recipes {
        let bar = ProgressBar::new_spinner()
            .with_style(style.clone())
            .with_prefix(recipe.image_name().to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        let progress = BarProgress::new(bar.clone(), g.verbose > 0);
        match builder.build(recipe, args.force, &progress).await {
            Ok(built) => {
                let what = if built.built { "built" } else { "up to date" };
                bar.finish_and_clear();
                if !g.json {
                    crate::outln!(
                        "{:<20} {what:<10} {} ({:.1}s)",
                        built.name,
                        built.tag,
                        built.seconds
                    );
                }
                results.push(built);
            }
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.into());
            }
        }
    }
    if g.json {
        output::json(&results)?;
    }
    Ok(())
}

pub async fn images(g: &Global) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let recipes = recipes_for(&stack, &[])?;
    let rt = Runtime::connect().await?;
    let builder = Builder::new(&rt, workspace()?);
    let mut statuses = Vec::new();
    for recipe in &recipes {
        statuses.push(builder.status(recipe).await?);
    }
    if g.json {
        return output::json(&statuses);
    }
    let mut rows = vec![vec![
        "IMAGE".to_string(),
        "STATE".to_string(),
        "TAG".to_string(),
        "SIZE".to_string(),
        "CREATED".to_string(),
    ]];
    for s in &statuses {
        let current = s
            .existing
            .iter()
            .find(|i| s.wanted.as_ref().is_some_and(|w| i.tags.contains(w)))
            .or(s.existing.first());
        let state = match s.state {
            ImageState::Current => "current",
            ImageState::Stale => "stale",
            ImageState::Missing => "missing",
            ImageState::NoInputs => "no inputs",
        };
        rows.push(vec![
            s.name.clone(),
            state.to_string(),
            match (s.state, &s.wanted, current) {
                (ImageState::Current, Some(w), _) => w.clone(),
                (_, _, Some(i)) => i.tags.first().cloned().unwrap_or_else(|| i.id.clone()),
                (_, Some(w), None) => format!("(would be {w})"),
                (_, None, None) => s.reason.clone().unwrap_or_default(),
            },
            current
                .map(|i| format!("{:.1} MB", i.size_bytes as f64 / 1e6))
                .unwrap_or_else(|| "-".into()),
            current
                .and_then(|i| chrono::DateTime::from_timestamp(i.created, 0))
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    crate::out!("{}", output::table(&rows));
    if statuses.iter().any(|s| s.state != ImageState::Current) {
        crate::outln!("\n`platform build` builds what is stale or missing.");
    }
    Ok(())
}
