//! The HTTP API: `/api/product` and `/api/product/{id}`.
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | `POST` | `/api/product` | 201, `Location: /api/product/{id}`, the product |
//! | `GET` | `/api/product?page=&size=&name=&skuCode=` | 200, a [`kit::page::Page`] of products in creation order |
//! | `GET` | `/api/product/{id}` | 200 or 404 |
//! | `PUT` | `/api/product/{id}` | 200 with the replaced product, or 404 |
//! | `DELETE` | `/api/product/{id}` | 204 or 404 |
//!
//! Reads are open to any caller the gateway let in (a valid token); writes
//! (`POST`, `PUT`, `DELETE`) need the `admin` realm role, checked here too
//! (defence in depth behind the gateway's own check), or, when the service
//! runs without an issuer, the shared admin token: 401 without credentials,
//! 403 without the role.
//!
//! Errors are problem+json: malformed JSON 400, missing or mistyped members 422 (from the
//! kit's extractors), broken rules 422 with an `errors` list of `{field, message}`, a taken
//! `skuCode` 409, the store unreachable 503, anything else 500 (logged, never detailed).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kit::Problem;
use kit::auth::{RoleGuard, require_role};
use kit::http::{Json, Path, Query};
use kit::page::{Page, PageRequest};
use serde::Deserialize;

use crate::model::{FieldError, Product, ProductInput, check_sku};
use crate::store::{ProductFilter, ProductStore, StoreError};

/// Largest page a listing returns.
pub const MAX_PAGE_SIZE: u64 = 100;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The one store of this instance, behind the trait so either adapter serves.
    pub store: Arc<dyn ProductStore>,
}

/// The API routes: reads for anyone, writes behind `writes` (the admin role).
pub fn router(state: AppState, writes: RoleGuard) -> Router {
    let write = Router::new()
        .route("/api/product", post(create))
        .route("/api/product/{id}", put(replace).delete(remove))
        .route_layer(axum::middleware::from_fn_with_state(writes, require_role));
    Router::new()
        .route("/api/product", get(list))
        .route("/api/product/{id}", get(fetch))
        .merge(write)
        .with_state(state)
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid product")]
    Invalid(Vec<FieldError>),
    #[error("no product with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::unprocessable(detail)
                    .with("errors", errors)
                    .into_response()
            }
            ApiError::NotFound(id) => {
                Problem::not_found(format!("no product with id {id}")).into_response()
            }
            ApiError::Store(StoreError::NotFound { id }) => {
                Problem::not_found(format!("no product with id {id}")).into_response()
            }
            ApiError::Store(StoreError::DuplicateSku { sku_code }) => {
                Problem::conflict(format!("a product with skuCode {sku_code} already exists"))
                    .with("skuCode", sku_code)
                    .into_response()
            }
            ApiError::Store(e) => {
                Problem::store_failure("product store", e.is_unavailable(), &e).into_response()
            }
            ApiError::Problem(p) => p.into_response(),
        }
    }
}

/// Query of `GET /api/product`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page: Option<u64>,
    size: Option<u64>,
    /// Case-insensitive substring of the name.
    name: Option<String>,
    /// Exact sku.
    sku_code: Option<String>,
}

#[tracing::instrument(skip_all, fields(sku_code = %input.sku_code))]
async fn create(
    axum::extract::State(s): axum::extract::State<AppState>,
    Json(input): Json<ProductInput>,
) -> Result<Response, ApiError> {
    let fields = input.validate().map_err(ApiError::Invalid)?;
    let product = Product::new(fields);
    s.store.insert(&product).await?;
    tracing::info!(id = %product.id, "product created");
    let location = format!("/api/product/{}", product.id);
    let mut res = (StatusCode::CREATED, Json(product)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[tracing::instrument(skip_all)]
async fn list(
    axum::extract::State(s): axum::extract::State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Product>>, ApiError> {
    let page = PageRequest::new(q.page, q.size, MAX_PAGE_SIZE)?;
    let filter = ProductFilter {
        name: q.name.filter(|n| !n.trim().is_empty()),
        sku_code: q.sku_code.filter(|s| !s.is_empty()),
    };
    // A sku that can never exist matches nothing; say so rather than scan.
    if let Some(sku) = &filter.sku_code
        && let Err(why) = check_sku(sku)
    {
        return Err(Problem::bad_request(format!("skuCode {why}"))
            .kind("bad-query")
            .into());
    }
    Ok(Json(s.store.list(&filter, page).await?))
}

/// Ids are service-made UUIDs; anything far longer cannot be one.
fn plausible_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::NotFound(id.chars().take(64).collect()));
    }
    Ok(())
}

#[tracing::instrument(skip(s))]
async fn fetch(
    axum::extract::State(s): axum::extract::State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    plausible_id(&id)?;
    match s.store.get(&id).await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError::NotFound(id)),
    }
}

#[tracing::instrument(skip(s, input))]
async fn replace(
    axum::extract::State(s): axum::extract::State<AppState>,
    Path(id): Path<String>,
    Json(input): Json<ProductInput>,
) -> Result<Json<Product>, ApiError> {
    plausible_id(&id)?;
    let fields = input.validate().map_err(ApiError::Invalid)?;
    let product = Product::with_id(id, fields);
    s.store.replace(&product).await?;
    tracing::info!(id = %product.id, "product replaced");
    Ok(Json(product))
}

#[tracing::instrument(skip(s))]
async fn remove(
    axum::extract::State(s): axum::extract::State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    plausible_id(&id)?;
    if s.store.delete(&id).await? {
        tracing::info!(%id, "product deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(id))
    }
}
