//! A circuit breaker with Resilience4j's names and semantics.
//!
//! A [`CircuitBreaker`] guards calls to one dependency. It is CLOSED while
//! the dependency behaves: calls pass and their outcomes fill a sliding
//! window (the last N calls, `COUNT_BASED`, or the calls of the last N
//! seconds, `TIME_BASED`). Once the window holds at least
//! `minimumNumberOfCalls` and the failure rate or the slow-call rate reaches
//! its threshold, it turns OPEN: calls are not permitted (they fail fast and
//! are counted) for `waitDurationInOpenState`. Then it turns HALF_OPEN,
//! either on the next call attempt or by itself when
//! `automaticTransitionFromOpenToHalfOpenEnabled` is set, and lets
//! `permittedNumberOfCallsInHalfOpenState` trial calls through: when they
//! are all recorded, it goes back to OPEN if the rates are still above the
//! thresholds and to CLOSED otherwise. `maxWaitDurationInHalfOpenState`
//! (0 = unbounded) sends a HALF_OPEN breaker whose trial calls never finish
//! back to OPEN. DISABLED (always permit, record nothing) and FORCED_OPEN
//! (never permit) are operator states, left only by an explicit transition.
//!
//! Everything reads time through [`Clock`], so tests drive the breaker by
//! advancing a manual clock. Time-driven transitions (the automatic
//! OPEN→HALF_OPEN and the HALF_OPEN timeout) are applied lazily, whenever
//! the breaker is used or observed, and are stamped with the instant they
//! became due, so the history is the same as with Resilience4j's scheduler
//! without a timer task per breaker.
//!
//! Two ways to use it: [`CircuitBreaker::call`] wraps a future whose `Err`
//! counts as a failure (or [`CircuitBreaker::call_classified`] with your own
//! verdict), and [`CircuitBreaker::try_acquire`] hands out a [`Permit`] that
//! the caller settles with [`Permit::success`], [`Permit::failure`] or
//! [`Permit::ignore`] (the gateway's style: the outcome is known only after
//! the response). A permit dropped unsettled (the caller went away) counts
//! as nothing and returns its HALF_OPEN trial slot.
//!
//! One deviation from Resilience4j, on purpose: an outcome is recorded in
//! the window only if the breaker is still in the state (the same "state
//! generation") in which the call was permitted. A slow call permitted while
//! CLOSED that finishes after the breaker went HALF_OPEN does not decide the
//! trial; it is still counted in the totals.
//!
//! [`BreakerRegistry`] holds a service's breakers for `/admin/breakers`
//! ([`admin_router`]) and `/metrics` (Resilience4j's metric names).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::routing::{get, post};
use parking_lot::{Mutex, RwLock};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::parse_duration;
use crate::error::Problem;
use crate::http::{Json, Path};
use crate::metrics::Metrics;

/// How many transitions a breaker remembers for `/admin/breakers`.
pub const TRANSITION_HISTORY: usize = 100;

/// How the sliding window counts calls.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default, Hash,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlidingWindowType {
    /// The last `slidingWindowSize` calls.
    #[default]
    #[value(name = "COUNT_BASED", alias = "count_based", alias = "count-based")]
    CountBased,
    /// The calls of the last `slidingWindowSize` seconds.
    #[value(name = "TIME_BASED", alias = "time_based", alias = "time-based")]
    TimeBased,
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
    /// Always permits, records nothing (operator state).
    Disabled,
    /// Never permits (operator state).
    ForcedOpen,
}

impl State {
    /// Every state, in a fixed order (for metrics).
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
    ];

    /// Resilience4j's name: `CLOSED`, `OPEN`, `HALF_OPEN`, `DISABLED`, `FORCED_OPEN`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Open => "OPEN",
            State::HalfOpen => "HALF_OPEN",
            State::Disabled => "DISABLED",
            State::ForcedOpen => "FORCED_OPEN",
        }
    }

    /// Resilience4j's metric label: `closed`, `open`, `half_open`, ...
    fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A breaker's configuration. [`Default`] is Resilience4j's
/// `CircuitBreakerConfig.ofDefaults()`; services take theirs from
/// [`BreakerArgs`], whose defaults are the platform's (see there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerConfig {
    pub sliding_window_type: SlidingWindowType,
    /// Calls (COUNT_BASED) or seconds (TIME_BASED) in the window.
    pub sliding_window_size: u32,
    /// Calls the window must hold before rates are evaluated. In a
    /// COUNT_BASED window it is capped at `sliding_window_size`, as in
    /// Resilience4j.
    pub minimum_number_of_calls: u32,
    /// Failure rate (percent) at or above which the breaker opens.
    pub failure_rate_threshold: f32,
    /// Slow-call rate (percent) at or above which the breaker opens.
    pub slow_call_rate_threshold: f32,
    /// A call taking longer than this is slow.
    #[serde(rename = "slowCallDurationThresholdMs", with = "millis")]
    pub slow_call_duration_threshold: Duration,
    /// How long the breaker stays OPEN before trial calls are allowed.
    #[serde(rename = "waitDurationInOpenStateMs", with = "millis")]
    pub wait_duration_in_open_state: Duration,
    /// Trial calls permitted in HALF_OPEN.
    pub permitted_number_of_calls_in_half_open_state: u32,
    /// Whether OPEN turns HALF_OPEN by itself after the wait, rather than
    /// on the next call attempt.
    pub automatic_transition_from_open_to_half_open_enabled: bool,
    /// Longest stay in HALF_OPEN before going back to OPEN; zero waits for
    /// all trial calls however long they take.
    #[serde(rename = "maxWaitDurationInHalfOpenStateMs", with = "millis")]
    pub max_wait_duration_in_half_open_state: Duration,
}

