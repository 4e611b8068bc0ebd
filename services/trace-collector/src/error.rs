//! The collector's one error type and its problem+json form.
//!
//! Zipkin answers errors with a plain-text body; we keep its status codes
//! and its messages (as the problem's `detail`) but use RFC 9457
//! problem+json like every platform service. Clients of Zipkin's API only
//! look at the status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad parameters or a bad upload (Zipkin's `IllegalArgumentException` → 400).
    #[error("{0}")]
    BadRequest(String),
    /// No such trace.
    #[error("{0}")]
    NotFound(String),
    /// The upload (or what it inflates to) is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A bug or a failed background task; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        match e {
            ApiError::BadRequest(m) => Problem::bad_request(m),
            ApiError::NotFound(m) => Problem::not_found(m),
            ApiError::TooLarge(m) => {
                Problem::with_detail(StatusCode::PAYLOAD_TOO_LARGE, m).kind("body-too-large")
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
