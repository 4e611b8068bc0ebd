//! HTTP: the sent notifications, and the consumer's state for operators.
//!
//! - `GET /api/notifications?page=0&size=20&orderNumber=...`: a [`kit::page::Page`] of
//!   [`Notification`]s, newest first.
//! - `GET /api/notifications/{id}`: one [`Notification`], or 404.
//!
//! With an issuer configured both need a valid token (401), and a user sees only their own
//! notifications (owner: the order's customer, the token's `sub`); the `admin` role sees all.
//! Someone else's notification is 404, as if it did not exist ([`kit::auth::Scope`]).
//! - `GET /admin/consumer` (admin token): a [`ConsumerReport`], with the lag measured from
//!   the broker on the spot (every partition of the topic, whoever holds it) and the
//!   watchdog's verdict.
//!
//! Errors are problem+json: bad paging 400, the database unreachable 503, anything else 500.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kit::Problem;
use kit::auth::{JwtValidator, Rejected, Scope};
use kit::http::{Json, Path, Query};
use kit::page::{Page, PageRequest};
use serde::Deserialize;

use crate::consumer::Monitor;
use crate::consumer::state::{ConsumerReport, ConsumerState};
use crate::store::{Notification, NotificationStore, StoreError};

/// Largest page of notifications.
pub const MAX_PAGE_SIZE: u64 = 200;
/// Longest order number a filter can name (the column's width).
const MAX_ORDER_NUMBER: usize = 64;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The same pool the consumer writes through.
    pub store: NotificationStore,
    /// Shared with the consumer loop, which updates it on every message.
    pub consumer: Arc<ConsumerState>,
    /// Measures lag from the broker on request for `/admin/consumer`.
    pub monitor: Monitor,
    /// Checks callers' tokens when an issuer is configured (whose notifications they see).
    pub validator: Option<JwtValidator>,
}

/// The public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/notifications", get(list))
        .route("/api/notifications/{id}", get(one))
        .with_state(state)
}

/// The `/admin` routes (the kit adds the token check).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/consumer", get(consumer))
        .with_state(state)
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Auth(#[from] Rejected),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Store(e) => {
                Problem::store_failure("notifications database", e.is_outage(), &e).into_response()
            }
            ApiError::Problem(p) => p.into_response(),
            ApiError::Auth(r) => r.into_response(),
        }
    }
}

/// Query of `GET /api/notifications`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page: Option<u64>,
    size: Option<u64>,
    order_number: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Notification>>, ApiError> {
    let scope = Scope::of(s.validator.as_ref(), &headers).await?;
    let page = PageRequest::new(q.page, q.size, MAX_PAGE_SIZE)?;
    let order_number = q.order_number.filter(|n| !n.is_empty());
    if let Some(n) = &order_number
        && n.chars().count() > MAX_ORDER_NUMBER
    {
        return Err(Problem::bad_request(format!(
            "orderNumber must be at most {MAX_ORDER_NUMBER} characters"
        ))
        .kind("bad-query")
        .into());
    }
    Ok(Json(
        s.store
            .list(order_number.as_deref(), scope.owner(), page)
            .await?,
    ))
}

#[tracing::instrument(skip_all)]
async fn one(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Notification>, ApiError> {
    let scope = Scope::of(s.validator.as_ref(), &headers).await?;
    let not_found = || Problem::not_found(format!("no notification {id}"));
    // Ids are positive integers; anything else names no notification.
    let Ok(n) = id.parse::<u64>() else {
        return Err(not_found().into());
    };
    s.store
        .get(n)
        .await?
        // Someone else's notification is answered like a missing one.
        .filter(|x| scope.may_read(&x.customer_id))
        .map(Json)
        .ok_or_else(|| not_found().into())
}

#[tracing::instrument(skip_all)]
async fn consumer(State(s): State<AppState>) -> Json<ConsumerReport> {
    // A failure is recorded in the report (`lagError`), with the last figures kept.
    let _ = s.monitor.refresh().await;
    Json(s.consumer.report())
}
