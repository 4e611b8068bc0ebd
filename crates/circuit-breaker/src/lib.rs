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
//! The crate holds what a client of a breaker needs: the state machine
//! ([`machine`]), its options ([`config`]) and the JSON of `/admin/breakers`
//! ([`snapshot`]), which the `platform` CLI and the dashboard read with the
//! same types. A service's breakers, their admin router and their
//! Resilience4j-named metrics are in `kit::breaker`, on top of this crate.
#![forbid(unsafe_code)]

pub mod config;
pub mod machine;
pub mod snapshot;
pub mod state;

pub use clock::Clock;
pub use config::{BreakerConfig, ConfigError, SlidingWindowType};
pub use machine::{CallError, CircuitBreaker, NotPermitted, Outcome, Permit, TRANSITION_HISTORY};
pub use snapshot::{Snapshot, StateChange, Totals, Transition, WindowMetrics};
pub use state::State;
