//! Extractors whose rejections are problem+json.
//!
//! axum's own `Json`, `Query` and `Path` reject bad input with plain text;
//! these wrappers keep axum's precise messages (including the JSON path of a
//! wrong field) but answer in RFC 9457 form with the same status (400, 413,
//! 415 or 422). Use them in every handler that takes input. (The rejections'
//! conversions into [`Problem`] are the `problem` crate's, with its `axum`
//! feature.)

use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};

use crate::error::Problem;

/// JSON body extractor (and responder) with problem+json rejections.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query string extractor with problem+json rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

/// Path parameters extractor with problem+json rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);
