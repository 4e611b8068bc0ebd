//! The state machine: [`CircuitBreaker`], its sliding windows and permits.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clock::Clock;
use parking_lot::Mutex;

use crate::config::{BreakerConfig, SlidingWindowType};
use crate::snapshot::{Snapshot, Totals, Transition, WindowMetrics};
use crate::state::State;

/// How many transitions a breaker remembers for `/admin/breakers`.
pub const TRANSITION_HISTORY: usize = 100;

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

    /// Operator transition to `to`, from any state (Resilience4j's `transitionTo…State()`):
    /// CLOSED starts a fresh window, OPEN waits `waitDurationInOpenState`, DISABLED permits every
    /// call and records nothing, FORCED_OPEN permits none until another operator transition.
    pub fn transition_to(&self, to: State) {
        self.force(to, "operator request");
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
    /// `n` failed calls in a row.
    fn fails(b: &CircuitBreaker, n: usize) {
        for _ in 0..n {
            fail(b);
        }
    }

    fn fail(b: &CircuitBreaker) {
        b.try_acquire().unwrap().failure();
    }

    /// Below the minimum number of calls nothing opens; at the failure-rate threshold the breaker opens.
    #[test]
    fn closed_to_open_on_failure_rate() {
        let (b, _) = breaker(cfg());
        fails(&b, 3);
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
        fails(&b, 4);
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
        fails(&b, 4);
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
        fails(&b, 4);
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
        fails(&b, 4);
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
        fails(&b, 4);
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
        fails(&b, 4);
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
        fails(&b, 4);
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
        fails(&b, 3);
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
        fails(&b, 5);
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
        fails(&b, 4);
        assert_eq!(b.state(), State::Open);
    }

    /// DISABLED permits everything and records nothing; FORCED_OPEN permits nothing, even after the wait.
    #[test]
    fn operator_states() {
        let (b, clock) = breaker(cfg());
        b.transition_to(State::Disabled);
        fails(&b, 10);
        assert_eq!(b.state(), State::Disabled);
        b.transition_to(State::ForcedOpen);
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
            b.transition_to(State::ForcedOpen);
        }
        let s = b.snapshot();
        assert_eq!(s.transitions.len(), TRANSITION_HISTORY);
        assert_eq!(
            s.transition_counts["FORCED_OPEN->FORCED_OPEN"],
            TRANSITION_HISTORY as u64 + 19
        );
    }
}
