//! Scenario files as written (serde types that keep spans and reject unknown keys) and their
//! validation into [`super::model`], with every problem reported as `file:line:column` and the
//! dotted key, like the stack files ([`crate::stack::Diagnostic`]).
//!
//! ```toml
//! [scenario]
//! name = "inventory-down"
//! description = "..."
//! timeout = "4m"
//!
//! [steady_state]
//! within = "60s"
//! checks = [{ smoke = true }, { breaker = "CLOSED" }]
//!
//! [[step]]
//! load = { rate = 20, duration = "80s", mix = "orders=80,products=20" }
//! [[step]]
//! inject = "stop inventory-service --all --duration 2m"
//! [[step]]
//! assert = { breaker = "OPEN", within = "20s", since = "inject" }
//! [[step]]
//! heal = "all"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::model::{
    Bound, Check, HealWhich, Instances, LoadStep, Probe, Scenario, Since, SteadyState, Step,
};
use crate::chaos::load::{Kind as LoadKind, LoadConfig, Mix};
use crate::stack::diagnostic::{Diagnostic, Severity, Source};

/// Longest scenario.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A scenario's timeout when the file gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Most steps in one file.
pub const MAX_STEPS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: Spanned<RawHeader>,
    #[serde(default)]
    steady_state: Option<Spanned<RawSteady>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSteady {
    #[serde(default)]
    within: Option<Spanned<String>>,
    #[serde(default)]
    checks: Vec<Spanned<RawCheck>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    load: Option<Spanned<RawLoad>>,
    #[serde(default)]
    wait: Option<Spanned<String>>,
    #[serde(default)]
    inject: Option<Spanned<String>>,
    #[serde(default)]
    heal: Option<Spanned<String>>,
    #[serde(default)]
    scale: Option<Spanned<RawScale>>,
    #[serde(default)]
    wait_until: Option<Spanned<RawCheck>>,
    #[serde(default)]
    assert: Option<Spanned<RawCheck>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    rate: Spanned<f64>,
    duration: Spanned<String>,
    #[serde(default)]
    mix: Option<Spanned<String>>,
    #[serde(default)]
    max_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    connections: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScale {
    service: Spanned<String>,
    instances: Spanned<i64>,
}

/// A number, or a comparison written as text (`"> 0"`, `"<= 1%"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawBound {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    // probes (exactly one)
    #[serde(default)]
    breaker: Option<Spanned<String>>,
    #[serde(default)]
    fallback: Option<Spanned<bool>>,
    #[serde(default)]
    error_rate: Option<Spanned<RawBound>>,
    #[serde(default)]
    failures: Option<Spanned<RawBound>>,
    #[serde(default)]
    leaves_balancer: Option<Spanned<String>>,
    #[serde(default)]
    lag: Option<Spanned<RawBound>>,
    #[serde(default)]
    notified_once: Option<Spanned<bool>>,
    #[serde(default)]
    login: Option<Spanned<i64>>,
    #[serde(default)]
    smoke: Option<Spanned<bool>>,
    #[serde(default)]
    healthy: Option<Spanned<bool>>,
    #[serde(default)]
    load: Option<Spanned<String>>,
    #[serde(default)]
    faults: Option<Spanned<String>>,
    // parameters
    #[serde(default)]
    service: Option<Spanned<String>>,
    #[serde(default)]
    breaker_name: Option<Spanned<String>>,
    #[serde(default)]
    instances: Option<Spanned<String>>,
    #[serde(default)]
    min: Option<Spanned<i64>>,
    #[serde(default)]
    kinds: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    fallback_ok: Option<Spanned<bool>>,
    #[serde(default)]
    unavailable_ok: Option<Spanned<bool>>,
    #[serde(default)]
    within: Option<Spanned<String>>,
    #[serde(default)]
    since: Option<Spanned<String>>,
    #[serde(default)]
    title: Option<Spanned<String>>,
}

/// What validation found.
#[derive(Debug)]
pub struct Parsed {
    /// The scenario, when there are no errors.
    pub scenario: Option<Scenario>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks a fault step's words (kind, target, options, duration) against the stack: the same
/// validation `platform inject` applies. Given by the caller so parsing stays pure.
pub type FaultCheck<'a> = &'a dyn Fn(&[String]) -> Result<(), String>;

/// What the file may name besides itself: the stack's services and the fault check.
pub struct Context<'a> {
    /// Services of the stack the scenario runs against.
    pub services: Vec<String>,
    /// Validates an `inject` step's words.
    pub fault_check: FaultCheck<'a>,
}

