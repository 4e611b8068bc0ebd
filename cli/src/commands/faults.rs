//! `platform inject`, `platform heal` and `platform faults`: thin commands over
//! [`crate::chaos::faults`] (which the scenarios and the dashboard call too), plus the hidden
//! `platform fault-supervisor` that reverts faults at their end.

use std::path::PathBuf;

use clap::Args;

use super::Global;
use crate::chaos::faults::{self, Ctx, FaultRecord, FaultSpec, Heal, HealReport, Selection};
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Result, output};

const KINDS_HELP: &str = "Kinds:
  container:   kill [--signal KILL]   stop [--grace 10s]   pause   restart   disconnect
  network:     latency [--delay 200ms --jitter 0ms]   loss --percent P   bandwidth --rate 1mbit
               corrupt --percent P   duplicate --percent P
  application: app-latency [--min 500ms --max 1s]   app-error [--status 500]   kill-app
               (app kinds also take --share PERCENT and --route /path, repeatable)
Targets: a service of the stack, or broker, database, identity (the services the stack's
KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and ISSUER_URL point at).
Every fault is reverted at the end of --duration by a per-stack supervisor process, even if
this command is killed; `platform heal` reverts earlier, `platform faults` lists them.";

/// `platform inject` arguments.
#[derive(Debug, Args)]
#[command(after_help = KINDS_HELP)]
pub struct InjectArgs {
    /// The kind of fault (see below).
    pub kind: String,
    /// A service of the stack, or broker, database, identity.
    pub target: String,
    /// Only instance N of the service.
    #[arg(long, conflicts_with_all = ["all", "random"])]
    pub instance: Option<u32>,
    /// Every running instance.
    #[arg(long, conflicts_with = "random")]
    pub all: bool,
    /// One running instance, chosen at random.
    #[arg(long)]
    pub random: bool,
    /// How long the fault lasts (1s..=24h).
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// kill: the signal (KILL, TERM, INT, QUIT, HUP, USR1, USR2, STOP, CONT, ABRT).
    #[arg(long)]
    pub signal: Option<String>,
    /// stop: time between SIGTERM and SIGKILL.
    #[arg(long)]
    pub grace: Option<String>,
    /// latency: the added delay.
    #[arg(long)]
    pub delay: Option<String>,
    /// latency: variation of the delay either way.
    #[arg(long)]
    pub jitter: Option<String>,
    /// loss, corrupt, duplicate: percent of packets.
    #[arg(long)]
    pub percent: Option<String>,
    /// bandwidth: sending rate (bit, kbit, mbit, gbit, bps, kbps, mbps).
    #[arg(long)]
    pub rate: Option<String>,
    /// app-latency: the shortest added latency.
    #[arg(long)]
    pub min: Option<String>,
    /// app-latency: the longest added latency.
    #[arg(long)]
    pub max: Option<String>,
    /// app-error: the HTTP status answered (400..=599).
    #[arg(long)]
    pub status: Option<String>,
    /// app-latency, app-error: percent of requests hit.
    #[arg(long)]
    pub share: Option<String>,
    /// app-latency, app-error: only paths under this prefix (repeatable).
    #[arg(long)]
    pub route: Vec<String>,
}

impl InjectArgs {
    /// The validated spec (the same checks as scenario files and the dashboard).
    pub fn spec(&self) -> Result<FaultSpec, faults::FaultError> {
        let selection = Selection::from_flags(self.instance, self.all, self.random)?;
        let mut pairs: Vec<(&str, &str)> = [
            ("signal", &self.signal),
            ("grace", &self.grace),
            ("delay", &self.delay),
            ("jitter", &self.jitter),
            ("percent", &self.percent),
            ("rate", &self.rate),
            ("min", &self.min),
            ("max", &self.max),
            ("status", &self.status),
            ("share", &self.share),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
        pairs.extend(self.route.iter().map(|r| ("route", r.as_str())));
        Ok(FaultSpec::parse(
            &self.kind,
            &self.target,
            selection,
            Some(&self.duration),
            &pairs,
        )?)
    }
}

/// `platform heal` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
pub struct HealArgs {
    /// The fault to revert (from `platform inject` or `platform faults`).
    pub id: Option<String>,
    /// Revert every active fault of the stack.
    #[arg(long)]
    pub all: bool,
}

/// `platform fault-supervisor` arguments (started by the fault commands, not by users).
#[derive(Debug, Args)]
pub struct SupervisorArgs {
    /// The stack's state directory.
    #[arg(long)]
    pub store: PathBuf,
}

async fn context(g: &Global) -> Result<Ctx> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let rt = Runtime::connect().await?;
    Ok(Ctx::new(rt, stack)?)
}

