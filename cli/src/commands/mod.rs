//! The command line: clap definitions and one module per command group. Read commands accept
//! the global `--json`; every command has `--help`. Exit codes: 0 ok, 1 failure, 2 usage.

pub mod build;
mod completions;
pub mod dashboard;
pub mod down;
pub mod faults;
pub mod health;
pub mod load;
pub mod logs;
pub mod registry;
pub mod render;
pub mod scale;
pub mod scenario;
pub mod smoke;
pub mod stack;
pub mod status;
pub mod token;
pub mod trace;
pub mod up;
mod version;

use clap::{Args, Parser, Subcommand};

use crate::Result;

/// The platform CLI: brings the microservice system up on Docker, offline, and looks at it.
#[derive(Debug, Parser)]
#[command(name = "platform", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Print one JSON document instead of text (read commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// Stack to use: a name from stacks/ (dev, full) or a path to a stack file.
    #[arg(long, global = true, env = "PLATFORM_STACK", default_value = "dev")]
    pub stack: String,
    /// Show what the CLI does (-v), or everything (-vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the CLI's version, the git commit it was built from, and the Docker engine's version.
    Version,
    /// Check or show a stack file without starting anything.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Start the stack (or SERVICEs and their dependencies) and wait until it is ready.
    Up(up::UpArgs),
    /// Stop and remove the stack's containers and network (volumes with --volumes).
    Down(down::DownArgs),
    /// Build the stack's images locally (never pulls): our binaries, the broker (nisshi), MariaDB.
    Build(build::BuildArgs),
    /// List the stack's images: current, stale (inputs changed) or missing.
    Images,
    /// Show the stack's containers (state, health, ports) joined to the registry, with drift.
    #[command(visible_alias = "ps")]
    Status,
    /// Show the output of every instance of a service, merged in time order.
    Logs(logs::LogsArgs),
    /// Run N instances of a stateless service; waits until new ones are healthy and registered.
    Scale(scale::ScaleArgs),
    /// Print an access token from the stack's identity provider (for curl).
    Token(token::TokenArgs),
    /// Check the running stack end to end: token, product, stock, order, notification, trace.
    Smoke(smoke::SmokeArgs),
    /// Send open-loop constant-rate load through the gateway and report latency and answers.
    Load(load::LoadArgs),
    /// Run resilience scenarios (stacks/scenarios/*.toml) against the running stack.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// Read a running discovery-server (Eureka REST API).
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Break the running stack on purpose: a fault on a service's containers, network or code,
    /// reverted automatically after --duration.
    Inject(Box<faults::InjectArgs>),
    /// Watch and steer the running stack live: services and registry, breakers, Kafka lag,
    /// traces, faults, events and logs; scale, inject and heal at a keystroke (? for help).
    Dashboard(dashboard::DashboardArgs),
    /// Show one trace from the stack's collector as a waterfall, with its Zipkin link.
    Trace(trace::TraceArgs),
    /// Revert faults now and check that everything is healthy again.
    Heal(faults::HealArgs),
    /// List the active faults with the time they have left.
    Faults,
    /// Reverts a stack's faults at their end (started by the fault commands).
    #[command(name = "fault-supervisor", hide = true)]
    FaultSupervisor(faults::SupervisorArgs),
    /// Delays, corrupts or duplicates packets on an NFQUEUE in a container's network namespace
    /// (started by `inject` where the kernel has no netem).
    #[command(name = "fault-agent", hide = true)]
    FaultAgent(crate::chaos::faults::agent::AgentArgs),
    /// Render the stack for another engine: `render kubernetes` writes manifests a cluster
    /// accepts as they are.
    #[command(subcommand)]
    Render(render::RenderCommand),
    /// Print a shell completion script, e.g. `platform completions bash > /etc/bash_completion.d/platform`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// Where the CLI's own log goes: a file while the dashboard owns the screen, else stderr.
    pub fn log_file(&self) -> Option<std::path::PathBuf> {
        match &self.command {
            Command::Dashboard(args) => {
                let stack = std::path::Path::new(&self.global.stack)
                    .file_stem()
                    .map_or_else(|| self.global.stack.clone(), |s| s.to_string_lossy().into());
                dashboard::log_file(args, &stack)
            }
            _ => None,
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Version => version::run(g).await,
        Command::Stack(cmd) => stack::run(g, cmd),
        Command::Up(args) => up::run(g, args).await,
        Command::Down(args) => down::run(g, args).await,
        Command::Build(args) => build::build(g, args).await,
        Command::Images => build::images(g).await,
        Command::Status => status::run(g).await,
        Command::Logs(args) => logs::run(g, args).await,
        Command::Scale(args) => scale::run(g, args).await,
        Command::Token(args) => token::run(g, args).await,
        Command::Smoke(args) => smoke::run(g, args).await,
        Command::Load(args) => load::run(g, args).await,
        Command::Scenario(cmd) => scenario::run(g, cmd).await,
        Command::Registry(cmd) => registry::run(g, cmd).await,
        Command::Inject(args) => faults::inject(g, *args).await,
        Command::Heal(args) => faults::heal(g, args).await,
        Command::Dashboard(args) => dashboard::run(g, args).await,
        Command::Trace(args) => trace::run(g, args).await,
        Command::Faults => faults::list(g).await,
        Command::FaultSupervisor(args) => faults::supervise(args).await,
        Command::FaultAgent(args) => faults::agent(args).await,
        Command::Render(cmd) => render::run(g, cmd),
        Command::Completions { shell } => completions::run(shell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The clap definition is internally consistent (no clashing flags or names).
    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    /// `--json` and `--stack` are accepted after the subcommand too.
    #[test]
    fn global_flags_anywhere() {
        let cli = Cli::try_parse_from(["platform", "stack", "show", "--json", "--stack", "full"])
            .unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.stack, "full");
    }

    /// Unknown commands are usage errors, which clap exits with code 2.
    #[test]
    fn usage_errors_exit_2() {
        let err = Cli::try_parse_from(["platform", "frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