/// Validates the text of scenario file `display`.
pub fn parse(text: &str, display: &str, ctx: &Context<'_>) -> Parsed {
    let source = Source {
        file: display,
        text,
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            return Parsed {
                scenario: None,
                diagnostics: vec![source.toml_error(&err)],
            };
        }
    };
    let mut v = Validator {
        source,
        ctx,
        diagnostics: Vec::new(),
    };
    let scenario = v.file(raw);
    let mut diagnostics = v.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    let ok = !diagnostics.iter().any(|d| d.severity == Severity::Error);
    Parsed {
        scenario: if ok { Some(scenario) } else { None },
        diagnostics,
    }
}

struct Validator<'a> {
    source: Source<'a>,
    ctx: &'a Context<'a>,
    diagnostics: Vec<Diagnostic>,
}

/// Splits an `inject` line into words (whitespace; `"..."` or `'...'` keep spaces).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for ch in line.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                in_word = true;
            }
            None if ch.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(ch);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in `{line}`"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let d = self.source.diagnostic(Severity::Error, span, key, message);
        self.diagnostics.push(d);
    }

    fn duration(&mut self, s: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref().trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    s.span(),
                    key,
                    format!(
                        "`{}` is not a duration such as 500ms, 20s or 2m: {e}",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn file(&mut self, raw: RawFile) -> Scenario {
        let header = raw.scenario.into_inner();
        let name = header.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            self.error(
                header.name.span(),
                "scenario.name",
                format!("scenario name `{name}` must be lowercase letters, digits and `-`"),
            );
        }
        let timeout = match &header.timeout {
            Some(t) => match self.duration(t, "scenario.timeout") {
                Some(d) if d.is_zero() || d > MAX_TIMEOUT => {
                    self.error(
                        t.span(),
                        "scenario.timeout",
                        format!(
                            "the timeout must be above 0 and at most {}",
                            humantime::format_duration(MAX_TIMEOUT)
                        ),
                    );
                    DEFAULT_TIMEOUT
                }
                Some(d) => d,
                None => DEFAULT_TIMEOUT,
            },
            None => DEFAULT_TIMEOUT,
        };
        let steady_state = match raw.steady_state {
            Some(s) => {
                let span = s.span();
                let s = s.into_inner();
                let within = match &s.within {
                    Some(w) => self
                        .duration(w, "steady_state.within")
                        .unwrap_or(Duration::from_secs(60)),
                    None => Duration::from_secs(60),
                };
                if s.checks.is_empty() {
                    self.error(
                        span,
                        "steady_state.checks",
                        "the steady state needs at least one check, e.g. checks = [{ smoke = true }]",
                    );
                }
                let checks = s
                    .checks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| self.check(c, &format!("steady_state.checks[{i}]"), false))
                    .collect();
                SteadyState { within, checks }
            }
            None => {
                self.error(
                    0..0,
                    "steady_state",
                    "a scenario needs a [steady_state] with checks, e.g. checks = [{ smoke = true }]",
                );
                SteadyState {
                    within: Duration::from_secs(60),
                    checks: Vec::new(),
                }
            }
        };
        if raw.step.is_empty() {
            self.error(0..0, "step", "a scenario needs at least one [[step]]");
        }
        if raw.step.len() > MAX_STEPS {
            self.error(
                raw.step[MAX_STEPS].span(),
                "step",
                format!("at most {MAX_STEPS} steps"),
            );
        }
        let mut steps = Vec::new();
        let mut load_at: Option<usize> = None;
        let mut injected = false;
        for (i, s) in raw.step.iter().enumerate() {
            let key = format!("step[{i}]");
            let Some(step) = self.step(s, &key) else {
                continue;
            };
            match &step {
                Step::Load(_) => {
                    if load_at.is_some() {
                        self.error(s.span(), &key, "a scenario has at most one `load` step");
                    }
                    load_at = Some(i);
                }
                Step::Inject { .. } => injected = true,
                Step::Heal { .. } if !injected => {
                    self.error(s.span(), &key, "`heal` before any `inject` heals nothing");
                }
                Step::Assert(c) | Step::WaitUntil(c) => {
                    if c.needs_load() && load_at.is_none() {
                        self.error(
                            s.span(),
                            &key,
                            format!(
                                "`{}` reads the scenario's load: put a `load` step before it",
                                c.title
                            ),
                        );
                    }
                    if matches!(c.probe, Probe::LeavesBalancer { .. }) && !injected {
                        self.error(
                            s.span(),
                            &key,
                            "`leaves_balancer` looks at the instances the last `inject` hit: put an `inject` step before it",
                        );
                    }
                    if c.since == Since::Inject && !injected {
                        self.error(
                            s.span(),
                            &key,
                            "`since = \"inject\"` needs an `inject` step before it",
                        );
                    }
                }
                _ => {}
            }
            steps.push(step);
        }
        Scenario {
            name,
            description: header.description.unwrap_or_default(),
            file: self.source.file.to_string(),
            timeout,
            steady_state,
            steps,
        }
    }

    fn step(&mut self, s: &Spanned<RawStep>, key: &str) -> Option<Step> {
        let r = s.get_ref();
        let given: Vec<&str> = [
            ("load", r.load.is_some()),
            ("wait", r.wait.is_some()),
            ("inject", r.inject.is_some()),
            ("heal", r.heal.is_some()),
            ("scale", r.scale.is_some()),
            ("wait_until", r.wait_until.is_some()),
            ("assert", r.assert.is_some()),
        ]
        .into_iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| n)
        .collect();
        if given.len() != 1 {
            self.error(
                s.span(),
                key,
                if given.is_empty() {
                    "a step needs one of load, wait, inject, heal, scale, wait_until, assert"
                        .to_string()
                } else {
                    format!("a step does one thing; this one has {}", given.join(", "))
                },
            );
            return None;
        }
        if let Some(l) = &r.load {
            return self.load(l, &format!("{key}.load")).map(Step::Load);
        }
        if let Some(w) = &r.wait {
            let d = self.duration(w, &format!("{key}.wait"))?;
            if d > MAX_TIMEOUT {
                self.error(
                    w.span(),
                    format!("{key}.wait"),
                    "a wait longer than the longest scenario",
                );
                return None;
            }
            return Some(Step::Wait { duration: d });
        }
        if let Some(line) = &r.inject {
            let k = format!("{key}.inject");
            let words = match split_words(line.get_ref()) {
                Ok(w) if !w.is_empty() => w,
                Ok(_) => {
                    self.error(line.span(), k, "an inject step needs `KIND TARGET [options]`, as `platform inject` takes it");
                    return None;
                }
                Err(e) => {
                    self.error(line.span(), k, e);
                    return None;
                }
            };
            if let Err(e) = (self.ctx.fault_check)(&words) {
                self.error(line.span(), k, e);
                return None;
            }
            return Some(Step::Inject { words });
        }
        if let Some(h) = &r.heal {
            let which = match h.get_ref().trim() {
                "all" => HealWhich::All,
                "last" => HealWhich::Last,
                other => {
                    self.error(
                        h.span(),
                        format!("{key}.heal"),
                        format!("`{other}`: heal takes \"all\" (the scenario's faults) or \"last\" (the last inject's)"),
                    );
                    return None;
                }
            };
            return Some(Step::Heal { which });
        }
        if let Some(sc) = &r.scale {
            let k = format!("{key}.scale");
            let sc_ref = sc.get_ref();
            let service = sc_ref.service.get_ref().trim().to_string();
            let ok_service = self.service(&sc_ref.service, &format!("{k}.service"));
            let n = *sc_ref.instances.get_ref();
            if !(1..=crate::stack::validate::MAX_INSTANCES).contains(&n) {
                self.error(
                    sc_ref.instances.span(),
                    format!("{k}.instances"),
                    format!(
                        "instances must be 1 to {}, got {n}",
                        crate::stack::validate::MAX_INSTANCES
                    ),
                );
                return None;
            }
            return ok_service.then_some(Step::Scale {
                service,
                instances: n as u32,
            });
        }
        if let Some(c) = &r.wait_until {
            return self
                .check(c, &format!("{key}.wait_until"), true)
                .map(Step::WaitUntil);
        }
        if let Some(c) = &r.assert {
            return self
                .check(c, &format!("{key}.assert"), false)
                .map(Step::Assert);
        }
        None
    }

    fn service(&mut self, s: &Spanned<String>, key: &str) -> bool {
        let name = s.get_ref().trim();
        if self.ctx.services.iter().any(|n| n == name) {
            return true;
        }
        self.error(
            s.span(),
            key,
            format!(
                "unknown service `{name}` (services: {})",
                self.ctx.services.join(", ")
            ),
        );
        false
    }

    fn load(&mut self, l: &Spanned<RawLoad>, key: &str) -> Option<LoadStep> {
        let r = l.get_ref();
        let duration = self.duration(&r.duration, &format!("{key}.duration"))?;
        let mix = match &r.mix {
            Some(m) => match m.get_ref().parse::<Mix>() {
                Ok(m) => m,
                Err(e) => {
                    self.error(m.span(), format!("{key}.mix"), e);
                    return None;
                }
            },
            None => Mix::default(),
        };
        let max_in_flight = match &r.max_in_flight {
            Some(n) => usize::try_from(*n.get_ref()).unwrap_or(0),
            None => 1024,
        };
        let connections = match &r.connections {
            Some(n) => usize::try_from(*n.get_ref()).unwrap_or(0),
            None => crate::chaos::load::DEFAULT_CONNECTIONS,
        };
        let mut config = LoadConfig::new(*r.rate.get_ref(), duration, mix.clone());
        config.max_in_flight = max_in_flight;
        config.connections = connections;
        if let Err(e) = config.validate() {
            self.error(l.span(), key, e.to_string());
            return None;
        }
        Some(LoadStep {
            rate: *r.rate.get_ref(),
            duration,
            mix,
            max_in_flight,
            connections,
        })
    }

    fn check(&mut self, c: &Spanned<RawCheck>, key: &str, waiting: bool) -> Option<Check> {
        let r = c.get_ref();
        let probes: Vec<&str> = [
            ("breaker", r.breaker.is_some()),
            ("fallback", r.fallback.is_some()),
            ("error_rate", r.error_rate.is_some()),
            ("failures", r.failures.is_some()),
            ("leaves_balancer", r.leaves_balancer.is_some()),
            ("lag", r.lag.is_some()),
            ("notified_once", r.notified_once.is_some()),
            ("login", r.login.is_some()),
            ("smoke", r.smoke.is_some()),
            ("healthy", r.healthy.is_some()),
            ("load", r.load.is_some()),
            ("faults", r.faults.is_some()),
        ]
        .into_iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| n)
        .collect();
        if probes.len() != 1 {
            self.error(
                c.span(),
                key,
                if probes.is_empty() {
                    "a check needs one of breaker, fallback, error_rate, failures, leaves_balancer, lag, notified_once, login, smoke, healthy, load, faults".to_string()
                } else {
                    format!("a check reads one thing; this one has {}", probes.join(", "))
                },
            );
            return None;
        }
        let probe_name = probes[0];
        // Which parameters each probe takes; any other is an error naming the probe.
        let allowed: &[&str] = match probe_name {
            "breaker" => &["service", "breaker_name", "instances"],
            "fallback" => &["min", "kinds", "unavailable_ok"],
            "error_rate" | "failures" => &["kinds", "fallback_ok"],
            _ => &[],
        };
        let params: [(&str, Option<Range<usize>>); 7] = [
            ("service", r.service.as_ref().map(Spanned::span)),
            ("breaker_name", r.breaker_name.as_ref().map(Spanned::span)),
            ("instances", r.instances.as_ref().map(Spanned::span)),
            ("min", r.min.as_ref().map(Spanned::span)),
            ("kinds", r.kinds.as_ref().map(Spanned::span)),
            ("fallback_ok", r.fallback_ok.as_ref().map(Spanned::span)),
            (
                "unavailable_ok",
                r.unavailable_ok.as_ref().map(Spanned::span),
            ),
        ];
        let mut bad = false;
        for (name, span) in params {
            if let Some(span) = span
                && !allowed.contains(&name)
            {
                self.error(
                    span,
                    format!("{key}.{name}"),
                    format!("`{probe_name}` takes no `{name}`"),
                );
                bad = true;
            }
        }
        let within = match &r.within {
            Some(w) => self.duration(w, &format!("{key}.within"))?,
            None if waiting => Duration::from_secs(60),
            None => Duration::ZERO,
        };
        if within > MAX_TIMEOUT {
            if let Some(w) = &r.within {
                self.error(
                    w.span(),
                    format!("{key}.within"),
                    "longer than the longest scenario",
                );
            }
            return None;
        }
        let since = match &r.since {
            Some(s) => match s.get_ref().trim() {
                "step" => Since::Step,
                "inject" => Since::Inject,
                "heal" => Since::Heal,
                "load" => Since::Load,
                other => {
                    self.error(
                        s.span(),
                        format!("{key}.since"),
                        format!(
                            "`{other}`: since takes \"step\", \"inject\", \"heal\" or \"load\""
                        ),
                    );
                    return None;
                }
            },
            None => Since::Step,
        };
        let kinds = match &r.kinds {
            Some(list) => {
                let mut out = Vec::new();
                for (i, k) in list.get_ref().iter().enumerate() {
                    match k.get_ref().parse::<LoadKind>() {
                        Ok(k) => out.push(k),
                        Err(e) => {
                            self.error(k.span(), format!("{key}.kinds[{i}]"), e);
                            bad = true;
                        }
                    }
                }
                out
            }
            None => Vec::new(),
        };
        let fallback_ok = r.fallback_ok.as_ref().is_some_and(|b| *b.get_ref());
        let probe = match probe_name {
            "breaker" => {
                let b = r.breaker.as_ref()?;
                let state: circuit_breaker::State = match serde_json::from_value(
                    serde_json::Value::String(b.get_ref().trim().to_ascii_uppercase()),
                ) {
                    Ok(s) => s,
                    Err(_) => {
                        self.error(
                                b.span(),
                                format!("{key}.breaker"),
                                format!("`{}` is not a breaker state: CLOSED, OPEN, HALF_OPEN, DISABLED or FORCED_OPEN", b.get_ref()),
                            );
                        return None;
                    }
                };
                let service = match &r.service {
                    Some(s) => {
                        if !self.service(s, &format!("{key}.service")) {
                            return None;
                        }
                        s.get_ref().trim().to_string()
                    }
                    None => crate::observe::admin::BREAKERS_SERVICE.to_string(),
                };
                let instances = match r.instances.as_ref().map(|i| (i, i.get_ref().trim())) {
                    None | Some((_, "all")) => Instances::All,
                    Some((_, "any")) => Instances::Any,
                    Some((i, other)) => {
                        self.error(
                            i.span(),
                            format!("{key}.instances"),
                            format!("`{other}`: instances takes \"all\" or \"any\""),
                        );
                        return None;
                    }
                };
                Probe::Breaker {
                    service,
                    breaker: r
                        .breaker_name
                        .as_ref()
                        .map_or("inventory-service", |b| b.get_ref().trim())
                        .to_string(),
                    state,
                    instances,
                }
            }
            "fallback" => {
                if r.fallback.as_ref().is_some_and(|f| !*f.get_ref()) {
                    self.error(
                        c.span(),
                        format!("{key}.fallback"),
                        "write `fallback = true`",
                    );
                    return None;
                }
                let min = match &r.min {
                    Some(m) if *m.get_ref() < 0 => {
                        self.error(m.span(), format!("{key}.min"), "min must be 0 or more");
                        return None;
                    }
                    Some(m) => *m.get_ref() as u64,
                    None => 1,
                };
                Probe::Fallback {
                    min,
                    kinds: if kinds.is_empty() {
                        vec![LoadKind::Orders]
                    } else {
                        kinds
                    },
                    unavailable_ok: r.unavailable_ok.as_ref().is_some_and(|b| *b.get_ref()),
                }
            }
            "error_rate" => {
                let b = r.error_rate.as_ref()?;
                let bound = self.bound(b, &format!("{key}.error_rate"), true)?;
                Probe::ErrorRate {
                    bound,
                    kinds,
                    fallback_ok,
                }
            }
            "failures" => {
                let b = r.failures.as_ref()?;
                let bound = self.bound(b, &format!("{key}.failures"), false)?;
                Probe::Failures {
                    bound,
                    kinds,
                    fallback_ok,
                }
            }
            "leaves_balancer" => {
                let s = r.leaves_balancer.as_ref()?;
                if !self.service(s, &format!("{key}.leaves_balancer")) {
                    return None;
                }
                Probe::LeavesBalancer {
                    service: s.get_ref().trim().to_string(),
                }
            }
            "lag" => {
                let b = r.lag.as_ref()?;
                Probe::Lag {
                    bound: self.bound(b, &format!("{key}.lag"), false)?,
                }
            }
            "notified_once" => self.flag(
                r.notified_once.as_ref()?,
                key,
                "notified_once",
                Probe::NotifiedOnce,
            )?,
            "login" => {
                let s = r.login.as_ref()?;
                let status = *s.get_ref();
                if !(100..=599).contains(&status) {
                    self.error(
                        s.span(),
                        format!("{key}.login"),
                        format!("{status} is not an HTTP status"),
                    );
                    return None;
                }
                Probe::Login {
                    status: status as u16,
                }
            }
            "smoke" => self.flag(r.smoke.as_ref()?, key, "smoke", Probe::Smoke)?,
            "healthy" => self.flag(r.healthy.as_ref()?, key, "healthy", Probe::Healthy)?,
            "load" => {
                let l = r.load.as_ref()?;
                if l.get_ref().trim() != "done" {
                    self.error(l.span(), format!("{key}.load"), "write `load = \"done\"`");
                    return None;
                }
                Probe::LoadDone
            }
            _ => {
                let f = r.faults.as_ref()?;
                if f.get_ref().trim() != "over" {
                    self.error(
                        f.span(),
                        format!("{key}.faults"),
                        "write `faults = \"over\"`",
                    );
                    return None;
                }
                Probe::FaultsOver
            }
        };
        if bad {
            return None;
        }
        let title = match &r.title {
            Some(t) => t.get_ref().clone(),
            None => Check::default_title(&probe, within, since),
        };
        Some(Check {
            probe,
            within,
            since,
            title,
        })
    }

    fn flag(&mut self, b: &Spanned<bool>, key: &str, name: &str, probe: Probe) -> Option<Probe> {
        if *b.get_ref() {
            Some(probe)
        } else {
            self.error(
                b.span(),
                format!("{key}.{name}"),
                format!("write `{name} = true`"),
            );
            None
        }
    }

    /// `1` / `"<= 1"` / `"1%"` (at most), `"> 0"` (above).
    fn bound(&mut self, b: &Spanned<RawBound>, key: &str, percent: bool) -> Option<Bound> {
        let parsed = match b.get_ref() {
            RawBound::Number(n) => Ok(Bound::AtMost(*n)),
            RawBound::Text(t) => parse_bound(t, percent),
        };
        match parsed {
            Ok(bound) => Some(bound),
            Err(e) => {
                self.error(b.span(), key, e);
                None
            }
        }
    }
}

/// Parses `"<= 1"`, `"< 1%"`, `"1"`, `"> 0"`.
fn parse_bound(text: &str, percent: bool) -> Result<Bound, String> {
    let t = text.trim();
    let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
        ("<=", r)
    } else if let Some(r) = t.strip_prefix('<') {
        ("<", r)
    } else if let Some(r) = t.strip_prefix('>') {
        (">", r)
    } else {
        ("<=", t)
    };
    let rest = rest.trim();
    let rest = if percent {
        rest.trim_end_matches('%').trim()
    } else {
        rest
    };
    let n: f64 = rest.parse().map_err(|_| {
        format!(
            "`{text}` is not a bound: write a number{} (at most), or \"> N\" (above)",
            if percent { " or \"1%\"" } else { "" }
        )
    })?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("`{text}`: the bound must be 0 or more"));
    }
    Ok(match op {
        ">" => Bound::Above(n),
        "<" => Bound::Below(n),
        _ => Bound::AtMost(n),
    })
}

/// The services of a stack and a fault check, for validating files outside a run (tests).
pub fn services_of(map: &BTreeMap<String, crate::stack::Service>) -> Vec<String> {
    map.keys().cloned().collect()
}
