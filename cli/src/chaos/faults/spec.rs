//! What a fault is before it is injected: its kind, target, which instances, how long, and the
//! kind's options, parsed and validated from the same strings whoever asks for it uses — the
//! `platform inject` command line, a scenario file's `inject` step, the dashboard's menu. Every
//! check happens here, before anything is touched, so bad input injects nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default duration of a fault.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// The shortest fault.
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// The longest fault: a day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The kinds of fault, by layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Send a signal (default KILL); the container stays down until the fault ends.
    Kill,
    /// Docker stop (SIGTERM, SIGKILL after the grace); down until the fault ends.
    Stop,
    /// Freeze every process of the container (cgroup freezer) until the fault ends.
    Pause,
    /// Docker restart, once; the record ends when the container is back.
    Restart,
    /// Cut the container off the stack network (a partition) until the fault ends.
    Disconnect,
    /// Delay every packet the container sends (tc netem delay, with jitter; without netem an
    /// NFQUEUE fault agent).
    Latency,
    /// Drop a share of the packets the container sends.
    Loss,
    /// Limit the rate the container sends at (tc tbf).
    Bandwidth,
    /// Corrupt a share of the packets the container sends (tc netem corrupt, or the agent).
    Corrupt,
    /// Duplicate a share of the packets the container sends (tc netem duplicate, or the agent).
    Duplicate,
    /// The service itself delays a share of its requests (kit `/admin/faults`).
    AppLatency,
    /// The service itself answers a share of its requests with an error status.
    AppError,
    /// The service process exits, as if it crashed.
    KillApp,
}

/// Where a kind acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Through the Docker API.
    Container,
    /// tc (or iptables) in the container's network namespace.
    Network,
    /// The service's own fault endpoint.
    Application,
}

