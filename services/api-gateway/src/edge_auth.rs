//! Security at the edge: the one place the gateway decides whether a
//! request may pass.
//!
//! Public routes pass untouched. Every other route needs a bearer token
//! that the kit's [`JwtValidator`] accepts (signature, algorithm, issuer,
//! audience, lifetime) and that carries the route's realm roles. Rejections
//! are the kit's [`kit::auth::Rejected`] answers: 401 with
//! `WWW-Authenticate: Bearer ..., error="invalid_token", error_description=...`
//! for a bad token, 401 with a bare challenge for a missing one, 403 with
//! `error="insufficient_scope"` for a missing role, 503 when the issuer's
//! keys cannot be fetched. The token itself is relayed downstream
//! unchanged (the `Authorization` header is not touched).

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use kit::Problem;
use kit::auth::JwtValidator;

use crate::route::Access;

/// The gateway's token check; cheap to clone.
#[derive(Debug, Clone)]
pub struct EdgeAuth {
    /// The validator of `--issuer-url`, shared with the kit's `/admin`
    /// guard (one JWKS cache per process). `None` only when every route is
    /// public, which [`crate::build`] checks at start.
    validator: Option<JwtValidator>,
}

impl EdgeAuth {
    pub fn new(validator: Option<JwtValidator>) -> EdgeAuth {
        EdgeAuth { validator }
    }

    /// Whether tokens can be checked at all.
    pub fn has_validator(&self) -> bool {
        self.validator.is_some()
    }

    /// Lets the request through, or answers it.
    pub async fn check(&self, access: &Access, headers: &HeaderMap) -> Result<(), Response> {
        let Access::Authenticated { roles } = access else {
            return Ok(());
        };
        let Some(validator) = &self.validator else {
            // Unreachable by construction (start-up refuses protected routes
            // without an issuer); answer safely rather than let it through.
            tracing::error!("a protected route was reached without a token validator");
            return Err(Problem::internal().into_response());
        };
        match validator.authorize(headers, roles).await {
            Ok(_) => Ok(()),
            Err(rejected) => {
                tracing::debug!(reason = %rejected, "request rejected at the edge");
                Err(rejected.into_response())
            }
        }
    }
}
