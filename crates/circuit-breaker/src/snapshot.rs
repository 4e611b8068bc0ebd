//! What `/admin/breakers` shows and accepts: the JSON types a service
//! writes and the CLI and dashboard read with the same definitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::BreakerConfig;
use crate::state::State;

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
    /// The latest transitions, oldest first (at most [`TRANSITION_HISTORY`](crate::TRANSITION_HISTORY)).
    pub transitions: Vec<Transition>,
}

/// What `POST /admin/breakers/{name}/state` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// `CLOSED`, `OPEN`, `HALF_OPEN`, `DISABLED` or `FORCED_OPEN`.
    pub state: State,
}