impl Kind {
    /// Every kind, in the order `--help` and the dashboard list them.
    pub const ALL: [Kind; 13] = [
        Kind::Kill,
        Kind::Stop,
        Kind::Pause,
        Kind::Restart,
        Kind::Disconnect,
        Kind::Latency,
        Kind::Loss,
        Kind::Bandwidth,
        Kind::Corrupt,
        Kind::Duplicate,
        Kind::AppLatency,
        Kind::AppError,
        Kind::KillApp,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Stop => "stop",
            Kind::Pause => "pause",
            Kind::Restart => "restart",
            Kind::Disconnect => "disconnect",
            Kind::Latency => "latency",
            Kind::Loss => "loss",
            Kind::Bandwidth => "bandwidth",
            Kind::Corrupt => "corrupt",
            Kind::Duplicate => "duplicate",
            Kind::AppLatency => "app-latency",
            Kind::AppError => "app-error",
            Kind::KillApp => "kill-app",
        }
    }

    /// The kind called `name`.
    pub fn parse(name: &str) -> Result<Kind, SpecError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| SpecError::UnknownKind {
                kind: name.to_string(),
            })
    }

    pub fn layer(self) -> Layer {
        match self {
            Kind::Kill | Kind::Stop | Kind::Pause | Kind::Restart | Kind::Disconnect => {
                Layer::Container
            }
            Kind::Latency | Kind::Loss | Kind::Bandwidth | Kind::Corrupt | Kind::Duplicate => {
                Layer::Network
            }
            Kind::AppLatency | Kind::AppError | Kind::KillApp => Layer::Application,
        }
    }

    /// True when the fault takes the container out of service on purpose for its duration:
    /// nothing (a restart policy, `platform up`) may bring it back before the fault ends.
    pub fn intended_stop(self) -> bool {
        matches!(self, Kind::Kill | Kind::Stop | Kind::Pause)
    }

    /// True for kinds that happen once and leave nothing to revert but waiting for the
    /// container to be healthy again (`restart`).
    pub fn one_shot(self) -> bool {
        matches!(self, Kind::Restart)
    }

    /// The options this kind takes.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Kind::Kill => &["signal"],
            Kind::Stop => &["grace"],
            Kind::Pause | Kind::Restart | Kind::Disconnect | Kind::KillApp => &[],
            Kind::Latency => &["delay", "jitter"],
            Kind::Loss | Kind::Corrupt | Kind::Duplicate => &["percent"],
            Kind::Bandwidth => &["rate"],
            Kind::AppLatency => &["min", "max", "share", "route"],
            Kind::AppError => &["status", "share", "route"],
        }
    }

    /// One line for `--help` and the dashboard's menu.
    pub fn summary(self) -> &'static str {
        match self {
            Kind::Kill => "send a signal (--signal, default KILL); down until the end",
            Kind::Stop => "docker stop (--grace before SIGKILL, default 10s); down until the end",
            Kind::Pause => "freeze the container until the end",
            Kind::Restart => "restart the container once",
            Kind::Disconnect => "cut it off the stack network until the end (a partition)",
            Kind::Latency => "delay its packets (--delay, default 200ms; --jitter)",
            Kind::Loss => "drop --percent of its packets",
            Kind::Bandwidth => "limit its sending rate (--rate, e.g. 1mbit)",
            Kind::Corrupt => "corrupt --percent of its packets",
            Kind::Duplicate => "duplicate --percent of its packets",
            Kind::AppLatency => "the service delays requests (--min/--max, --share, --route)",
            Kind::AppError => "the service answers --status (default 500) (--share, --route)",
            Kind::KillApp => "the service process exits, as if it crashed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which instances of the target service a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "select", content = "instance")]
pub enum Selection {
    /// The service's only running instance; an error when it runs several.
    #[default]
    Only,
    /// Instance N (1-based, as in `platform-<stack>-<service>-N`).
    Instance(u32),
    /// Every running instance (one record each).
    All,
    /// One running instance chosen at random.
    Random,
}

impl Selection {
    /// From the CLI's mutually exclusive flags.
    pub fn from_flags(instance: Option<u32>, all: bool, random: bool) -> Result<Self, SpecError> {
        match (instance, all, random) {
            (None, false, false) => Ok(Selection::Only),
            (Some(0), _, _) => Err(SpecError::Invalid {
                option: "instance".into(),
                message: "instances are numbered from 1".into(),
            }),
            (Some(n), false, false) => Ok(Selection::Instance(n)),
            (None, true, false) => Ok(Selection::All),
            (None, false, true) => Ok(Selection::Random),
            _ => Err(SpecError::Invalid {
                option: "instance".into(),
                message: "choose one of --instance N, --all and --random".into(),
            }),
        }
    }
}

/// A sending rate for `bandwidth`, in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub u64);

impl Rate {
    /// `1mbit`, `512kbit`, `100kbps` (bytes), `2gbit`, `8000bit`: tc's units (k = 1000).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let t = text.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a rate such as 1mbit, 512kbit or 100kbps"))?;
        let factor = match unit {
            "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "" => {
                return Err(format!(
                    "`{text}` needs a unit: bit, kbit, mbit, gbit, bps, kbps or mbps"
                ));
            }
            other => {
                return Err(format!(
                    "unknown rate unit `{other}` (bit, kbit, mbit, gbit, bps, kbps, mbps)"
                ));
            }
        };
        let bits = value * factor;
        if !(8_000.0..=10e9).contains(&bits) {
            return Err(format!("{text} is outside 8kbit..=10gbit"));
        }
        Ok(Rate(bits as u64))
    }

    /// The rate in tc's syntax (`1000000bit`).
    pub fn tc(self) -> String {
        format!("{}bit", self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.is_multiple_of(1_000_000) {
            write!(f, "{}mbit", b / 1_000_000)
        } else if b.is_multiple_of(1_000) {
            write!(f, "{}kbit", b / 1_000)
        } else {
            write!(f, "{b}bit")
        }
    }
}

/// A kind's options, validated and with defaults filled in (absent = not used by the kind).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// `kill`: the signal's name without `SIG` (`KILL`, `TERM`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `stop`: milliseconds between SIGTERM and SIGKILL (`--grace`; absent: Docker's 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<u64>,
    /// `latency`: the added delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `latency`: the delay varies by up to this much either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// `loss`, `corrupt`, `duplicate`: percent of packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// `bandwidth`: the sending rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// `app-latency`: the added latency's range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
    /// `app-error`: the status answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `app-latency`, `app-error`: percent of requests hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// `app-latency`, `app-error`: path prefixes hit (empty = all API routes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// Signals `kill` accepts (what Docker's kill takes by name).
