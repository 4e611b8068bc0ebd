//! Protection of the `/admin` endpoints.
//!
//! For now a shared bearer token (compared in constant time); the identity
//! issue adds a JWT role check as another [`AdminAuth`] variant, so services
//! do not change when it does.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::Problem;

/// How admin requests are authenticated.
#[derive(Clone)]
pub enum AdminAuth {
    /// `Authorization: Bearer <token>` must carry this token.
    Token(SecretString),
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAuth::Token(_) => f.write_str("AdminAuth::Token(****)"),
        }
    }
}

impl AdminAuth {
    /// Checks the request's credentials.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Problem> {
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match self {
            AdminAuth::Token(expected) => match presented {
                None | Some("") => Err(unauthorized("an admin bearer token is required")),
                Some(token) => {
                    let ok: bool = token
                        .as_bytes()
                        .ct_eq(expected.expose_secret().as_bytes())
                        .into();
                    if ok {
                        Ok(())
                    } else {
                        Err(unauthorized("the admin token is not valid"))
                    }
                }
            },
        }
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::with_detail(StatusCode::UNAUTHORIZED, detail).kind("unauthorized")
}

/// Middleware guarding the admin router.
pub async fn require_admin(State(auth): State<AdminAuth>, req: Request, next: Next) -> Response {
    match auth.check(req.headers().get(header::AUTHORIZATION)) {
        Ok(()) => next.run(req).await,
        Err(problem) => {
            let mut res = problem.into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"admin\""),
            );
            res
        }
    }
}

/// A random token for when none is configured (logged at start, like
/// Spring Boot's generated password).
pub fn generate_token() -> SecretString {
    use rand::Rng;
    let bytes: [u8; 24] = rand::thread_rng().r#gen();
    SecretString::from(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the exact token passes; missing, empty and wrong tokens are 401.
    #[test]
    fn token_check() {
        let auth = AdminAuth::Token(SecretString::from("s3cret"));
        assert!(
            auth.check(Some(&HeaderValue::from_static("Bearer s3cret")))
                .is_ok()
        );
        for bad in ["Bearer wrong", "Bearer ", "Basic s3cret", "s3cret"] {
            let p = auth
                .check(Some(&HeaderValue::from_static(bad)))
                .unwrap_err();
            assert_eq!(p.status, 401, "{bad}");
        }
        assert!(auth.check(None).is_err());
        assert_ne!(
            generate_token().expose_secret(),
            generate_token().expose_secret()
        );
    }
}
