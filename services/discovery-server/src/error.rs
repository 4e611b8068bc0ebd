//! The discovery-server's one error type, answered as problem+json.
//!
//! Eureka answers most bad input with an empty 400 or even a 500 (an
//! unknown status value is an `IllegalArgumentException` there); we answer
//! every one with a 4xx problem that says what was wrong, and the registry
//! is left unchanged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;
use kit::registry::model::InvalidInstance;

use crate::registry::RegistryError;

/// Everything a registry request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("invalid instance: {0}")]
    Invalid(#[from] InvalidInstance),
    /// A renewal whose `lastDirtyTimestamp` is newer than the registered data.
    #[error("{app}/{id} has newer data than the registry (lastDirtyTimestamp); register again")]
    Resync { app: String, id: String },
    /// Input that parsed but means nothing (an unknown status, a timestamp that is not a number).
    #[error("{0}")]
    BadInput(String),
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        match &e {
            ApiError::Registry(RegistryError::UnknownApp(_))
            | ApiError::Registry(RegistryError::UnknownInstance { .. })
            | ApiError::Resync { .. } => Problem::not_found(e.to_string()),
            ApiError::Registry(RegistryError::Full { .. }) => {
                Problem::unavailable(e.to_string()).kind("registry-full")
            }
            ApiError::Invalid(_) => Problem::with_detail(StatusCode::BAD_REQUEST, e.to_string())
                .kind("invalid-instance"),
            ApiError::BadInput(_) => Problem::bad_request(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