pub async fn inject(g: &Global, args: InjectArgs) -> Result<()> {
    // Bad input exits 2 before Docker is even asked.
    let spec = args.spec()?;
    let stack = StackFile::resolve(&g.stack)?.load()?;
    faults::resolve_target(&stack, &spec.target)?;
    let ctx = Ctx::new(Runtime::connect().await?, stack)?;
    let records = faults::inject(&ctx, &spec).await?;
    if g.json {
        return output::json(&records);
    }
    for r in &records {
        crate::outln!("{}", describe(r, &spec));
    }
    Ok(())
}

fn describe(r: &FaultRecord, spec: &FaultSpec) -> String {
    let options = spec.option_words().join(" ");
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(" ({options})")
    };
    if r.kind.one_shot() {
        format!("{} {}{options}: done", r.kind, r.container)
    } else {
        format!(
            "{} {} {}{options} until {} ({} left); `platform heal {}` reverts it now",
            r.id,
            r.kind,
            r.container,
            r.ends.format("%H:%M:%S"),
            left(r),
            r.id
        )
    }
}

fn left(r: &FaultRecord) -> String {
    let secs = r.remaining_ms.unwrap_or(0).div_ceil(1000);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

pub async fn heal(g: &Global, args: HealArgs) -> Result<()> {
    let ctx = context(g).await?;
    let which = match args.id {
        Some(id) => Heal::Id(id),
        None => Heal::All,
    };
    let reports = faults::heal(&ctx, which).await?;
    let failed = reports.iter().filter(|r| !r.healed).count();
    if g.json {
        output::json(&reports)?;
    } else if reports.is_empty() {
        crate::outln!("no active faults in stack {}", ctx.stack().name);
    } else {
        for r in &reports {
            crate::outln!("{}", heal_line(r));
        }
    }
    if failed > 0 {
        if g.json {
            return Err(crate::Error::Reported);
        }
        return Err(crate::Error::Output(format!(
            "{failed} of {} faults could not be healed (see above); the supervisor keeps retrying them",
            reports.len()
        )));
    }
    Ok(())
}

fn heal_line(r: &HealReport) -> String {
    if r.healed {
        format!(
            "healed {} {} on {} in {:.1}s: {}",
            r.id, r.kind, r.container, r.seconds, r.detail
        )
    } else {
        format!(
            "NOT healed {} {} on {}: {}",
            r.id, r.kind, r.container, r.detail
        )
    }
}

pub async fn list(g: &Global) -> Result<()> {
    let ctx = context(g).await?;
    let records = faults::list(&ctx).await?;
    if g.json {
        return output::json(&records);
    }
    if records.is_empty() {
        crate::outln!("no active faults in stack {}", ctx.stack().name);
        return Ok(());
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "KIND".into(),
        "TARGET".into(),
        "CONTAINER".into(),
        "LEFT".into(),
        "ENDS".into(),
        "STOPPED".into(),
        "NOTE".into(),
    ]];
    for r in &records {
        rows.push(vec![
            r.id.clone(),
            r.kind.to_string(),
            r.target.clone(),
            r.container.clone(),
            left(r),
            r.ends
                .with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string(),
            if r.intended_stop {
                "yes".into()
            } else {
                "-".into()
            },
            match (&r.last_error, r.remaining_ms) {
                (Some(e), _) => format!("revert failed {}x: {e}", r.attempts),
                (None, Some(0)) => "reverting".into(),
                _ => String::new(),
            },
        ]);
    }
    crate::out!("{}", output::table(&rows));
    Ok(())
}

pub async fn supervise(args: SupervisorArgs) -> Result<()> {
    Ok(faults::supervisor::run(&args.store).await?)
}

/// `platform fault-agent`: runs until SIGTERM, its lifetime, or the end of the namespace.
pub async fn agent(args: faults::agent::AgentArgs) -> Result<()> {
    faults::agent::main(args)
        .await
        .map(|_| ())
        .map_err(|e| crate::Error::Output(format!("fault agent: {e}")))
}
