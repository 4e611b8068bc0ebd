//! The application-layer fault model: what `POST /admin/faults` accepts and `GET /admin/faults`
//! answers on every service (the kit serves it, `platform inject app-latency|app-error|kill-app`
//! sends it). Its own small crate, so the CLI and the dashboard read it without the service
//! scaffold (axum, OpenTelemetry), like the other client-side model crates.
//!
//! The assaults are those of Chaos Monkey for Spring Boot, scoped and timed:
//! - [`Assault::Latency`]: requests wait a uniformly random time in `min_ms..=max_ms` before they
//!   are handled (Chaos Monkey's `latencyRangeStart`/`latencyRangeEnd`);
//! - [`Assault::Error`]: requests are answered with `status` (problem+json) without being handled
//!   (Chaos Monkey's exception assault, seen from the client);
//! - [`Assault::Kill`]: the process exits at once (Chaos Monkey's `killApplicationActive`).
//!
//! A fault hits a `share` of the requests (percent; Chaos Monkey's `level` is "every Nth") and,
//! when `routes` is not empty, only requests whose path is one of them or under one of them.
//! The scaffold's own endpoints (`/health`, `/metrics`, `/info`, `/admin`) are never hit, so
//! probes keep telling the truth and a fault can always be listed and healed. Every fault ends
//! by itself at `ends`: the service drops it then, whether or not anyone calls it again.

#![forbid(unsafe_code)]

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The shortest fault a service accepts (the CLI asks for at least a second).
pub const MIN_DURATION_MS: u64 = 100;
/// The longest fault a service accepts: a day.
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest added latency: a minute (longer only measures clients' timeouts).
pub const MAX_LATENCY_MS: u64 = 60_000;
/// How many faults one service holds at once.
pub const MAX_ACTIVE: usize = 16;
/// How many route prefixes one fault may name.
pub const MAX_ROUTES: usize = 16;
/// The longest route prefix and id.
pub const MAX_TEXT: usize = 256;

/// What a fault does to the requests it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Assault {
    /// Wait a uniformly random time in `min_ms..=max_ms`, then handle the request.
    Latency { min_ms: u64, max_ms: u64 },
    /// Answer `status` (400..=599) with a problem+json body instead of handling the request.
    Error { status: u16 },
    /// Exit the process (after answering this request with 202).
    Kill,
}

/// `POST /admin/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRequest {
    /// The caller's id for the fault (the CLI sends its record id); the service makes one when
    /// absent. Lower-case letters, digits and `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub assault: Assault,
    /// Percent of the matching requests hit, in `(0, 100]`.
    #[serde(default = "full_share")]
    pub share: f64,
    /// Path prefixes (each starting with `/`) the fault is limited to; empty = every API route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// How long the fault lasts from the moment the service accepts it.
    pub duration_ms: u64,
}

fn full_share() -> f64 {
    100.0
}

/// One active fault, as `GET /admin/faults` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFault {
    pub id: String,
    pub assault: Assault,
    pub share: f64,
    #[serde(default)]
    pub routes: Vec<String>,
    pub started: DateTime<Utc>,
    /// When the service drops the fault by itself.
    pub ends: DateTime<Utc>,
    /// Requests the fault has hit so far.
    #[serde(default)]
    pub hits: u64,
}

/// Why a [`FaultRequest`] is refused (the service answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The JSON field at fault.
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// True for an id the service accepts: 1 to 64 of `a-z`, `0-9`, `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl FaultRequest {
    /// Checks every field against the limits above; the kit and the CLI both call it, so a
    /// request the CLI builds is one the service takes.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(id) = &self.id
            && !valid_id(id)
        {
            return Err(invalid("id", "1 to 64 lower-case letters, digits or `-`"));
        }
        match self.assault {
            Assault::Latency { min_ms, max_ms } => {
                if min_ms > max_ms {
                    return Err(invalid(
                        "assault",
                        format!("minimum latency {min_ms} ms is above the maximum {max_ms} ms"),
                    ));
                }
                if max_ms == 0 {
                    return Err(invalid(
                        "assault",
                        "a latency assault needs a maximum above 0 ms",
                    ));
                }
                if max_ms > MAX_LATENCY_MS {
                    return Err(invalid(
                        "assault",
                        format!("latency of at most {MAX_LATENCY_MS} ms, not {max_ms} ms"),
                    ));
                }
            }
            Assault::Error { status } => {
                if !(400..=599).contains(&status) {
                    return Err(invalid(
                        "assault",
                        format!("an error status is 400..=599, not {status}"),
                    ));
                }
            }
            Assault::Kill => {}
        }
        if !(self.share > 0.0 && self.share <= 100.0) {
            return Err(invalid(
                "share",
                format!("a percentage in (0, 100], not {}", self.share),
            ));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(invalid(
                "routes",
                format!("at most {MAX_ROUTES} routes, not {}", self.routes.len()),
            ));
        }
        for r in &self.routes {
            if !r.starts_with('/') || r.len() > MAX_TEXT || r.chars().any(char::is_control) {
                return Err(invalid(
                    "routes",
                    format!(
                        "`{r}` is not a path prefix (starts with /, at most {MAX_TEXT} characters)"
                    ),
                ));
            }
        }
        if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&self.duration_ms) {
            return Err(invalid(
                "durationMs",
                format!(
                    "{MIN_DURATION_MS}..={MAX_DURATION_MS} milliseconds, not {}",
                    self.duration_ms
                ),
            ));
        }
        Ok(())
    }
}

