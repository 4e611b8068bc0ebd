//! The HTTP API and the order flow.
//!
//! - `POST /api/order` `{"lines":[{"skuCode","price","quantity"}]}` →
//!   201 with the order (`Location: /api/order/{orderNumber}`); 409
//!   problem when stock is short, 422 for bad input or unknown SKUs, 503
//!   with the seed's fallback detail when inventory cannot answer.
//!   Optional `Idempotency-Key` header (see [`AppState::place_idempotent`]).
//! - `GET /api/order/{orderNumber}`, `GET /api/order?page=&size=` (newest first):
//!   with an issuer configured, a valid token is required (401) and a user
//!   sees only their own orders (owner: the token's `sub`, stored as
//!   `customer.id`); the `admin` role sees all. Someone else's order is 404,
//!   as if it did not exist ([`kit::auth::Scope`]).
//! - Admin: `GET /admin/breakers` (and `/admin/breakers/{name}`,
//!   `POST /admin/breakers/{name}/state`), `GET /admin/upstreams`.
//!
//! The flow of an order: validate → check prices against the catalogue
//! ([`crate::catalog`]: a price that is not the listed one is 422
//! `price-mismatch`) → reserve stock at inventory (breaker,
//! registry, timeout) → write order + outbox row in one transaction →
//! wake the relay → 201. Any failure after stock may have been reserved
//! queues a release of the reservation ([`crate::compensation`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use events::{Customer, OrderPlacedEvent};
use kit::auth::{AuthError, JwtValidator, Scope};
use kit::breaker::BreakerRegistry;
use kit::error::PROBLEM_JSON;
use kit::http::{Json, Path, Query};
use kit::metrics::Metrics;
use kit::page::{Page, PageRequest};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

use crate::catalog::CatalogClient;
use crate::error::OrderError;
use crate::inventory::{InventoryClient, Reservation};
use crate::model::{OrderView, PlaceOrder, money};
use crate::store::{Claim, NewOrder, Store, StoredAnswer};

/// The request header of idempotent order placement.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on answers replayed for a repeated Idempotency-Key.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Customer id of callers without a (validated) token.
pub const ANONYMOUS: &str = "anonymous";
/// Largest page of `GET /api/order`.
pub const MAX_PAGE_SIZE: u64 = 100;

/// Labels of the order counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// How idempotent requests wait for each other.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyOptions {
    /// How long a repeat waits for the first attempt to finish before 409.
    pub wait: Duration,
    /// An attempt silent for this long is taken to be dead (its instance
    /// crashed) and a repeat takes over, with the same order number.
    pub lease: Duration,
}

/// The services an order is checked against.
pub struct Upstreams {
    /// Reserves (and releases) stock.
    pub inventory: InventoryClient,
    /// Lists the prices (`None`: PRICE_CHECK=off).
    pub catalog: Option<CatalogClient>,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    inventory: InventoryClient,
    /// Checks line prices against the catalogue (`None`: PRICE_CHECK=off).
    catalog: Option<CatalogClient>,
    /// Wakes the outbox relay after each commit.
    wake: Arc<Notify>,
    /// Order numbers whose reservation must be given back.
    compensate: mpsc::Sender<String>,
    /// Validates bearer tokens when an issuer is configured.
    validator: Option<JwtValidator>,
    idempotency: IdempotencyOptions,
    /// Order requests by outcome, for the dashboard.
    outcomes: Family<OutcomeLabels, Counter>,
}

impl AppState {
    pub fn new(
        store: Store,
        upstreams: Upstreams,
        wake: Arc<Notify>,
        compensate: mpsc::Sender<String>,
        validator: Option<JwtValidator>,
        idempotency: IdempotencyOptions,
        metrics: &Metrics,
    ) -> AppState {
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        metrics.register(
            "orders_requests",
            "Order placement requests by outcome (placed, replayed, out_of_stock, unknown_sku, unavailable, invalid, error)",
            outcomes.clone(),
        );
        AppState {
            inner: Arc::new(Inner {
                store,
                inventory: upstreams.inventory,
                catalog: upstreams.catalog,
                wake,
                compensate,
                validator,
                idempotency,
                outcomes,
            }),
        }
    }