mod millis {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Default for BreakerConfig {
    /// Resilience4j's defaults.
    fn default() -> Self {
        BreakerConfig {
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold: Duration::from_secs(60),
            wait_duration_in_open_state: Duration::from_secs(60),
            permitted_number_of_calls_in_half_open_state: 10,
            automatic_transition_from_open_to_half_open_enabled: false,
            max_wait_duration_in_half_open_state: Duration::ZERO,
        }
    }
}

/// A configuration Resilience4j would refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid circuit breaker configuration: {0}")]
pub struct ConfigError(pub String);

impl BreakerConfig {
    /// Checks the ranges Resilience4j's builder checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pct = |v: f32, name: &str| {
            if v > 0.0 && v <= 100.0 {
                Ok(())
            } else {
                Err(ConfigError(format!("{name} must be in (0, 100], got {v}")))
            }
        };
        pct(self.failure_rate_threshold, "failureRateThreshold")?;
        pct(self.slow_call_rate_threshold, "slowCallRateThreshold")?;
        if self.sliding_window_size == 0 {
            return Err(ConfigError("slidingWindowSize must be at least 1".into()));
        }
        if self.sliding_window_type == SlidingWindowType::TimeBased
            && self.sliding_window_size > 3600
        {
            return Err(ConfigError(
                "a TIME_BASED slidingWindowSize is in seconds and at most 3600".into(),
            ));
        }
        if self.minimum_number_of_calls == 0 {
            return Err(ConfigError(
                "minimumNumberOfCalls must be at least 1".into(),
            ));
        }
        if self.permitted_number_of_calls_in_half_open_state == 0 {
            return Err(ConfigError(
                "permittedNumberOfCallsInHalfOpenState must be at least 1".into(),
            ));
        }
        if self.wait_duration_in_open_state < Duration::from_millis(1) {
            return Err(ConfigError(
                "waitDurationInOpenState must be at least 1ms".into(),
            ));
        }
        if self.slow_call_duration_threshold < Duration::from_millis(1) {
            return Err(ConfigError(
                "slowCallDurationThreshold must be at least 1ms".into(),
            ));
        }
        Ok(())
    }

    /// The minimum number of calls of the CLOSED window.
    fn closed_minimum(&self) -> u32 {
        match self.sliding_window_type {
            SlidingWindowType::CountBased => {
                self.minimum_number_of_calls.min(self.sliding_window_size)
            }
            SlidingWindowType::TimeBased => self.minimum_number_of_calls,
        }
    }
}

/// The breaker options of a service, from flags or `BREAKER_*` variables.
///
/// The defaults are the platform's, not Resilience4j's library defaults
/// ([`BreakerConfig::default`]): they are the seed's inventory breaker
/// (`slidingWindowSize=5`, `failureRateThreshold=50`,
/// `waitDurationInOpenState=5s`, `permittedNumberOfCallsInHalfOpenState=3`,
/// `automaticTransitionFromOpenToHalfOpenEnabled=true`; Resilience4j's
/// `minimumNumberOfCalls=100` is capped at the window's 5 there, so 5 is
/// written here), and a slow-call threshold of 1s instead of 60s because
/// the callers' own timeouts (3s) would make 60s meaningless.
#[derive(Debug, Clone, clap::Args)]
pub struct BreakerArgs {
    /// Circuit breaker: sliding window type (COUNT_BASED: last N calls; TIME_BASED: last N seconds)
    #[arg(long, env = "BREAKER_SLIDING_WINDOW_TYPE", value_enum, ignore_case = true, default_value_t = SlidingWindowType::CountBased)]
    pub breaker_sliding_window_type: SlidingWindowType,
    /// Circuit breaker: sliding window size (calls, or seconds when TIME_BASED)
    #[arg(long, env = "BREAKER_SLIDING_WINDOW_SIZE", default_value_t = 5)]
    pub breaker_sliding_window_size: u32,
    /// Circuit breaker: calls needed in the window before rates are evaluated
    #[arg(long, env = "BREAKER_MINIMUM_NUMBER_OF_CALLS", default_value_t = 5)]
    pub breaker_minimum_number_of_calls: u32,
    /// Circuit breaker: failure rate (%) that opens the breaker
    #[arg(long, env = "BREAKER_FAILURE_RATE_THRESHOLD", default_value_t = 50.0)]
    pub breaker_failure_rate_threshold: f32,
    /// Circuit breaker: slow-call rate (%) that opens the breaker
    #[arg(
        long,
        env = "BREAKER_SLOW_CALL_RATE_THRESHOLD",
        default_value_t = 100.0
    )]
    pub breaker_slow_call_rate_threshold: f32,
    /// Circuit breaker: a call longer than this is slow
    #[arg(long, env = "BREAKER_SLOW_CALL_DURATION_THRESHOLD", default_value = "1s", value_parser = parse_duration)]
    pub breaker_slow_call_duration_threshold: Duration,
    /// Circuit breaker: how long it stays open before trial calls
    #[arg(long, env = "BREAKER_WAIT_DURATION_IN_OPEN_STATE", default_value = "5s", value_parser = parse_duration)]
    pub breaker_wait_duration_in_open_state: Duration,
    /// Circuit breaker: trial calls permitted when half-open
    #[arg(
        long,
        env = "BREAKER_PERMITTED_NUMBER_OF_CALLS_IN_HALF_OPEN_STATE",
        default_value_t = 3
    )]
    pub breaker_permitted_number_of_calls_in_half_open_state: u32,
    /// Circuit breaker: turn half-open by itself after the wait (else on the next call)
    #[arg(long, env = "BREAKER_AUTOMATIC_TRANSITION_FROM_OPEN_TO_HALF_OPEN_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub breaker_automatic_transition_from_open_to_half_open_enabled: bool,
    /// Circuit breaker: longest stay in half-open before re-opening (0s = until all trial calls finish)
    #[arg(long, env = "BREAKER_MAX_WAIT_DURATION_IN_HALF_OPEN_STATE", default_value = "0s", value_parser = parse_duration)]
    pub breaker_max_wait_duration_in_half_open_state: Duration,
}

impl BreakerArgs {
    /// The configuration these options describe, validated.
    pub fn config(&self) -> Result<BreakerConfig, ConfigError> {
        let c = BreakerConfig {
            sliding_window_type: self.breaker_sliding_window_type,
            sliding_window_size: self.breaker_sliding_window_size,
            minimum_number_of_calls: self.breaker_minimum_number_of_calls,
            failure_rate_threshold: self.breaker_failure_rate_threshold,
            slow_call_rate_threshold: self.breaker_slow_call_rate_threshold,
            slow_call_duration_threshold: self.breaker_slow_call_duration_threshold,
            wait_duration_in_open_state: self.breaker_wait_duration_in_open_state,
            permitted_number_of_calls_in_half_open_state: self
                .breaker_permitted_number_of_calls_in_half_open_state,
            automatic_transition_from_open_to_half_open_enabled: self
                .breaker_automatic_transition_from_open_to_half_open_enabled,
            max_wait_duration_in_half_open_state: self.breaker_max_wait_duration_in_half_open_state,
        };
        c.validate()?;
        Ok(c)
    }
}

/// The verdict on a finished call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Neither (e.g. a cancelled call or an error that says nothing about
    /// the dependency): not recorded in the window.
    Ignored,
}

/// A call was refused because the breaker is OPEN, FORCED_OPEN or out of
/// HALF_OPEN trial slots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker '{name}' is {state} and does not permit further calls")]
pub struct NotPermitted {
    pub name: String,
    pub state: State,
}