pub const SIGNALS: [&str; 10] = [
    "KILL", "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "STOP", "CONT", "ABRT",
];

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub kind: Kind,
    /// A service of the stack, or a dependency shorthand (`broker`, `database`, `identity`).
    pub target: String,
    pub selection: Selection,
    /// How long the fault lasts (one-shot kinds ignore it).
    #[serde(with = "millis")]
    pub duration: Duration,
    pub options: Options,
}

/// Bad fault input: the command exits 2 and nothing is injected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown fault kind `{kind}` (kinds: {})", kind_names())]
    UnknownKind { kind: String },
    #[error("`{kind}` takes no option --{option}{}", takes(*kind))]
    UnknownOption { kind: Kind, option: String },
    #[error("--{option}: {message}")]
    Invalid { option: String, message: String },
    #[error("{0}")]
    Usage(String),
}

fn kind_names() -> String {
    Kind::ALL.map(Kind::name).join(", ")
}

fn takes(kind: Kind) -> String {
    let opts = kind.options();
    if opts.is_empty() {
        " (it takes none)".to_string()
    } else {
        format!(
            " (it takes {})",
            opts.iter()
                .map(|o| format!("--{o}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn invalid(option: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        option: option.to_string(),
        message: message.into(),
    }
}

/// Parses a duration option (`200ms`, `1.5s`, `2m`), for `what`.
fn duration_option(option: &str, text: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            option,
            format!("`{text}` is not a duration such as 200ms, 30s or 2m: {e}"),
        )
    })
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Parses a percentage option: `10`, `10%`, `0.5`, in (0, 100].
fn percent_option(option: &str, text: &str) -> Result<f64, SpecError> {
    let t = text.trim().trim_end_matches('%');
    let v: f64 = t.parse().map_err(|_| {
        invalid(
            option,
            format!("`{text}` is not a percentage such as 10 or 2.5%"),
        )
    })?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(invalid(option, format!("{text} is not in (0, 100]")));
    }
    Ok(v)
}

