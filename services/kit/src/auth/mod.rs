//! Authentication: Keycloak-style JWT validation, route guards, and the
//! protection of every service's `/admin` endpoints.
//!
//! - [`JwtValidator`] ([`jwt`]) checks bearer tokens against an issuer's
//!   published keys ([`keys`]: OIDC discovery, cached JWKS, rate-limited
//!   refresh on unknown `kid`, periodic refresh).
//! - [`RequireRoles`] / [`require_roles`] ([`guard`]) protect routes and hand
//!   the validated [`Authenticated`] token to handlers.
//! - [`AdminAuth`] protects `/admin`: with `--issuer-url` configured, a JWT
//!   carrying the `admin` realm role; without, the shared `ADMIN_TOKEN`
//!   fallback (tests, a service run by hand); with neither, closed.
//! - [`RoleGuard`] / [`require_role`] protect API routes that need a realm
//!   role (catalogue writes: `admin`; stock reservations: `service`) the same
//!   way: a JWT with the role, or without an issuer the shared admin token.
//! - [`Scope`] ([`scope`]) says whose data a caller may read: their own, or
//!   everything for the `admin` role.
//! - [`ServiceToken`] ([`client`]) obtains and caches a service account's
//!   token (client credentials grant) for calls to other services.
//! - Failures are [`AuthError`]s, answered as [`Rejected`] (401/403 with
//!   RFC 6750 challenges, problem+json bodies).

pub mod claims;
pub mod client;
pub mod error;
pub mod guard;
pub mod jwt;
pub mod keys;
pub mod scope;

#[cfg(test)]
mod tests;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

pub use claims::{Audience, Claims, RealmAccess};
pub use client::{ServiceToken, ServiceTokenError};
pub use error::{AuthError, Rejected, TokenRejection};
pub use guard::{RequireRoles, require_roles};
pub use jwt::{Authenticated, IssuerPolicy, JwtValidator, ValidatorConfig, bearer_token};
pub use keys::{KeySource, OidcDiscovery};
pub use scope::Scope;

use crate::clock::Clock;
use crate::config::CommonArgs;

/// The realm role `/admin` endpoints (and catalogue writes) require.
pub const ADMIN_ROLE: &str = "admin";
/// The realm role of service accounts calling service-to-service endpoints
/// (stock reservations).
pub const SERVICE_ROLE: &str = "service";

/// How admin requests are authenticated.
#[derive(Clone)]
pub enum AdminAuth {
    /// A JWT from the configured issuer carrying the [`ADMIN_ROLE`] realm role.
    Jwt(JwtValidator),
    /// Fallback when no issuer is configured: `Authorization: Bearer <token>`
    /// must carry this shared token (compared in constant time).
    Token(SecretString),
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAuth::Jwt(v) => f.debug_tuple("AdminAuth::Jwt").field(v).finish(),
            AdminAuth::Token(_) => f.write_str("AdminAuth::Token(****)"),
        }
    }
}

impl AdminAuth {
    /// The admin authentication `common` asks for: JWT with the admin role
    /// when `--issuer-url` is set, else the configured token. With neither,
    /// `/admin` is closed: it takes a random token that is never shown (a
    /// shared secret printed in a log is readable by everyone who reads logs).
    pub fn from_common(common: &CommonArgs, http: &reqwest::Client) -> AdminAuth {
        if let Some(issuer) = &common.issuer_url {
            if common.admin_token.is_some() {
                tracing::warn!(
                    "both ISSUER_URL and ADMIN_TOKEN are set; /admin requires a JWT with the admin role and ignores the token"
                );
            }
            let config =
                ValidatorConfig::new(issuer.as_str()).audiences(common.jwt_audience.clone());
            tracing::info!(issuer = %issuer, "/admin requires a JWT with the admin realm role");
            return AdminAuth::Jwt(JwtValidator::discover(config, http.clone(), Clock::System));
        }
        match &common.admin_token {
            Some(t) => AdminAuth::Token(t.clone()),
            None => {
                tracing::warn!(
                    "no ISSUER_URL or ADMIN_TOKEN configured: /admin refuses every request (set ISSUER_URL for JWTs with the admin role)"
                );
                AdminAuth::Token(generate_token())
            }
        }
    }

    /// Checks a request's credentials; with a JWT, returns the validated token.
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<Option<Authenticated>, Rejected> {
        self.authorize_roles(headers, &[ADMIN_ROLE.to_string()])
            .await
    }

    /// Checks a request's credentials for `roles`: with a JWT, a valid token
    /// carrying every one of them; with the shared token (no issuer: nothing
    /// can say which roles a caller has), that token stands in for every role.
    pub async fn authorize_roles(
        &self,
        headers: &HeaderMap,
        roles: &[String],
    ) -> Result<Option<Authenticated>, Rejected> {
        match self {
            AdminAuth::Jwt(validator) => validator.authorize(headers, roles).await.map(Some),
            AdminAuth::Token(expected) => {
                let presented = bearer_token(headers).map_err(|e| e.in_realm("admin"))?;
                let ok: bool = presented
                    .as_bytes()
                    .ct_eq(expected.expose_secret().as_bytes())
                    .into();
                if ok {
                    Ok(None)
                } else {
                    Err(AuthError::from(TokenRejection::WrongAdminToken).in_realm("admin"))
                }
            }
        }
    }

    /// The validator, when admin access is by JWT.
    pub fn validator(&self) -> Option<&JwtValidator> {
        match self {
            AdminAuth::Jwt(v) => Some(v),
            AdminAuth::Token(_) => None,
        }
    }
}

/// Middleware guarding the admin router.
pub async fn require_admin(
    State(auth): State<AdminAuth>,
    mut req: Request,
    next: Next,
) -> Response {
    match auth.authorize(req.headers()).await {
        Ok(Some(authenticated)) => {
            req.extensions_mut().insert(authenticated);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(rejected) => rejected.into_response(),
    }
}

/// An [`AdminAuth`] plus the realm roles an API route requires, for
/// [`require_role`].
#[derive(Debug, Clone)]
pub struct RoleGuard {
    pub auth: AdminAuth,
    pub roles: std::sync::Arc<[String]>,
}

impl RoleGuard {
    pub fn new(auth: AdminAuth, roles: impl IntoIterator<Item = impl Into<String>>) -> RoleGuard {
        RoleGuard {
            auth,
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }
}

/// Middleware guarding API routes that need a role (see
/// [`AdminAuth::authorize_roles`]): 401 without valid credentials, 403
/// without the role; the validated token goes into the extensions.
pub async fn require_role(
    State(guard): State<RoleGuard>,
    mut req: Request,
    next: Next,
) -> Response {
    match guard
        .auth
        .authorize_roles(req.headers(), &guard.roles)
        .await
    {
        Ok(Some(authenticated)) => {
            req.extensions_mut().insert(authenticated);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(rejected) => rejected.into_response(),
    }
}

/// A random token nobody knows: what `/admin` takes when nothing is
/// configured (and the identity provider's placeholder).
pub fn generate_token() -> SecretString {
    use rand::Rng;
    let bytes: [u8; 24] = rand::thread_rng().r#gen();
    SecretString::from(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
    ))
}
