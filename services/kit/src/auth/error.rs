//! Why a request was not let in, and how that is answered.
//!
//! [`AuthError`] is the typed reason; [`Rejected`] pairs it with the
//! protection realm and renders the answer RFC 6750 asks for: 401 with
//! `WWW-Authenticate: Bearer realm="..."` when no bearer token came, 401
//! with `error="invalid_token"` and a description when the token is bad,
//! 403 with `error="insufficient_scope"` when a role is missing. When the
//! token's key is unknown and the issuer's keys cannot be fetched, the
//! answer is 503 with `Retry-After`: the token may well be valid, so a 401
//! would wrongly tell the client to throw it away. The body is an RFC 9457
//! problem like every other error of the platform.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Problem;

/// What is wrong with a presented token. Each reason says which check
/// failed, never anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("the bearer token is empty")]
    Empty,
    #[error("the token is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the signing algorithm {0} is not accepted (allowed: RS256, ES256)")]
    AlgorithmNotAllowed(String),
    #[error("the token header has no key id (kid)")]
    MissingKeyId,
    #[error("the token names an unsupported critical header parameter")]
    UnsupportedCritical,
    #[error("the token is signed with an unknown key (kid {0})")]
    UnknownKey(String),
    #[error("the key {kid} is for {key_alg}, not {token_alg}")]
    KeyAlgorithmMismatch {
        kid: String,
        key_alg: String,
        token_alg: String,
    },
    #[error("the token signature is not valid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was not issued by the expected issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token is of type {0}, not an access token")]
    WrongType(String),
    #[error("the admin token is not valid")]
    WrongAdminToken,
    #[error("the token names no subject (sub)")]
    MissingSubject,
}

/// Why authentication or authorization failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer credential at all (no header, or another scheme such as Basic).
    #[error("a bearer token is required")]
    MissingToken,
    /// A bearer token was presented and is not acceptable.
    #[error(transparent)]
    InvalidToken(#[from] TokenRejection),
    /// The token is fine but lacks a required realm role.
    #[error("the token lacks the required realm role(s): {}", .missing.join(", "))]
    InsufficientRole { missing: Vec<String> },
    /// The token's key is not cached and the issuer's keys cannot be fetched
    /// now, so the token can be neither accepted nor refuted.
    #[error("the issuer's signing keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::InsufficientRole { .. } => StatusCode::FORBIDDEN,
            AuthError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Pairs the error with the realm named in `WWW-Authenticate`.
    pub fn in_realm(self, realm: impl Into<std::sync::Arc<str>>) -> Rejected {
        Rejected {
            error: self,
            realm: realm.into(),
        }
    }
}

/// An [`AuthError`] ready to be answered: it knows its protection realm.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    pub error: AuthError,
    pub realm: std::sync::Arc<str>,
}

/// Makes a value safe inside a quoted-string of an HTTP header: printable
/// ASCII without quotes or backslashes (RFC 6750 §3 restricts
/// `error_description` to that set anyway).
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

impl Rejected {
    /// The `WWW-Authenticate` value, if this answer carries one.
    pub fn www_authenticate(&self) -> Option<String> {
        let realm = header_safe(&self.realm);
        match &self.error {
            AuthError::MissingToken => Some(format!("Bearer realm=\"{realm}\"")),
            AuthError::InvalidToken(r) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                header_safe(&r.to_string())
            )),
            AuthError::InsufficientRole { .. } => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                header_safe(&self.error.to_string())
            )),
            AuthError::KeysUnavailable(_) => None,
        }
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let status = self.error.status();
        match &self.error {
            AuthError::MissingToken => {
                Problem::with_detail(status, self.error.to_string()).kind("unauthorized")
            }
            AuthError::InvalidToken(_) => Problem::with_detail(status, self.error.to_string())
                .kind("invalid-token")
                .with("error", "invalid_token"),
            AuthError::InsufficientRole { missing } => {
                Problem::with_detail(status, self.error.to_string())
                    .kind("insufficient-role")
                    .with("error", "insufficient_scope")
                    .with("missingRoles", missing)
            }
            // The detail (a network error towards the issuer) is logged, not sent.
            AuthError::KeysUnavailable(_) => Problem::unavailable(
                "the token cannot be checked now: the identity provider's keys are unreachable",
            ),
        }
    }
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        if let AuthError::KeysUnavailable(cause) = &self.error {
            tracing::warn!(%cause, "token check impossible: signing keys unavailable");
        }
        let mut res = self.problem().into_response();
        if let Some(v) = self
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if matches!(self.error, AuthError::KeysUnavailable(_)) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of failure gets RFC 6750's status and challenge.
    #[test]
    fn challenges() {
        let missing = AuthError::MissingToken.in_realm("platform");
        assert_eq!(
            missing.www_authenticate().unwrap(),
            "Bearer realm=\"platform\""
        );
        let bad = AuthError::from(TokenRejection::Expired).in_realm("platform");
        assert_eq!(
            bad.www_authenticate().unwrap(),
            "Bearer realm=\"platform\", error=\"invalid_token\", error_description=\"the token expired\""
        );
        let role = AuthError::InsufficientRole {
            missing: vec!["admin".into()],
        }
        .in_realm("platform");
        assert_eq!(role.error.status(), 403);
        assert!(
            role.www_authenticate()
                .unwrap()
                .contains("error=\"insufficient_scope\"")
        );
        assert_eq!(header_safe("a\"b\\c\nd é"), "a b c d  ");
    }
}
