//! A breaker's options as a service's flags and `BREAKER_*` variables.

use std::time::Duration;

use super::{BreakerConfig, ConfigError, SlidingWindowType};
use crate::config::parse_duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags parse with the platform's defaults, and their values (in any case) reach the configuration.
    #[test]
    fn flags_parse_with_defaults() {
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
}
