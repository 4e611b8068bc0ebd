//! `platform load [--rate R/s] [--duration D] [--mix orders=80,products=20] [--json]`: open-loop
//! constant-rate load through the published gateway (see [`crate::chaos::load`] for how the
//! engine schedules, measures and bounds it). Progress goes to stderr once a second; the report
//! to stdout as text or, with `--json`, as one JSON document. Ctrl-C stops the schedule early
//! and still reports what was measured.

use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use url::Url;

use super::Global;
use crate::chaos::load::{self, Fixture, FixtureOptions, LoadConfig, LoadHandle, Mix, User};
use crate::observe::Observer;
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Result, output};

/// `platform load` arguments.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Requests per second (`200`, `200/s`, `6000/min`), at most 50000/s.
    #[arg(long, default_value = "50", value_parser = load::parse_rate)]
    pub rate: f64,
    /// How long to send, at most 1h (the total is also capped at 10 million requests).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Shares of request kinds: orders (POST /api/order), products (GET /api/product/ID), stock
    /// (GET /api/inventory/SKU), order-reads (GET /api/order), health (GET /health/live).
    #[arg(long, default_value = load::DEFAULT_MIX)]
    pub mix: Mix,
    /// The gateway's URL [default: the api-gateway's published port on localhost]; it must be a
    /// loopback address or one of the stack's containers.
    #[arg(long, env = "PLATFORM_GATEWAY_URL")]
    pub gateway: Option<Url>,
    /// Users who send the requests, `name:password,...` [default: the dev realm's alice, bob,
    /// carol and admin].
    #[arg(long, env = "PLATFORM_LOAD_USERS")]
    pub users: Option<String>,
    /// Products the run creates (with stock) and spreads orders and reads over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub products: u16,
    /// Most requests outstanding at once; a request due while this many are out is counted as
    /// dropped (a failure), never delayed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight: u32,
    /// Most connections open at once (wrk2's `-c`); a request due while every one is busy waits
    /// for one, and the wait counts in its latency.
    #[arg(long, default_value_t = load::DEFAULT_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Longest wait for one answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl LoadArgs {
    /// The engine's configuration.
    pub fn config(&self) -> LoadConfig {
        let mut c = LoadConfig::new(self.rate, self.duration, self.mix.clone());
        c.max_in_flight = self.max_in_flight as usize;
        c.connections = self.connections as usize;
        c.timeout = self.timeout;
        c
    }
}

pub async fn run(g: &Global, args: LoadArgs) -> Result<()> {
    let config = args.config();
    config.validate()?;
    let users = match &args.users {
        Some(list) => User::parse_list(list).map_err(load::LoadError::Config)?,
        None => User::dev_realm(),
    };
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let rt = Runtime::connect().await?;
    let obs = Observer::new(rt, stack).await?;
    obs.require_running()?;
    let opts = FixtureOptions {
        products: args.products as usize,
        stock: None,
        users,
        gateway: args.gateway.clone(),
    };
    let fixture = Fixture::prepare(&obs, &config, &opts).await?;
    if !g.json {
        eprintln!(
            "load: {} req/s for {} to {} ({}); Ctrl-C stops early",
            args.rate,
            humantime::format_duration(args.duration),
            fixture.gateway,
            config.mix
        );
    }
    let handle = load::start(config, fixture)?;
    let interrupted = watch(&handle, !g.json).await;
    let report = handle.finish(interrupted).await;
    if g.json {
        output::json(&report)
    } else {
        crate::out!("{}", report.render());
        Ok(())
    }
}

/// Prints progress until the run ends or Ctrl-C; returns whether it was interrupted.
async fn watch(handle: &LoadHandle, show: bool) -> bool {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    let interrupted = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break true,
            () = handle.done() => break false,
            _ = tick.tick() => {
                n += 1;
                if show && (tty || n.is_multiple_of(5)) {
                    let line = handle.progress().line();
                    if tty {
                        eprint!("\r{line}");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
        }
    };
    if show && tty {
        eprintln!();
    }
    if interrupted && show {
        eprintln!("load: interrupted; waiting for the requests still out");
    }
    interrupted
}
