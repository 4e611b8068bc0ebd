//! The discovery-server's configuration: the kit's common options plus the
//! registry's own knobs (leases, eviction, self-preservation, delta and
//! watch), each from a flag or an environment variable, with its default
//! shown in `--help`.

use std::time::Duration;

use clap::{Args, Parser};
use kit::config::{CommonArgs, HasCommon, ServiceSpec, parse_duration};

/// What the discovery-server is. It does not register with itself.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "discovery-server",
    default_port: 8761,
    version: env!("CARGO_PKG_VERSION"),
    registers: false,
};

/// Everything the discovery-server is configured with.
#[derive(Debug, Clone, Parser)]
#[command(about)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    /// Logs only, no trace export: every instance's heartbeats and watch
    /// polls, every few seconds, would bury the traces of real requests.
    fn telemetry(&self) -> kit::telemetry::Settings {
        self.common.log_format.into()
    }
}

/// The registry's own options.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// How often the evictor looks for expired leases (it also wakes at the earliest lease expiry, so an instance is evicted as soon as its lease runs out)
    #[arg(long, env = "EVICTION_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub eviction_interval: Duration,

    /// Stop evicting while renewals fall below --renewal-percent-threshold of the expected rate (Eureka's self-preservation)
    #[arg(long, env = "SELF_PRESERVATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub self_preservation: bool,

    /// Share of the expected renewals (0 to 1) below which the registry enters self-preservation
    #[arg(long, env = "RENEWAL_PERCENT_THRESHOLD", default_value_t = 0.85, value_parser = share)]
    pub renewal_percent_threshold: f64,

    /// Window over which renewals are counted and compared with the expected rate
    #[arg(long, env = "RENEWAL_WINDOW", default_value = "60s", value_parser = positive_duration)]
    pub renewal_window: Duration,

    /// A registry with fewer instances than this never enters self-preservation (with two instances, one dead instance is half of all renewals)
    #[arg(long, env = "SELF_PRESERVATION_MIN_INSTANCES", default_value_t = 5)]
    pub self_preservation_min_instances: usize,

    /// How long changes stay in the recently-changed queue that `GET /eureka/apps/delta` answers from (Eureka's retentionTimeInMSInDeltaQueue)
    #[arg(long, env = "DELTA_RETENTION", default_value = "3m", value_parser = positive_duration)]
    pub delta_retention: Duration,

    /// Most changes kept for the watch endpoint and deltas; a watcher further behind gets the whole registry again
    #[arg(long, env = "CHANGE_LOG_CAPACITY", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub change_log_capacity: u64,

    /// Longest a watch long-poll may wait (`timeoutSecs` above this is cut down)
    #[arg(long, env = "MAX_WATCH_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub max_watch_timeout: Duration,

    /// Most instances the registry holds; registrations beyond it are refused with 503, so one runaway client cannot exhaust memory
    #[arg(long, env = "MAX_INSTANCES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_instances: u64,
}

impl Default for RegistryArgs {
    fn default() -> Self {
        RegistryArgs {
            eviction_interval: Duration::from_secs(1),
            self_preservation: true,
            renewal_percent_threshold: 0.85,
            renewal_window: Duration::from_secs(60),
            self_preservation_min_instances: 5,
            delta_retention: Duration::from_secs(180),
            change_log_capacity: 50_000,
            max_watch_timeout: Duration::from_secs(60),
            max_instances: 100_000,
        }
    }
}

impl Config {
    /// A configuration for tests: the kit's test options (port 0, loopback)
    /// and the registry defaults.
    pub fn for_tests() -> Config {
        Config {
            common: CommonArgs::for_tests(None),
            registry: RegistryArgs::default(),
        }
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` must be between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::try_parse_from;

    /// The defaults from --help equal `RegistryArgs::default()`, and the registry's own port is 8761.
    #[test]
    fn defaults_match() {
        let c: Config = try_parse_from(&SPEC, ["discovery-server"]).unwrap();
        assert_eq!(c.common.port, Some(8761));
        let d = RegistryArgs::default();
        assert_eq!(c.registry.eviction_interval, d.eviction_interval);
        assert_eq!(c.registry.renewal_window, d.renewal_window);
        assert_eq!(c.registry.delta_retention, d.delta_retention);
        assert_eq!(c.registry.change_log_capacity, d.change_log_capacity);
        assert_eq!(c.registry.max_instances, d.max_instances);
        assert!(c.registry.self_preservation);
        assert_eq!(c.registry.renewal_percent_threshold, 0.85);
        assert_eq!(c.registry.self_preservation_min_instances, 5);
    }

    /// Out-of-range values are usage errors (exit 2), and self-preservation can be switched off.
    #[test]
    fn rejects_bad_values() {
        for args in [
            vec!["x", "--renewal-percent-threshold", "1.5"],
            vec!["x", "--renewal-percent-threshold", "many"],
            vec!["x", "--eviction-interval", "0s"],
            vec!["x", "--change-log-capacity", "0"],
            vec!["x", "--self-preservation", "maybe"],
        ] {
            let err = try_parse_from::<Config, _, _>(&SPEC, args.clone()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let c: Config = try_parse_from(&SPEC, ["x", "--self-preservation", "false"]).unwrap();
        assert!(!c.registry.self_preservation);
    }
}