impl FaultSpec {
    /// Validates a fault from its parts as strings: the kind, the target, the selection, the
    /// duration (`None` = [`DEFAULT_DURATION`]) and the kind's options as `(name, value)` pairs
    /// (`("delay", "200ms")`; `route` may repeat). Defaults are filled in.
    pub fn parse(
        kind: &str,
        target: &str,
        selection: Selection,
        duration: Option<&str>,
        options: &[(&str, &str)],
    ) -> Result<FaultSpec, SpecError> {
        let kind = Kind::parse(kind.trim())?;
        let target = target.trim();
        if target.is_empty() {
            return Err(SpecError::Usage("a fault needs a target service".into()));
        }
        let duration = match duration {
            None => DEFAULT_DURATION,
            Some(text) => duration_option("duration", text)?,
        };
        if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
            return Err(invalid(
                "duration",
                format!(
                    "{} is outside {}..={}",
                    humantime::format_duration(duration),
                    humantime::format_duration(MIN_DURATION),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        }
        let options = Self::options(kind, options)?;
        Ok(FaultSpec {
            kind,
            target: target.to_string(),
            selection,
            duration,
            options,
        })
    }

    /// Parses one line of words as the CLI takes them:
    /// `KIND TARGET [--instance N | --all | --random] [--duration D] [--OPTION VALUE]...`
    /// (`--name=value` works too). Scenario steps and the dashboard use this.
    pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<FaultSpec, SpecError> {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let mut positional = Vec::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        let (mut instance, mut all, mut random, mut duration) = (None, false, false, None);
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            i += 1;
            let Some(flag) = w.strip_prefix("--") else {
                positional.push(w);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "all" || name == "random" {
                if inline.is_some() {
                    return Err(invalid(name, "takes no value"));
                }
                if name == "all" {
                    all = true;
                } else {
                    random = true;
                }
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = words.get(i).ok_or_else(|| invalid(name, "needs a value"))?;
                    i += 1;
                    v.to_string()
                }
            };
            match name {
                "instance" => {
                    let n: u32 = value.parse().map_err(|_| {
                        invalid("instance", format!("`{value}` is not an instance number"))
                    })?;
                    instance = Some(n);
                }
                "duration" => duration = Some(value),
                _ => pairs.push((name.to_string(), value)),
            }
        }
        let [kind, target] = positional[..] else {
            return Err(SpecError::Usage(format!(
                "expected KIND TARGET [options], got {} word(s) before the options: {}",
                positional.len(),
                positional.join(" ")
            )));
        };
        let selection = Selection::from_flags(instance, all, random)?;
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        FaultSpec::parse(kind, target, selection, duration.as_deref(), &pairs)
    }

    /// Validates `pairs` for `kind` and fills in defaults.
    fn options(kind: Kind, pairs: &[(&str, &str)]) -> Result<Options, SpecError> {
        let mut given: BTreeMap<&str, &str> = BTreeMap::new();
        let mut routes = Vec::new();
        for &(name, value) in pairs {
            let name = name.trim_start_matches("--");
            if !kind.options().contains(&name) {
                return Err(SpecError::UnknownOption {
                    kind,
                    option: name.to_string(),
                });
            }
            if name == "route" {
                routes.push(value.to_string());
            } else if given.insert(name, value).is_some() {
                return Err(invalid(name, "given twice"));
            }
        }
        let dur = |name: &str| {
            given
                .get(name)
                .map(|v| duration_option(name, v))
                .transpose()
        };
        let pct = |name: &str| given.get(name).map(|v| percent_option(name, v)).transpose();
        let mut o = Options::default();
        match kind {
            Kind::Kill => {
                let s = given.get("signal").copied().unwrap_or("KILL");
                let s = s.trim().to_ascii_uppercase();
                let s = s.strip_prefix("SIG").unwrap_or(&s).to_string();
                if !SIGNALS.contains(&s.as_str()) {
                    return Err(invalid(
                        "signal",
                        format!("`{s}` is not one of {}", SIGNALS.join(", ")),
                    ));
                }
                o.signal = Some(s);
            }
            Kind::Stop => {
                let g = dur("grace")?.unwrap_or(Duration::from_secs(10));
                if g > Duration::from_secs(300) {
                    return Err(invalid("grace", "at most 5m"));
                }
                o.grace_ms = Some(millis_of(g));
            }
            Kind::Latency => {
                let d = dur("delay")?.unwrap_or(Duration::from_millis(200));
                let j = dur("jitter")?.unwrap_or(Duration::ZERO);
                if d.is_zero() || d > super::agent::MAX_DELAY {
                    return Err(invalid("delay", "in (0, 60s]"));
                }
                if j > d {
                    return Err(invalid("jitter", "at most the delay"));
                }
                o.delay_ms = Some(millis_of(d));
                o.jitter_ms = Some(millis_of(j));
            }
            Kind::Loss | Kind::Corrupt | Kind::Duplicate => {
                o.percent = Some(pct("percent")?.ok_or_else(|| {
                    invalid(
                        "percent",
                        format!("`{kind}` needs --percent, e.g. --percent 10"),
                    )
                })?);
            }
            Kind::Bandwidth => {
                let r = given.get("rate").ok_or_else(|| {
                    invalid("rate", "`bandwidth` needs --rate, e.g. --rate 1mbit")
                })?;
                o.rate = Some(Rate::parse(r).map_err(|m| invalid("rate", m))?);
            }
            Kind::AppLatency | Kind::AppError => {
                o.share = Some(pct("share")?.unwrap_or(100.0));
                for r in &routes {
                    if !r.starts_with('/') || r.len() > fault_model::MAX_TEXT {
                        return Err(invalid(
                            "route",
                            format!("`{r}` is not a path prefix such as /api/inventory"),
                        ));
                    }
                }
                if routes.len() > fault_model::MAX_ROUTES {
                    return Err(invalid(
                        "route",
                        format!("at most {} routes", fault_model::MAX_ROUTES),
                    ));
                }
                o.routes = routes;
                if kind == Kind::AppLatency {
                    let max = dur("max")?;
                    let min = dur("min")?;
                    let (min, max) = match (min, max) {
                        (None, None) => (Duration::from_millis(500), Duration::from_millis(1000)),
                        (Some(m), None) => (m, m),
                        (None, Some(m)) => (Duration::ZERO, m),
                        (Some(a), Some(b)) => (a, b),
                    };
                    if min > max {
                        return Err(invalid("min", "above --max"));
                    }
                    if max.is_zero() || millis_of(max) > fault_model::MAX_LATENCY_MS {
                        return Err(invalid("max", "in (0, 60s]"));
                    }
                    o.min_ms = Some(millis_of(min));
                    o.max_ms = Some(millis_of(max));
                } else {
                    let s = given.get("status").copied().unwrap_or("500");
                    let status: u16 = s
                        .trim()
                        .parse()
                        .map_err(|_| invalid("status", format!("`{s}` is not an HTTP status")))?;
                    if !(400..=599).contains(&status) {
                        return Err(invalid("status", format!("{status} is not in 400..=599")));
                    }
                    o.status = Some(status);
                }
            }
            Kind::Pause | Kind::Restart | Kind::Disconnect | Kind::KillApp => {}
        }
        Ok(o)
    }

    /// The options as `--name value` words (for messages and the dashboard's CLI equivalent).
    pub fn option_words(&self) -> Vec<String> {
        let o = &self.options;
        let ms = |v: u64| humantime::format_duration(Duration::from_millis(v)).to_string();
        let mut w = Vec::new();
        let mut push = |name: &str, value: String| {
            w.push(format!("--{name}"));
            w.push(value);
        };
        if let Some(s) = &o.signal {
            push("signal", s.clone());
        }
        if let Some(v) = o.grace_ms {
            push("grace", ms(v));
        }
        if let Some(v) = o.delay_ms {
            push("delay", ms(v));
        }
        if let Some(v) = o.jitter_ms.filter(|j| *j > 0) {
            push("jitter", ms(v));
        }
        if let Some(v) = o.percent {
            push("percent", v.to_string());
        }
        if let Some(v) = o.rate {
            push("rate", v.to_string());
        }
        if let Some(v) = o.min_ms {
            push("min", ms(v));
        }
        if let Some(v) = o.max_ms {
            push("max", ms(v));
        }
        if let Some(v) = o.status {
            push("status", v.to_string());
        }
        if let Some(v) = o.share.filter(|s| *s < 100.0) {
            push("share", v.to_string());
        }
        for r in &o.routes {
            push("route", r.clone());
        }
        w
    }

    /// The `platform inject ...` command line that asks for this fault.
    pub fn command_line(&self) -> String {
        let mut w = vec![
            "platform".to_string(),
            "inject".to_string(),
            self.kind.to_string(),
            self.target.clone(),
        ];
        match self.selection {
            Selection::Only => {}
            Selection::Instance(n) => w.extend(["--instance".to_string(), n.to_string()]),
            Selection::All => w.push("--all".into()),
            Selection::Random => w.push("--random".into()),
        }
        if !self.kind.one_shot() {
            w.push("--duration".into());
            w.push(humantime::format_duration(self.duration).to_string());
        }
        w.extend(self.option_words());
        w.join(" ")
    }
}

/// Serde for a `Duration` as whole milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::millis_of(*d))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = <u64 as serde::Deserialize>::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Result<FaultSpec, SpecError> {
        FaultSpec::from_words(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Every kind parses by its name with its defaults filled in; the command line it prints
    /// parses back to the same spec.
    #[test]
    fn kinds_parse_with_defaults_and_round_trip() {
        for kind in Kind::ALL {
            let extra = match kind {
                Kind::Loss | Kind::Corrupt | Kind::Duplicate => " --percent 10",
                Kind::Bandwidth => " --rate 1mbit",
                _ => "",
            };
            let spec = words(&format!("{kind} inventory-service{extra}")).unwrap();
            assert_eq!(spec.kind, kind);
            assert_eq!(spec.duration, DEFAULT_DURATION);
            let line = spec.command_line();
            let back = words(line.trim_start_matches("platform inject ")).unwrap();
            if kind.one_shot() {
                assert_eq!(back.options, spec.options, "{line}");
            } else {
                assert_eq!(back, spec, "{line}");
            }
        }
        let kill = words("kill order-service").unwrap();
        assert_eq!(kill.options.signal.as_deref(), Some("KILL"));
        let lat =
            words("latency inventory-service --delay 200ms --jitter=20ms --duration 45s").unwrap();
        assert_eq!(
            (lat.options.delay_ms, lat.options.jitter_ms),
            (Some(200), Some(20))
        );
        assert_eq!(lat.duration, Duration::from_secs(45));
        let app = words(
            "app-error order-service --status 503 --share 50% --route /api/order --route /api/x",
        )
        .unwrap();
        assert_eq!(app.options.status, Some(503));
        assert_eq!(app.options.share, Some(50.0));
        assert_eq!(app.options.routes, ["/api/order", "/api/x"]);
        let sig = words("kill order-service --signal sigterm").unwrap();
        assert_eq!(sig.options.signal.as_deref(), Some("TERM"));
    }

    /// Selections come from the flags, one at a time.
    #[test]
    fn selections() {
        assert_eq!(
            words("pause order-service").unwrap().selection,
            Selection::Only
        );
        assert_eq!(
            words("pause order-service --instance 2").unwrap().selection,
            Selection::Instance(2)
        );
        assert_eq!(
            words("pause order-service --all").unwrap().selection,
            Selection::All
        );
        assert_eq!(
            words("pause order-service --random").unwrap().selection,
            Selection::Random
        );
        assert!(words("pause order-service --all --random").is_err());
        assert!(words("pause order-service --instance 0").is_err());
        assert!(words("pause order-service --instance x").is_err());
    }

    /// Bad input names what is wrong: unknown kinds list the kinds, options the kind does not
    /// take list those it does, values say what they should look like.
    #[test]
    fn bad_input_is_explained() {
        let e = words("explode order-service").unwrap_err().to_string();
        assert!(
            e.contains("unknown fault kind `explode`") && e.contains("app-latency"),
            "{e}"
        );
        let e = words("pause order-service --delay 1s")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("takes no option --delay") && e.contains("takes none"),
            "{e}"
        );
        let e = words("latency order-service --percent 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--delay, --jitter"), "{e}");
        for (line, option) in [
            ("latency x --duration 0s", "duration"),
            ("latency x --duration 2d", "duration"),
            ("latency x --duration soon", "duration"),
            ("latency x --delay 0ms", "delay"),
            ("latency x --delay 100ms --jitter 200ms", "jitter"),
            ("loss x", "percent"),
            ("loss x --percent 0", "percent"),
            ("loss x --percent 101", "percent"),
            ("loss x --percent lots", "percent"),
            ("bandwidth x", "rate"),
            ("bandwidth x --rate 1", "rate"),
            ("bandwidth x --rate 1furlong", "rate"),
            ("bandwidth x --rate 1bit", "rate"),
            ("kill x --signal NOPE", "signal"),
            ("app-error x --status 200", "status"),
            ("app-error x --status abc", "status"),
            ("app-latency x --min 2s --max 1s", "min"),
            ("app-latency x --max 2m", "max"),
            ("app-latency x --route api", "route"),
            ("stop x --grace 1h", "grace"),
            ("loss x --percent 1 --percent 2", "percent"),
        ] {
            match words(line) {
                Err(SpecError::Invalid { option: o, .. }) => assert_eq!(o, option, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(matches!(words("latency"), Err(SpecError::Usage(_))));
        assert!(matches!(words("latency a b"), Err(SpecError::Usage(_))));
        assert!(matches!(
            words("latency x --delay"),
            Err(SpecError::Invalid { .. })
        ));
    }

    /// Rates read in tc's units and print back in the largest whole one.
    #[test]
    fn rates() {
        assert_eq!(Rate::parse("1mbit").unwrap(), Rate(1_000_000));
        assert_eq!(Rate::parse("512kbit").unwrap(), Rate(512_000));
        assert_eq!(Rate::parse("100kbps").unwrap(), Rate(800_000));
        assert_eq!(Rate::parse("1.5mbit").unwrap(), Rate(1_500_000));
        assert_eq!(Rate(1_000_000).to_string(), "1mbit");
        assert_eq!(Rate(512_000).to_string(), "512kbit");
        assert_eq!(Rate(1_000_000).tc(), "1000000bit");
    }

    /// The spec's JSON (records, scenario reports) is stable: kebab-case kinds, milliseconds.
    #[test]
    fn json_shape() {
        let spec =
            words("latency inventory-service --instance 2 --delay 200ms --duration 30s").unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["kind"], "latency");
        assert_eq!(
            json["selection"],
            serde_json::json!({"select": "instance", "instance": 2})
        );
        assert_eq!(json["duration"], 30_000);
        assert_eq!(json["options"]["delay_ms"], 200);
        let back: FaultSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
    }
}
