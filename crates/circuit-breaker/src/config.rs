//! A breaker's options ([`BreakerConfig`]), with Resilience4j's names,
//! defaults and validation. Services take theirs from flags through
//! `kit::breaker::BreakerArgs`; the admin JSON carries them as they are here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the sliding window counts calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlidingWindowType {
    /// The last `slidingWindowSize` calls.
    #[default]
    #[cfg_attr(
        feature = "clap",
        value(name = "COUNT_BASED", alias = "count_based", alias = "count-based")
    )]
    CountBased,
    /// The calls of the last `slidingWindowSize` seconds.
    #[cfg_attr(
        feature = "clap",
        value(name = "TIME_BASED", alias = "time_based", alias = "time-based")
    )]
    TimeBased,
}

/// A breaker's configuration. [`Default`] is Resilience4j's
/// `CircuitBreakerConfig.ofDefaults()`; services take theirs from
/// `kit::breaker::BreakerArgs`, whose defaults are the platform's (see there).
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
    pub(crate) fn closed_minimum(&self) -> u32 {
        match self.sliding_window_type {
            SlidingWindowType::CountBased => {
                self.minimum_number_of_calls.min(self.sliding_window_size)
            }
            SlidingWindowType::TimeBased => self.minimum_number_of_calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invalid values are refused like Resilience4j's builder refuses them.
    #[test]
    fn config_validation() {
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
    }
}