impl AppFault {
    /// True while the fault is in force at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        now < self.ends
    }

    /// True when the fault applies to requests for `path`: no routes, or `path` is one of them
    /// or below one of them on a segment boundary (`/api/order` covers `/api/order/7`, not
    /// `/api/orders`).
    pub fn covers(&self, path: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| covers(r, path))
    }
}

/// Whether route prefix `route` covers `path` (segment-wise).
pub fn covers(route: &str, path: &str) -> bool {
    let route = route.trim_end_matches('/');
    if route.is_empty() {
        return true;
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Paths no fault ever hits: the scaffold's probes, metrics, info and admin endpoints.
pub fn exempt(path: &str) -> bool {
    ["/health", "/metrics", "/info", "/admin"]
        .iter()
        .any(|p| covers(p, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(assault: Assault) -> FaultRequest {
        FaultRequest {
            id: None,
            assault,
            share: 100.0,
            routes: vec![],
            duration_ms: 1_000,
        }
    }

    /// Well-formed requests pass; each limit is enforced with the field named.
    #[test]
    fn validation_names_the_field() {
        assert!(request(Assault::Kill).validate().is_ok());
        assert!(
            request(Assault::Latency {
                min_ms: 10,
                max_ms: 10
            })
            .validate()
            .is_ok()
        );
        let bad = [
            (
                request(Assault::Latency {
                    min_ms: 20,
                    max_ms: 10,
                }),
                "assault",
            ),
            (
                request(Assault::Latency {
                    min_ms: 0,
                    max_ms: 0,
                }),
                "assault",
            ),
            (
                request(Assault::Latency {
                    min_ms: 0,
                    max_ms: 60_001,
                }),
                "assault",
            ),
            (request(Assault::Error { status: 200 }), "assault"),
            (
                FaultRequest {
                    share: 0.0,
                    ..request(Assault::Kill)
                },
                "share",
            ),
            (
                FaultRequest {
                    share: f64::NAN,
                    ..request(Assault::Kill)
                },
                "share",
            ),
            (
                FaultRequest {
                    share: 100.5,
                    ..request(Assault::Kill)
                },
                "share",
            ),
            (
                FaultRequest {
                    routes: vec!["api".into()],
                    ..request(Assault::Kill)
                },
                "routes",
            ),
            (
                FaultRequest {
                    routes: vec!["/a".into(); 17],
                    ..request(Assault::Kill)
                },
                "routes",
            ),
            (
                FaultRequest {
                    duration_ms: 99,
                    ..request(Assault::Kill)
                },
                "durationMs",
            ),
            (
                FaultRequest {
                    duration_ms: MAX_DURATION_MS + 1,
                    ..request(Assault::Kill)
                },
                "durationMs",
            ),
            (
                FaultRequest {
                    id: Some("Bad Id".into()),
                    ..request(Assault::Kill)
                },
                "id",
            ),
        ];
        for (req, field) in bad {
            assert_eq!(req.validate().unwrap_err().field, field, "{req:?}");
        }
    }

    /// Route prefixes match whole segments; the scaffold's endpoints are exempt.
    #[test]
    fn routes_match_segments() {
        assert!(covers("/api/order", "/api/order"));
        assert!(covers("/api/order", "/api/order/7"));
        assert!(covers("/api/order/", "/api/order/7"));
        assert!(!covers("/api/order", "/api/orders"));
        assert!(covers("/", "/anything"));
        assert!(exempt("/health/ready") && exempt("/admin/faults") && exempt("/metrics"));
        assert!(!exempt("/api/inventory") && !exempt("/healthz"));
    }

    /// The JSON is camelCase with a tagged assault, and unknown fields are refused.
    #[test]
    fn json_shape() {
        let req: FaultRequest = serde_json::from_str(
            r#"{"assault":{"type":"latency","min_ms":100,"max_ms":300},"share":50,"routes":["/api"],"durationMs":2000}"#,
        )
        .unwrap();
        assert_eq!(
            req.assault,
            Assault::Latency {
                min_ms: 100,
                max_ms: 300
            }
        );
        assert_eq!(req.share, 50.0);
        let defaulted: FaultRequest =
            serde_json::from_str(r#"{"assault":{"type":"kill"},"durationMs":1000}"#).unwrap();
        assert_eq!(defaulted.share, 100.0);
        assert!(
            serde_json::from_str::<FaultRequest>(
                r#"{"assault":{"type":"kill"},"durationMs":1000,"x":1}"#
            )
            .is_err()
        );
    }
}