    fn count(&self, outcome: &'static str) {
        self.inner
            .outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The caller, from a validated bearer token; `anonymous` without a
    /// token or when no issuer is configured (nothing to validate against).
    async fn customer(&self, headers: &HeaderMap) -> Result<Customer, OrderError> {
        let anonymous = Customer {
            id: ANONYMOUS.to_string(),
            ..Customer::default()
        };
        let Some(v) = &self.inner.validator else {
            return Ok(anonymous);
        };
        let token = match kit::auth::bearer_token(headers) {
            Ok(t) => t,
            Err(AuthError::MissingToken) => return Ok(anonymous),
            Err(e) => return Err(OrderError::Auth(e.in_realm(v.realm()))),
        };
        let claims = v
            .validate(token)
            .await
            .map_err(|e| OrderError::Auth(e.in_realm(v.realm())))?;
        Ok(Customer {
            id: claims.sub.clone().unwrap_or_else(|| ANONYMOUS.to_string()),
            email: claims.email.clone(),
            name: claims.preferred_username.clone(),
        })
    }

    /// Refuses lines whose SKU the catalogue does not list or whose price
    /// is not the catalogue's (see [`crate::catalog`]).
    async fn check_prices(&self, req: &PlaceOrder) -> Result<(), OrderError> {
        let Some(catalog) = &self.inner.catalog else {
            return Ok(());
        };
        let skus: Vec<&str> = req.lines.iter().map(|l| l.sku_code.as_str()).collect();
        let prices = catalog
            .prices(&skus)
            .await
            .map_err(|e| OrderError::CatalogUnavailable(e.to_string()))?;
        let (unknown, mismatches) =
            prices.check(req.lines.iter().map(|l| (l.sku_code.as_str(), l.price)));
        if !unknown.is_empty() {
            return Err(OrderError::NotInCatalog(unknown));
        }
        if !mismatches.is_empty() {
            return Err(OrderError::PriceMismatch(mismatches));
        }
        Ok(())
    }

    /// Whose orders the caller may read (see [`kit::auth::Scope`]).
    async fn scope(&self, headers: &HeaderMap) -> Result<Scope, OrderError> {
        Scope::of(self.inner.validator.as_ref(), headers)
            .await
            .map_err(OrderError::Auth)
    }

    /// Places an order without an Idempotency-Key.
    async fn place(
        &self,
        order_number: String,
        customer: Customer,
        req: &PlaceOrder,
        key: Option<&str>,
    ) -> Result<Response, OrderError> {
        let lines = req.lines();
        match self.inner.inventory.reserve(&order_number, &lines).await {
            Ok(Reservation::Reserved) => {}
            Ok(Reservation::OutOfStock(p)) => {
                self.count("out_of_stock");
                let err = OrderError::OutOfStock(p);
                if let Some(key) = key {
                    let answer = StoredAnswer {
                        status: err.problem().status,
                        body: serde_json::to_string(&err.problem()).unwrap_or_default(),
                    };
                    self.inner.store.finish_key(key, &answer).await?;
                }
                return Err(err);
            }
            Ok(Reservation::UnknownSku(p)) => {
                self.count("unknown_sku");
                self.forget_key(key).await;
                return Err(OrderError::UnknownSku(p));
            }
            Err(e) => {
                self.count("unavailable");
                if e.needs_release() {
                    self.queue_release(&order_number);
                }
                self.forget_key(key).await;
                return Err(OrderError::InventoryUnavailable(e.to_string()));
            }
        }

        let created_at = now_micros();
        let view = OrderView::placed(&order_number, customer.clone(), &lines, created_at);
        let event = OrderPlacedEvent::new(
            order_number.clone(),
            lines.clone(),
            customer.clone(),
            created_at,
        );
        let trace = kit::telemetry::current_context_map();
        let new = NewOrder {
            order_number: order_number.clone(),
            customer,
            total: money(view.total),
            lines,
            created_at,
            event,
            trace_context: (!trace.is_empty())
                .then(|| serde_json::to_string(&trace).unwrap_or_default()),
        };
        let body = serde_json::to_string(&view).unwrap_or_default();
        let answer = StoredAnswer {
            status: StatusCode::CREATED.as_u16(),
            body,
        };
        match self
            .inner
            .store
            .insert_order(&new, key.map(|k| (k, &answer)))
            .await
        {
            Ok(()) => {
                self.inner.wake.notify_one();
                self.count("placed");
                tracing::info!(order_number = %order_number, total = %view.total, "order placed");
                Ok(created(&order_number, answer.body, false))
            }
            Err(e) if kit::db::is_unique_violation(&e) => {
                // Another attempt with the same key stored this order first
                // (it took over a key we held too long): its reservation is
                // the order's, so nothing is released.
                self.count("error");
                Err(OrderError::KeyInProgress)
            }
            Err(e) => {
                self.count("error");
                self.queue_release(&order_number);
                self.forget_key(key).await;
                Err(OrderError::Db(e))
            }
        }
    }

    /// Places an order under an Idempotency-Key.
    ///
    /// The key row is inserted first (its primary key admits one holder);
    /// the holder stores the final answer in the order's own transaction
    /// (or, for an out-of-stock refusal, on its own). A repeat with the same
    /// key and the same request gets that answer, status and body; while the
    /// first attempt runs, a repeat waits (bounded) and then gets 409; the
    /// same key with another request is 422. Answers that are not final
    /// (inventory unavailable, bad input) drop the key, so a retry starts
    /// afresh. A key whose holder went silent past the lease (crashed) is
    /// taken over with its order number, which inventory's idempotent
    /// reservations make safe.
    async fn place_idempotent(
        &self,
        key: &str,
        customer: Customer,
        req: &PlaceOrder,
    ) -> Result<Response, OrderError> {
        let hash = req.fingerprint(&customer);
        let deadline = Instant::now() + self.inner.idempotency.wait;
        let mut fresh_number = uuid::Uuid::now_v7().to_string();
        loop {
            match self
                .inner
                .store
                .claim_key(key, &hash, &fresh_number)
                .await?
            {
                Claim::Fresh => {
                    return self.place(fresh_number, customer, req, Some(key)).await;
                }
                Claim::Existing(row) => {
                    if row.request_hash != hash {
                        self.count("invalid");
                        return Err(OrderError::KeyReused);
                    }
                    if let Some(answer) = row.answer {
                        self.count("replayed");
                        return Ok(replay(&row.order_number, answer));
                    }
                    if row.idle >= self.inner.idempotency.lease
                        && self.inner.store.take_over_key(key, row.updated_at).await?
                    {
                        tracing::warn!(key, order_number = %row.order_number, idle = ?row.idle, "taking over an abandoned Idempotency-Key");
                        return self.place(row.order_number, customer, req, Some(key)).await;
                    }
                    if Instant::now() >= deadline {
                        self.count("invalid");
                        return Err(OrderError::KeyInProgress);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // The holder may also drop the key (failed attempt): then
                    // this request claims it with a number of its own.
                    fresh_number = uuid::Uuid::now_v7().to_string();
                }
            }
        }
    }

    async fn forget_key(&self, key: Option<&str>) {
        if let Some(key) = key
            && let Err(e) = self.inner.store.drop_key(key).await
        {
            tracing::warn!(key, error = %e, "cannot drop the Idempotency-Key; a retry will take it over after the lease");
        }
    }

    fn queue_release(&self, order_number: &str) {
        if self
            .inner
            .compensate
            .try_send(order_number.to_string())
            .is_err()
        {
            tracing::error!(
                order_number,
                "compensation queue full; the reservation is NOT released"
            );
        }
    }
}

/// Now, at the database's precision (microseconds), so the order and its
/// event carry the same instant as the stored row.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn created(order_number: &str, body: String, replayed: bool) -> Response {
    let mut res = (StatusCode::CREATED, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/api/order/{order_number}")) {
        h.insert(header::LOCATION, v);
    }
    if replayed {
        h.insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// The stored first answer of an Idempotency-Key.
fn replay(order_number: &str, answer: StoredAnswer) -> Response {
    if answer.status == StatusCode::CREATED.as_u16() {
        return created(order_number, answer.body, true);
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::CONFLICT);
    let mut res = (status, answer.body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res.headers_mut().insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    res
}

/// The public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/order", get(list_orders).post(place_order))
        .route("/api/order/{order_number}", get(get_order))
        .with_state(state)
}

/// The admin API (mounted under `/admin` by the kit): breakers and upstreams.
pub fn admin_router(state: AppState, breakers: BreakerRegistry) -> Router {
    Router::new()
        .route("/upstreams", get(upstreams))
        .with_state(state)
        .merge(kit::breaker::admin_router(breakers))
}

#[tracing::instrument(skip_all)]
async fn place_order(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<PlaceOrder>, kit::Problem>,
) -> Response {
    let result = async {
        let customer = s.customer(&headers).await?;
        let Json(req) = body.map_err(|p| {
            s.count("invalid");
            OrderError::Request(p)
        })?;
        if let Err(msg) = req.validate() {
            s.count("invalid");
            return Err(OrderError::Invalid(msg));
        }
        if let Err(e) = s.check_prices(&req).await {
            s.count(match e {
                OrderError::CatalogUnavailable(_) => "unavailable",
                _ => "invalid",
            });
            return Err(e);
        }
        match idempotency_key(&headers)? {
            Some(key) => s.place_idempotent(&key, customer, &req).await,
            None => {
                s.place(uuid::Uuid::now_v7().to_string(), customer, &req, None)
                    .await
            }
        }
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The Idempotency-Key header, if present: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, OrderError> {
    let Some(v) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            OrderError::Invalid("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    Ok(Some(v.to_string()))
}

async fn get_order(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Result<Json<OrderView>, OrderError> {
    let scope = s.scope(&headers).await?;
    if number.is_empty() || number.len() > 64 {
        return Err(OrderError::NotFound(format!("no order {number}")));
    }
    s.inner
        .store
        .order(&number)
        .await?
        // Someone else's order is answered like a missing one.
        .filter(|o| scope.may_read(&o.customer.id))
        .map(Json)
        .ok_or_else(|| OrderError::NotFound(format!("no order {number}")))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<u64>,
    size: Option<u64>,
}

async fn list_orders(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<OrderView>>, Response> {
    let scope = s
        .scope(&headers)
        .await
        .map_err(IntoResponse::into_response)?;
    let req =
        PageRequest::new(q.page, q.size, MAX_PAGE_SIZE).map_err(IntoResponse::into_response)?;
    s.inner
        .store
        .orders(req, scope.owner())
        .await
        .map(Json)
        .map_err(|e| OrderError::Db(e).into_response())
}

async fn upstreams(State(s): State<AppState>) -> Json<serde_json::Value> {
    let b = s.inner.inventory.balancer();
    Json(serde_json::json!({
        b.service(): {
            "strategy": b.strategy(),
            "instances": b.status(),
        }
    }))
}