/// The error of [`CircuitBreaker::call`].
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    #[error(transparent)]
    NotPermitted(NotPermitted),
    #[error(transparent)]
    Inner(E),
}

/// One bucket of aggregated outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    calls: u32,
    failed: u32,
    slow: u32,
    slow_failed: u32,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.calls += o.calls;
        self.failed += o.failed;
        self.slow += o.slow;
        self.slow_failed += o.slow_failed;
    }
    fn sub(&mut self, o: Counts) {
        self.calls -= o.calls;
        self.failed -= o.failed;
        self.slow -= o.slow;
        self.slow_failed -= o.slow_failed;
    }
    fn one(failed: bool, slow: bool) -> Counts {
        Counts {
            calls: 1,
            failed: failed as u32,
            slow: slow as u32,
            slow_failed: (failed && slow) as u32,
        }
    }
}

/// The sliding window of a CLOSED or HALF_OPEN breaker.
#[derive(Debug, Clone)]
enum Window {
    /// The last `size` outcomes, with running totals.
    Count {
        size: usize,
        ring: VecDeque<Counts>,
        total: Counts,
    },
    /// One bucket per epoch second, `buckets.len()` seconds long
    /// (Resilience4j's partial aggregations).
    Time {
        buckets: Vec<(u64, Counts)>,
        head_second: u64,
        total: Counts,
    },
}

impl Window {
    fn count(size: u32) -> Window {
        Window::Count {
            size: size as usize,
            ring: VecDeque::with_capacity(size as usize),
            total: Counts::default(),
        }
    }

    fn time(seconds: u32, now_ms: u64) -> Window {
        Window::Time {
            buckets: vec![(0, Counts::default()); seconds as usize],
            head_second: now_ms / 1000,
            total: Counts::default(),
        }
    }

    /// Drops the buckets that fell out of a TIME_BASED window.
    fn advance(&mut self, now_ms: u64) {
        if let Window::Time {
            buckets,
            head_second,
            total,
        } = self
        {
            let now_s = now_ms / 1000;
            if now_s <= *head_second {
                return;
            }
            let n = buckets.len() as u64;
            let steps = (now_s - *head_second).min(n);
            for k in 1..=steps {
                let idx = ((*head_second + k) % n) as usize;
                total.sub(buckets[idx].1);
                buckets[idx] = (*head_second + k, Counts::default());
            }
            *head_second = now_s;
        }
    }

    fn record(&mut self, c: Counts, now_ms: u64) {
        match self {
            Window::Count { size, ring, total } => {
                if ring.len() == *size
                    && let Some(old) = ring.pop_front()
                {
                    total.sub(old);
                }
                ring.push_back(c);
                total.add(c);
            }
            Window::Time { .. } => {
                self.advance(now_ms);
                if let Window::Time {
                    buckets,
                    head_second,
                    total,
                } = self
                {
                    let idx = (*head_second % buckets.len() as u64) as usize;
                    buckets[idx].0 = *head_second;
                    buckets[idx].1.add(c);
                    total.add(c);
                }
            }
        }
    }

    fn total(&mut self, now_ms: u64) -> Counts {
        self.advance(now_ms);
        match self {
            Window::Count { total, .. } | Window::Time { total, .. } => *total,
        }
    }
}

/// One state change, as `/admin/breakers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// RFC 3339 time of the transition.
    pub at: String,
    /// The same, in milliseconds since the epoch.
    pub at_ms: u64,
    /// Why it happened (`failure rate 60.0% >= 50.0%`, `wait elapsed`, ...).
    pub reason: String,
}

/// The window's figures, with Resilience4j's metric names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowMetrics {
    /// Percent of failed calls in the window; -1 until the minimum number of calls is reached.
    pub failure_rate: f32,
    /// Percent of slow calls in the window; -1 until the minimum number of calls is reached.
    pub slow_call_rate: f32,
    pub number_of_buffered_calls: u32,
    pub number_of_failed_calls: u32,
    pub number_of_successful_calls: u32,
    pub number_of_slow_calls: u32,
    pub number_of_slow_successful_calls: u32,
    pub number_of_slow_failed_calls: u32,
    /// Calls refused since the breaker was created.
    pub number_of_not_permitted_calls: u64,
}

/// Counters since the breaker was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub successful: u64,
    pub failed: u64,
    pub slow_successful: u64,
    pub slow_failed: u64,
    pub ignored: u64,
    pub not_permitted: u64,
}

/// Everything about one breaker, for `/admin/breakers` and the dashboard
/// (`Deserialize` so the platform CLI reads it with the same type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub name: String,
    pub state: State,
    /// When the current state was entered (RFC 3339).
    pub state_since: String,
    pub config: BreakerConfig,
    pub metrics: WindowMetrics,
    pub totals: Totals,
    /// HALF_OPEN only: trial calls still allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_permits_left: Option<u32>,
    /// OPEN only: milliseconds until trial calls are allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_wait_ms: Option<u64>,
    /// Transitions by `FROM->TO`, since the breaker was created.
    pub transition_counts: BTreeMap<String, u64>,
    /// The latest transitions, oldest first (at most [`TRANSITION_HISTORY`]).
    pub transitions: Vec<Transition>,
}

/// The mutable part of a breaker, behind one mutex.
#[derive(Debug)]
struct Machine {
    state: State,
    /// When the current state was entered (clock ms).
    since_ms: u64,
    /// Bumped at every transition; a permit records only into the
    /// generation that issued it.
    generation: u64,
    window: Window,
    /// HALF_OPEN: trial permits not handed out yet.
    permits_left: u32,
    /// HALF_OPEN: permits handed out and not yet settled.
    in_trial: u32,
    /// OPEN: when trial calls become allowed (clock ms).
    open_until_ms: u64,
    history: VecDeque<Transition>,
    transition_counts: BTreeMap<(State, State), u64>,
}

/// A circuit breaker; cheap to clone (clones share the state).
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: BreakerConfig,
    clock: Clock,
    machine: Mutex<Machine>,
    successful: AtomicU64,
    failed: AtomicU64,
    slow_successful: AtomicU64,
    slow_failed: AtomicU64,
    ignored: AtomicU64,
    not_permitted: AtomicU64,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.inner.machine.lock().state)
            .finish_non_exhaustive()
    }
}

/// Permission for one call; settle it with [`Permit::success`],
/// [`Permit::failure`], [`Permit::ignore`] or [`Permit::record`].
#[derive(Debug)]
#[must_use = "a permit must be settled with success(), failure() or ignore()"]
pub struct Permit {
    breaker: CircuitBreaker,
    started_ms: u64,
    generation: u64,
    settled: bool,
}

