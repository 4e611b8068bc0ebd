//! `GET /eureka/watch?since=<version>&timeoutSecs=<n>`: our addition to
//! Eureka, a long-poll that answers as soon as the registry changes after
//! `since`, so clients see changes within milliseconds instead of after
//! Eureka's 30 s delta polling.
//!
//! The handler subscribes to the registry's version channel *before*
//! looking at the change log, so a change between the look and the wait
//! still wakes it (no polling, no lost wake-ups). It answers with the
//! changes after `since` (or the whole registry as a reset, see
//! [`crate::registry::Registry::changes_since`]), or after `timeoutSecs`
//! (at most `--max-watch-timeout`) with no changes and `version == since`,
//! or at once when the server shuts down so draining never waits on a
//! long-poll. The version is also sent as `X-Registry-Version`.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use kit::http::{Json, Query};
use kit::registry::model::WatchResponse;
use serde::Deserialize;

use crate::AppState;
use crate::api::X_REGISTRY_VERSION;

/// Wait when the client does not say (the kit's Discovery always does).
const DEFAULT_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchParams {
    #[serde(default)]
    since: u64,
    timeout_secs: Option<u64>,
}

pub async fn watch(State(s): State<AppState>, Query(p): Query<WatchParams>) -> Response {
    let timeout = Duration::from_secs(p.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
        .min(s.max_watch_timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut versions = s.registry.subscribe();
    loop {
        let answer = s.registry.changes_since(p.since);
        if answer.reset || !answer.changes.is_empty() {
            return respond(answer);
        }
        let _waiting = s.registry.watcher();
        let woke = tokio::select! {
            changed = versions.changed() => changed.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
            _ = s.shutdown.cancelled() => false,
        };
        if !woke {
            break;
        }
    }
    respond(WatchResponse {
        version: p.since,
        reset: false,
        changes: Vec::new(),
    })
}

fn respond(answer: WatchResponse) -> Response {
    let version = answer.version;
    let mut res = Json(answer).into_response();
    if let Ok(v) = version.to_string().parse() {
        res.headers_mut().insert(X_REGISTRY_VERSION.clone(), v);
    }
    res
}
