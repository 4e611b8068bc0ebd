//! Axum glue: a middleware that requires a valid token with given realm
//! roles, and an extractor for the validated token.
//!
//! ```ignore
//! use axum::middleware::from_fn_with_state;
//! let orders = Router::new()
//!     .route("/api/order", post(place_order))
//!     .route_layer(from_fn_with_state(
//!         RequireRoles::new(validator.clone(), ["user"]),
//!         kit::auth::require_roles,
//!     ));
//! async fn place_order(auth: Authenticated, ..) { auth.claims.sub ... }
//! ```
//! The middleware puts an [`Authenticated`] into the request's extensions;
//! handlers take it as an extractor, the gateway relays `auth.token`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{AuthError, Rejected};
use super::jwt::{Authenticated, JwtValidator};

/// A validator plus the realm roles a route requires (all of them).
#[derive(Debug, Clone)]
pub struct RequireRoles {
    pub validator: JwtValidator,
    pub roles: Arc<[String]>,
}

impl RequireRoles {
    pub fn new(
        validator: JwtValidator,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> RequireRoles {
        RequireRoles {
            validator,
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// Any valid token, no role required.
    pub fn authenticated(validator: JwtValidator) -> RequireRoles {
        RequireRoles::new(validator, Vec::<String>::new())
    }
}

/// Middleware: 401/403/503 as [`Rejected`] renders them, else the request
/// goes on with [`Authenticated`] in its extensions.
pub async fn require_roles(
    State(guard): State<RequireRoles>,
    mut req: Request,
    next: Next,
) -> Response {
    match guard.validator.authorize(req.headers(), &guard.roles).await {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Err(rejected) => rejected.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Rejected;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only present behind a guard; without one the route is unprotected
        // and the handler's demand for a token cannot be met.
        parts
            .extensions
            .get::<Authenticated>()
            .cloned()
            .ok_or_else(|| AuthError::MissingToken.in_realm("platform"))
    }
}