impl Permit {
    /// The call succeeded (slow if it took longer than the threshold).
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The call failed.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// The call's outcome says nothing about the dependency.
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }

    /// Settles the permit with `outcome`.
    pub fn record(mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker
            .on_result(self.generation, self.started_ms, Some(outcome));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker
                .on_result(self.generation, self.started_ms, None);
        }
    }
}

impl CircuitBreaker {
    /// A CLOSED breaker on the system clock. `config` should be validated.
    pub fn new(name: &str, config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::with_clock(name, config, Clock::System)
    }

    /// A CLOSED breaker reading time from `clock` (tests use a manual one).
    pub fn with_clock(name: &str, config: BreakerConfig, clock: Clock) -> CircuitBreaker {
        let now = clock.now_millis();
        let window = closed_window(&config, now);
        CircuitBreaker {
            inner: Arc::new(Inner {
                name: name.to_string(),
                machine: Mutex::new(Machine {
                    state: State::Closed,
                    since_ms: now,
                    generation: 0,
                    window,
                    permits_left: 0,
                    in_trial: 0,
                    open_until_ms: 0,
                    history: VecDeque::new(),
                    transition_counts: BTreeMap::new(),
                }),
                config,
                clock,
                successful: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                slow_successful: AtomicU64::new(0),
                slow_failed: AtomicU64::new(0),
                ignored: AtomicU64::new(0),
                not_permitted: AtomicU64::new(0),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// The current state (after any time-driven transition that is due).
    pub fn state(&self) -> State {
        let now = self.inner.clock.now_millis();
        let mut m = self.inner.machine.lock();
        self.apply_due(&mut m, now, false);
        m.state
    }

    /// Asks to make a call. Refused (and counted) when OPEN, FORCED_OPEN,
    /// or HALF_OPEN with every trial slot taken.
    pub fn try_acquire(&self) -> Result<Permit, NotPermitted> {
        let now = self.inner.clock.now_millis();
        let mut m = self.inner.machine.lock();
        self.apply_due(&mut m, now, true);
        let permitted = match m.state {
            State::Closed | State::Disabled => true,
            State::Open | State::ForcedOpen => false,
            State::HalfOpen => {
                if m.permits_left > 0 {
                    m.permits_left -= 1;
                    m.in_trial += 1;
                    true
                } else {
                    false
                }
            }
        };
        if permitted {
            Ok(Permit {
                breaker: self.clone(),
                started_ms: now,
                generation: m.generation,
                settled: false,
            })
        } else {
            self.inner.not_permitted.fetch_add(1, Ordering::Relaxed);
            Err(NotPermitted {
                name: self.inner.name.clone(),
                state: m.state,
            })
        }
    }

    /// Runs `fut` if permitted; `Ok` is a success and `Err` a failure.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(fut, |r| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .await
    }

    /// Runs `fut` if permitted and records what `classify` says of its result.
    pub async fn call_classified<T, E, F, C>(&self, fut: F, classify: C) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        let permit = self.try_acquire().map_err(CallError::NotPermitted)?;
        let result = fut.await;
        permit.record(classify(&result));
        result.map_err(CallError::Inner)
    }

    /// Operator transition to CLOSED (fresh window), from any state.
    pub fn transition_to_closed(&self) {
        self.force(State::Closed, "operator request");
    }

    /// Operator transition to OPEN (waits `waitDurationInOpenState`).
    pub fn transition_to_open(&self) {
        self.force(State::Open, "operator request");
    }

    /// Operator transition to HALF_OPEN.
    pub fn transition_to_half_open(&self) {
        self.force(State::HalfOpen, "operator request");
    }

    /// Operator transition to DISABLED: every call permitted, nothing recorded.
    pub fn transition_to_disabled(&self) {
        self.force(State::Disabled, "operator request");
    }

    /// Operator transition to FORCED_OPEN: no call permitted until another operator transition.
    pub fn transition_to_forced_open(&self) {
        self.force(State::ForcedOpen, "operator request");
    }

    /// Resilience4j's `reset()`: back to CLOSED with an empty window.
    pub fn reset(&self) {
        self.force(State::Closed, "reset");
    }

    fn force(&self, to: State, reason: &str) {
        let now = self.inner.clock.now_millis();
        let mut m = self.inner.machine.lock();
        self.apply_due(&mut m, now, false);
        self.transition(&mut m, to, now, reason.to_string());
    }

    /// Everything about the breaker, for `/admin/breakers`.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.inner.clock.now_millis();
        let mut m = self.inner.machine.lock();
        self.apply_due(&mut m, now, false);
        let metrics = self.window_metrics(&mut m, now);
        Snapshot {
            name: self.inner.name.clone(),
            state: m.state,
            state_since: rfc3339(m.since_ms),
            config: self.inner.config.clone(),
            metrics,
            totals: self.totals(),
            half_open_permits_left: (m.state == State::HalfOpen).then_some(m.permits_left),
            remaining_wait_ms: (m.state == State::Open)
                .then(|| m.open_until_ms.saturating_sub(now)),
            transition_counts: m
                .transition_counts
                .iter()
                .map(|((f, t), n)| (format!("{f}->{t}"), *n))
                .collect(),
            transitions: m.history.iter().cloned().collect(),
        }
    }

    /// Counters since creation.
    pub fn totals(&self) -> Totals {
        let i = &self.inner;
        Totals {
            successful: i.successful.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
            slow_successful: i.slow_successful.load(Ordering::Relaxed),
            slow_failed: i.slow_failed.load(Ordering::Relaxed),
            ignored: i.ignored.load(Ordering::Relaxed),
            not_permitted: i.not_permitted.load(Ordering::Relaxed),
        }
    }

    fn window_metrics(&self, m: &mut Machine, now: u64) -> WindowMetrics {
        let t = m.window.total(now);
        let minimum = self.minimum_for(m.state);
        let (fr, sr) = rates(t, minimum);
        WindowMetrics {
            failure_rate: fr,
            slow_call_rate: sr,
            number_of_buffered_calls: t.calls,
            number_of_failed_calls: t.failed,
            number_of_successful_calls: t.calls - t.failed,
            number_of_slow_calls: t.slow,
            number_of_slow_successful_calls: t.slow - t.slow_failed,
            number_of_slow_failed_calls: t.slow_failed,
            number_of_not_permitted_calls: self.inner.not_permitted.load(Ordering::Relaxed),
        }
    }

    fn minimum_for(&self, state: State) -> u32 {
        match state {
            State::HalfOpen => {
                self.inner
                    .config
                    .permitted_number_of_calls_in_half_open_state
            }
            _ => self.inner.config.closed_minimum(),
        }
    }

    /// Settles a permit: `None` means dropped unsettled.
    fn on_result(&self, generation: u64, started_ms: u64, outcome: Option<Outcome>) {
        let now = self.inner.clock.now_millis();
        let elapsed = Duration::from_millis(now.saturating_sub(started_ms));
        let slow = elapsed > self.inner.config.slow_call_duration_threshold;
        let i = &self.inner;
        match outcome {
            Some(Outcome::Success) if slow => i.slow_successful.fetch_add(1, Ordering::Relaxed),
            Some(Outcome::Success) => i.successful.fetch_add(1, Ordering::Relaxed),
            Some(Outcome::Failure) if slow => i.slow_failed.fetch_add(1, Ordering::Relaxed),
            Some(Outcome::Failure) => i.failed.fetch_add(1, Ordering::Relaxed),
            Some(Outcome::Ignored) => i.ignored.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        let mut m = i.machine.lock();
        self.apply_due(&mut m, now, false);
        if m.generation != generation {
            return;
        }
        let failed = match outcome {
            Some(Outcome::Success) => false,
            Some(Outcome::Failure) => true,
            Some(Outcome::Ignored) | None => {
                // Nothing to record; a HALF_OPEN trial slot goes back.
                if m.state == State::HalfOpen {
                    m.in_trial = m.in_trial.saturating_sub(1);
                    m.permits_left += 1;
                }
                return;
            }
        };
        match m.state {
            State::Closed => {
                m.window.record(Counts::one(failed, slow), now);
                if let Some(reason) = self.exceeded(&mut m, now) {
                    self.transition(&mut m, State::Open, now, reason);
                }
            }
            State::HalfOpen => {
                m.in_trial = m.in_trial.saturating_sub(1);
                m.window.record(Counts::one(failed, slow), now);
                let t = m.window.total(now);
                if t.calls >= i.config.permitted_number_of_calls_in_half_open_state {
                    match self.exceeded(&mut m, now) {
                        Some(reason) => self.transition(&mut m, State::Open, now, reason),
                        None => {
                            let (fr, sr) = rates(t, t.calls);
                            let reason = format!(
                                "{} trial calls: failure rate {fr:.1}%, slow-call rate {sr:.1}%, below thresholds",
                                t.calls
                            );
                            self.transition(&mut m, State::Closed, now, reason)
                        }
                    }
                }
            }
            // OPEN and FORCED_OPEN issue no permits of their own generation;
            // DISABLED records nothing.
            State::Open | State::ForcedOpen | State::Disabled => {}
        }
    }

    /// Why the window is above a threshold, if it is (and holds enough calls).
    fn exceeded(&self, m: &mut Machine, now: u64) -> Option<String> {
        let t = m.window.total(now);
        let c = &self.inner.config;
        let minimum = self.minimum_for(m.state);
        if t.calls < minimum {
            return None;
        }
        let (fr, sr) = rates(t, minimum);
        if fr >= c.failure_rate_threshold {
            Some(format!(
                "failure rate {fr:.1}% >= {:.1}% over {} calls",
                c.failure_rate_threshold, t.calls
            ))
        } else if sr >= c.slow_call_rate_threshold {
            Some(format!(
                "slow-call rate {sr:.1}% >= {:.1}% over {} calls",
                c.slow_call_rate_threshold, t.calls
            ))
        } else {
            None
        }
    }

    /// Applies the time-driven transitions that are due at `now`. With
    /// `attempt`, a call is being attempted, which moves a non-automatic
    /// OPEN breaker whose wait elapsed to HALF_OPEN.
    fn apply_due(&self, m: &mut Machine, now: u64, attempt: bool) {
        let c = &self.inner.config;
        // Each step moves `since_ms` forward by at least 1 ms and never past
        // `now` (validate() requires a wait of at least 1 ms), so this ends.
        loop {
            match m.state {
                State::Open
                    if now >= m.open_until_ms
                        && (attempt || c.automatic_transition_from_open_to_half_open_enabled) =>
                {
                    let at = if c.automatic_transition_from_open_to_half_open_enabled {
                        m.open_until_ms
                    } else {
                        now
                    };
                    self.transition(
                        m,
                        State::HalfOpen,
                        at,
                        "wait duration in OPEN elapsed".into(),
                    );
                }
                State::HalfOpen
                    if !c.max_wait_duration_in_half_open_state.is_zero()
                        && now
                            >= m.since_ms
                                + c.max_wait_duration_in_half_open_state.as_millis() as u64 =>
                {
                    let at = m.since_ms + c.max_wait_duration_in_half_open_state.as_millis() as u64;
                    self.transition(
                        m,
                        State::Open,
                        at,
                        "max wait duration in HALF_OPEN elapsed".into(),
                    );
                }
                _ => return,
            }
        }
    }

    fn transition(&self, m: &mut Machine, to: State, at: u64, reason: String) {
        let from = m.state;
        let c = &self.inner.config;
        m.state = to;
        m.since_ms = at;
        m.generation += 1;
        m.permits_left = 0;
        m.in_trial = 0;
        match to {
            State::Closed => m.window = closed_window(c, at),
            State::HalfOpen => {
                m.window = Window::count(c.permitted_number_of_calls_in_half_open_state);
                m.permits_left = c.permitted_number_of_calls_in_half_open_state;
            }
            State::Open => {
                m.open_until_ms = at + c.wait_duration_in_open_state.as_millis() as u64;
            }
            State::Disabled | State::ForcedOpen => {
                m.window = closed_window(c, at);
            }
        }
        *m.transition_counts.entry((from, to)).or_insert(0) += 1;
        if m.history.len() == TRANSITION_HISTORY {
            m.history.pop_front();
        }
        tracing::warn!(breaker = %self.inner.name, %from, %to, %reason, "circuit breaker state transition");
        m.history.push_back(Transition {
            from,
            to,
            at: rfc3339(at),
            at_ms: at,
            reason,
        });
    }
}

fn closed_window(c: &BreakerConfig, now: u64) -> Window {
    match c.sliding_window_type {
        SlidingWindowType::CountBased => Window::count(c.sliding_window_size),
        SlidingWindowType::TimeBased => Window::time(c.sliding_window_size, now),
    }
}

/// Failure and slow-call rates in percent, -1 below `minimum` calls.
fn rates(t: Counts, minimum: u32) -> (f32, f32) {
    if t.calls == 0 || t.calls < minimum {
        return (-1.0, -1.0);
    }
    let n = t.calls as f32;
    (t.failed as f32 * 100.0 / n, t.slow as f32 * 100.0 / n)
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A service's breakers, for `/admin/breakers` and `/metrics`.
#[derive(Clone, Default)]
pub struct BreakerRegistry {
    /// Written at start-up when breakers are created, read by every scrape
    /// and admin request.
    breakers: Arc<RwLock<Vec<CircuitBreaker>>>,
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.breakers.read().iter().map(|b| b.name().to_string()))
            .finish()
    }
}

impl BreakerRegistry {
    /// An empty registry whose breakers appear in `metrics`.
    pub fn new(metrics: &Metrics) -> BreakerRegistry {
        let r = BreakerRegistry::default();
        metrics.register_collector(Box::new(BreakerCollector(r.clone())));
        r
    }

    /// Adds a breaker (replacing one of the same name).
    pub fn add(&self, breaker: CircuitBreaker) {
        let mut list = self.breakers.write();
        list.retain(|b| b.name() != breaker.name());
        list.push(breaker);
    }

    /// The breaker called `name`.
    pub fn get(&self, name: &str) -> Option<CircuitBreaker> {
        self.breakers
            .read()
            .iter()
            .find(|b| b.name() == name)
            .cloned()
    }

    /// Snapshots of every breaker, by name.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let mut v: Vec<Snapshot> = self.breakers.read().iter().map(|b| b.snapshot()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// What `POST /admin/breakers/{name}/state` accepts.
#[derive(Debug, Clone, Deserialize)]
pub struct StateChange {
    /// `CLOSED`, `OPEN`, `HALF_OPEN`, `DISABLED` or `FORCED_OPEN`.
    pub state: State,
}

/// `GET /breakers`, `GET /breakers/{name}` and `POST /breakers/{name}/state`,
/// to be merged into a service's admin router (so they sit under `/admin`,
/// behind the admin token).
pub fn admin_router(registry: BreakerRegistry) -> Router {
    Router::new()
        .route("/breakers", get(list_breakers))
        .route("/breakers/{name}", get(one_breaker))
        .route("/breakers/{name}/state", post(change_state))
        .with_state(registry)
}

async fn list_breakers(AxumState(r): AxumState<BreakerRegistry>) -> Json<Vec<Snapshot>> {
    Json(r.snapshots())
}

async fn one_breaker(
    AxumState(r): AxumState<BreakerRegistry>,
    Path(name): Path<String>,
) -> Result<Json<Snapshot>, Problem> {
    r.get(&name)
        .map(|b| Json(b.snapshot()))
        .ok_or_else(|| Problem::not_found(format!("no circuit breaker named '{name}'")))
}

async fn change_state(
    AxumState(r): AxumState<BreakerRegistry>,
    Path(name): Path<String>,
    Json(change): Json<StateChange>,
) -> Result<Json<Snapshot>, Problem> {
    let b = r
        .get(&name)
        .ok_or_else(|| Problem::not_found(format!("no circuit breaker named '{name}'")))?;
    match change.state {
        State::Closed => b.transition_to_closed(),
        State::Open => b.transition_to_open(),
        State::HalfOpen => b.transition_to_half_open(),
        State::Disabled => b.transition_to_disabled(),
        State::ForcedOpen => b.transition_to_forced_open(),
    }
    Ok(Json(b.snapshot()))
}

/// Encodes every breaker at scrape time with Resilience4j's metric names.
#[derive(Debug)]
struct BreakerCollector(BreakerRegistry);

impl Collector for BreakerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snaps = self.0.snapshots();
        if snaps.is_empty() {
            return Ok(());
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_state",
                "1 for the breaker's current state, 0 for the others",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &snaps {
                for st in State::ALL {
                    let g = ConstGauge::new((s.state == st) as i64);
                    g.encode(
                        e.encode_family(&[("name", s.name.as_str()), ("state", st.label())])?,
                    )?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_calls",
                "Calls by outcome since start (successful, failed, ignored, not_permitted; slow ones included in successful/failed)",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &snaps {
                let t = s.totals;
                for (kind, v) in [
                    ("successful", t.successful + t.slow_successful),
                    ("failed", t.failed + t.slow_failed),
                    ("ignored", t.ignored),
                    ("not_permitted", t.not_permitted),
                ] {
                    ConstCounter::new(v)
                        .encode(e.encode_family(&[("name", s.name.as_str()), ("kind", kind)])?)?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_slow_calls",
                "Slow calls since start, by outcome",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &snaps {
                for (kind, v) in [
                    ("successful", s.totals.slow_successful),
                    ("failed", s.totals.slow_failed),
                ] {
                    ConstCounter::new(v)
                        .encode(e.encode_family(&[("name", s.name.as_str()), ("kind", kind)])?)?;
                }
            }
        }
        for (metric, help, pick) in [
            (
                "resilience4j_circuitbreaker_failure_rate",
                "Failure rate of the sliding window in percent (-1 below the minimum number of calls)",
                (|m: &WindowMetrics| m.failure_rate) as fn(&WindowMetrics) -> f32,
            ),
            (
                "resilience4j_circuitbreaker_slow_call_rate",
                "Slow-call rate of the sliding window in percent (-1 below the minimum number of calls)",
                |m: &WindowMetrics| m.slow_call_rate,
            ),
        ] {
            let mut e = encoder.encode_descriptor(
                metric,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &snaps {
                ConstGauge::new(pick(&s.metrics) as f64)
                    .encode(e.encode_family(&[("name", s.name.as_str())])?)?;
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_buffered_calls",
                "Calls in the sliding window, by outcome",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &snaps {
                for (kind, v) in [
                    ("successful", s.metrics.number_of_successful_calls),
                    ("failed", s.metrics.number_of_failed_calls),
                ] {
                    ConstGauge::new(v as i64)
                        .encode(e.encode_family(&[("name", s.name.as_str()), ("kind", kind)])?)?;
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "resilience4j_circuitbreaker_transitions",
                "State transitions since start",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &snaps {
                for (pair, n) in &s.transition_counts {
                    let (from, to) = pair.split_once("->").unwrap_or((pair.as_str(), ""));
                    ConstCounter::new(*n).encode(e.encode_family(&[
                        ("name", s.name.as_str()),
                        ("from", from),
                        ("to", to),
                    ])?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 4,
            minimum_number_of_calls: 4,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold: Duration::from_millis(100),
            wait_duration_in_open_state: Duration::from_secs(5),
            permitted_number_of_calls_in_half_open_state: 2,
            automatic_transition_from_open_to_half_open_enabled: false,
            max_wait_duration_in_half_open_state: Duration::ZERO,
        }
    }

    fn breaker(c: BreakerConfig) -> (CircuitBreaker, Clock) {
        c.validate().unwrap();
        let clock = Clock::manual(1_700_000_000_000);
        (CircuitBreaker::with_clock("inv", c, clock.clone()), clock)
    }

    fn ok(b: &CircuitBreaker) {
        b.try_acquire().unwrap().success();
    }
    fn fail(b: &CircuitBreaker) {
        b.try_acquire().unwrap().failure();
    }

    /// Below the minimum number of calls nothing opens; at the failure-rate threshold the breaker opens.
    #[test]
    fn closed_to_open_on_failure_rate() {
        let (b, _) = breaker(cfg());
        fail(&b);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), State::Closed, "3 calls < minimum of 4");
        assert_eq!(b.snapshot().metrics.failure_rate, -1.0);
        ok(&b);
        // 3 of 4 failed = 75% >= 50%
        assert_eq!(b.state(), State::Open);
        let s = b.snapshot();
        assert_eq!(s.transitions.len(), 1);
        assert_eq!(s.transitions[0].from, State::Closed);
        assert!(
            s.transitions[0].reason.contains("failure rate 75.0%"),
            "{:?}",
            s.transitions
        );
    }

    /// A snapshot read back from its `/admin/breakers` JSON is the same snapshot (the CLI
    /// reads the endpoint with this type).
    #[test]
    fn snapshot_json_round_trips() {
        let (b, _) = breaker(cfg());
        for _ in 0..4 {
            fail(&b);
        }
        let s = b.snapshot();
        assert_eq!(s.state, State::Open);
        let json = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    /// Exactly the threshold opens (>=), below it does not; the count window forgets old calls.
    #[test]
    fn threshold_is_inclusive_and_window_slides() {
        let (b, _) = breaker(cfg());
        fail(&b);
        ok(&b);
        ok(&b);
        ok(&b);
        assert_eq!(b.state(), State::Closed, "25% < 50%");
        fail(&b); // window: ok ok ok fail -> 25%
        assert_eq!(b.state(), State::Closed);
        fail(&b); // window: ok ok fail fail -> 50%
        assert_eq!(b.state(), State::Open);
    }

    /// OPEN refuses calls and counts them; without automatic transition it turns HALF_OPEN only on the next attempt after the wait.
    #[test]
    fn open_refuses_then_half_open_on_attempt() {
        let (b, clock) = breaker(cfg());
        for _ in 0..4 {
            fail(&b);
        }
        assert_eq!(b.state(), State::Open);
        let e = b.try_acquire().unwrap_err();
        assert_eq!(e.state, State::Open);
        assert_eq!(b.totals().not_permitted, 1);
        clock.advance(Duration::from_millis(4_999));
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_millis(10_000));
        assert_eq!(
            b.state(),
            State::Open,
            "observing does not transition without automatic mode"
        );
        let p = b.try_acquire().unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        p.success();
        let s = b.snapshot();
        let last = s.transitions.last().unwrap();
        assert_eq!((last.from, last.to), (State::Open, State::HalfOpen));
        assert_eq!(s.metrics.number_of_not_permitted_calls, 2);
    }

    /// With automatic transition, OPEN turns HALF_OPEN when the wait elapses, stamped at that instant.
    #[test]
    fn automatic_transition_is_stamped_when_due() {
        let mut c = cfg();
        c.automatic_transition_from_open_to_half_open_enabled = true;
        let (b, clock) = breaker(c);
        for _ in 0..4 {
            fail(&b);
        }
        let opened = b.snapshot().transitions[0].at_ms;
        clock.advance(Duration::from_secs(60));
        assert_eq!(b.state(), State::HalfOpen);
        let t = b.snapshot().transitions;
        assert_eq!(t[1].at_ms, opened + 5_000);
        assert_eq!(b.snapshot().half_open_permits_left, Some(2));
    }

    /// HALF_OPEN permits exactly the configured trial calls; successful trials close the breaker.
    #[test]
    fn half_open_to_closed_after_successful_trials() {
        let (b, clock) = breaker(cfg());
        for _ in 0..4 {
            fail(&b);
        }
        clock.advance(Duration::from_secs(5));
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert_eq!(b.try_acquire().unwrap_err().state, State::HalfOpen);
        p1.success();
        assert_eq!(b.state(), State::HalfOpen, "one trial still out");
        p2.success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(
            b.snapshot().metrics.number_of_buffered_calls,
            0,
            "fresh window"
        );
    }

    /// Failing trials send HALF_OPEN back to OPEN for another full wait.
    #[test]
    fn half_open_to_open_after_failed_trials() {
        let (b, clock) = breaker(cfg());
        for _ in 0..4 {
            fail(&b);
        }
        clock.advance(Duration::from_secs(5));
        ok(&b);
        fail(&b); // 1 of 2 = 50% >= 50%
        assert_eq!(b.state(), State::Open);
        clock.advance(Duration::from_millis(4_000));
        assert!(b.try_acquire().is_err());
        let counts = b.snapshot().transition_counts;
        assert_eq!(counts["HALF_OPEN->OPEN"], 1);
        assert_eq!(counts["CLOSED->OPEN"], 1);
        assert_eq!(counts["OPEN->HALF_OPEN"], 1);
    }

    /// A dropped or ignored trial permit gives its slot back and decides nothing.
    #[test]
    fn dropped_and_ignored_permits_return_trial_slots() {
        let (b, clock) = breaker(cfg());
        for _ in 0..4 {
            fail(&b);
        }
        clock.advance(Duration::from_secs(5));
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        drop(p1);
        p2.ignore();
        assert_eq!(b.snapshot().half_open_permits_left, Some(2));
        assert_eq!(b.totals().ignored, 1);
        ok(&b);
        ok(&b);
        assert_eq!(b.state(), State::Closed);
    }

    /// Slow calls are counted (slow successes too) and the slow-call rate opens the breaker.
    #[test]
    fn slow_calls_open_the_breaker() {
        let mut c = cfg();
        c.slow_call_rate_threshold = 50.0;
        let (b, clock) = breaker(c);
        for slow in [true, false, true, false] {
            let p = b.try_acquire().unwrap();
            if slow {
                clock.advance(Duration::from_millis(101));
            } else {
                clock.advance(Duration::from_millis(100)); // exactly the threshold is not slow
            }
            p.success();
        }
        assert_eq!(b.state(), State::Open);
        let s = b.snapshot();
        assert!(
            s.transitions[0].reason.contains("slow-call rate 50.0%"),
            "{:?}",
            s.transitions
        );
        assert_eq!(s.totals.slow_successful, 2);
        assert_eq!(s.totals.successful, 2);
    }

    /// maxWaitDurationInHalfOpenState sends a HALF_OPEN breaker with unfinished trials back to OPEN.
    #[test]
    fn half_open_max_wait() {
        let mut c = cfg();
        c.max_wait_duration_in_half_open_state = Duration::from_secs(2);
        let (b, clock) = breaker(c);
        for _ in 0..4 {
            fail(&b);
        }
        clock.advance(Duration::from_secs(5));
        let stuck = b.try_acquire().unwrap();
        clock.advance(Duration::from_secs(2));
        assert_eq!(b.state(), State::Open);
        stuck.success(); // belongs to an older generation: recorded in totals only
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.totals().slow_successful, 1);
    }

    /// TIME_BASED: only the calls of the last N seconds count; older buckets expire.
    #[test]
    fn time_based_window() {
        let mut c = cfg();
        c.sliding_window_type = SlidingWindowType::TimeBased;
        c.sliding_window_size = 10; // seconds
        c.minimum_number_of_calls = 4;
        let (b, clock) = breaker(c);
        fail(&b);
        fail(&b);
        fail(&b);
        clock.advance(Duration::from_secs(11)); // those three expire
        assert_eq!(b.snapshot().metrics.number_of_buffered_calls, 0);
        ok(&b);
        ok(&b);
        clock.advance(Duration::from_secs(3));
        fail(&b);
        assert_eq!(b.state(), State::Closed, "3 calls < minimum");
        clock.advance(Duration::from_secs(3));
        fail(&b); // 2 of 4 within 10 s = 50%
        assert_eq!(b.state(), State::Open);
        assert!(b.snapshot().transitions[0].reason.contains("over 4 calls"));
    }

    /// TIME_BASED minimum is not capped by the window size (it is seconds, not calls).
    #[test]
    fn time_based_minimum_not_capped() {
        let mut c = cfg();
        c.sliding_window_type = SlidingWindowType::TimeBased;
        c.sliding_window_size = 2;
        c.minimum_number_of_calls = 6;
        let (b, _) = breaker(c);
        for _ in 0..5 {
            fail(&b);
        }
        assert_eq!(b.state(), State::Closed);
        fail(&b);
        assert_eq!(b.state(), State::Open);
    }

    /// COUNT_BASED minimum above the window size is capped at the size, as in Resilience4j.
    #[test]
    fn count_based_minimum_capped() {
        let mut c = cfg();
        c.minimum_number_of_calls = 100;
        let (b, _) = breaker(c);
        for _ in 0..4 {
            fail(&b);
        }
        assert_eq!(b.state(), State::Open);
    }

    /// DISABLED permits everything and records nothing; FORCED_OPEN permits nothing, even after the wait.
    #[test]
    fn operator_states() {
        let (b, clock) = breaker(cfg());
        b.transition_to_disabled();
        for _ in 0..10 {
            fail(&b);
        }
        assert_eq!(b.state(), State::Disabled);
        b.transition_to_forced_open();
        clock.advance(Duration::from_secs(3600));
        assert_eq!(b.try_acquire().unwrap_err().state, State::ForcedOpen);
        b.reset();
        assert_eq!(b.state(), State::Closed);
        ok(&b);
    }

    /// `call` records Ok as success and Err as failure, and refuses without running the future when open.
    #[tokio::test]
    async fn call_wraps_futures() {
        let (b, _) = breaker(cfg());
        for _ in 0..4 {
            let r: Result<(), CallError<&str>> = b.call(async { Err("down") }).await;
            assert!(matches!(r, Err(CallError::Inner("down"))));
        }
        let ran = std::sync::atomic::AtomicBool::new(false);
        let r: Result<(), CallError<&str>> = b
            .call(async {
                ran.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(r, Err(CallError::NotPermitted(_))));
        assert!(!ran.load(Ordering::SeqCst));
        let v: Result<u8, CallError<()>> = {
            b.reset();
            b.call(async { Ok(7) }).await
        };
        assert_eq!(v.unwrap(), 7);
    }

    /// The transition history is bounded.
    #[test]
    fn history_is_bounded() {
        let (b, _) = breaker(cfg());
        for _ in 0..(TRANSITION_HISTORY + 20) {
            b.transition_to_forced_open();
        }
        let s = b.snapshot();
        assert_eq!(s.transitions.len(), TRANSITION_HISTORY);
        assert_eq!(
            s.transition_counts["FORCED_OPEN->FORCED_OPEN"],
            TRANSITION_HISTORY as u64 + 19
        );
    }

    /// Invalid values are refused like Resilience4j's builder refuses them; the flags parse with their defaults.
    #[test]
    fn config_validation_and_flags() {
        assert!(BreakerConfig::default().validate().is_ok());
        let c = BreakerConfig {
            failure_rate_threshold: 0.0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = BreakerConfig {
            permitted_number_of_calls_in_half_open_state: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());

        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            b: BreakerArgs,
        }
        let t = <T as clap::Parser>::try_parse_from(["x"]).unwrap();
        let c = t.b.config().unwrap();
        assert_eq!(c.sliding_window_size, 5);
        assert_eq!(c.wait_duration_in_open_state, Duration::from_secs(5));
        assert!(c.automatic_transition_from_open_to_half_open_enabled);
        let t = <T as clap::Parser>::try_parse_from([
            "x",
            "--breaker-sliding-window-type",
            "time_based",
            "--breaker-automatic-transition-from-open-to-half-open-enabled",
            "false",
            "--breaker-wait-duration-in-open-state",
            "250ms",
        ])
        .unwrap();
        let c = t.b.config().unwrap();
        assert_eq!(c.sliding_window_type, SlidingWindowType::TimeBased);
        assert!(!c.automatic_transition_from_open_to_half_open_enabled);
        assert_eq!(c.wait_duration_in_open_state, Duration::from_millis(250));
    }

    /// The registry exports Resilience4j-named metrics, including the state gauge and transitions.
    #[test]
    fn metrics_export() {
        let m = Metrics::new();
        let r = BreakerRegistry::new(&m);
        let (b, _) = breaker(cfg());
        r.add(b.clone());
        for _ in 0..4 {
            fail(&b);
        }
        let _ = b.try_acquire();
        let text = m.render();
        for needle in [
            r#"resilience4j_circuitbreaker_state{name="inv",state="open"} 1"#,
            r#"resilience4j_circuitbreaker_state{name="inv",state="closed"} 0"#,
            r#"resilience4j_circuitbreaker_calls_total{name="inv",kind="failed"} 4"#,
            r#"resilience4j_circuitbreaker_calls_total{name="inv",kind="not_permitted"} 1"#,
            r#"resilience4j_circuitbreaker_transitions_total{name="inv",from="CLOSED",to="OPEN"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        let snaps = r.snapshots();
        let json = serde_json::to_value(&snaps).unwrap();
        assert_eq!(json[0]["state"], "OPEN");
        assert_eq!(json[0]["config"]["slidingWindowType"], "COUNT_BASED");
        assert_eq!(json[0]["config"]["waitDurationInOpenStateMs"], 5000);
        assert_eq!(json[0]["transitions"][0]["to"], "OPEN");
    }
}
