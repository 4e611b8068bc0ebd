//! Who may change the registry.
//!
//! Netflix Eureka's REST API is open by default: anyone who reaches it can
//! register an instance and be sent the gateway's traffic (and the tokens it
//! relays). Spring Cloud users close it with Spring Security's HTTP Basic on
//! the server and the credentials in the clients' `defaultZone` URL
//! (`http://user:password@host:8761/eureka/`); we do the same. Given
//! `--registry-username`/`--registry-password` (`REGISTRY_USERNAME`,
//! `REGISTRY_PASSWORD`), every write (`POST` register, `PUT` renew, status
//! and metadata, `DELETE` cancel and status overrides) needs them; reads
//! (`GET`, `HEAD`) stay open, as Eureka's do, for dashboards and clients that
//! only discover. Without them writes are open, so plain Eureka clients work
//! unchanged (the default).
//!
//! With `--issuer-url` set, a bearer JWT carrying the `service` realm role
//! (a service account's client-credentials token) is accepted too, checked
//! by the same validator as `/admin`.
//!
//! Credentials are compared as SHA-256 digests in constant time, so neither
//! the time taken nor an early exit tells how much of a guess was right or
//! how long the password is.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kit::Problem;
use kit::auth::{JwtValidator, SERVICE_ROLE};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;

/// The protection realm named in challenges.
pub const REALM: &str = "eureka";

/// How writes are authenticated, when they are.
#[derive(Clone)]
pub struct WriteAuth {
    /// SHA-256 of the user name and of the password; the secret itself is
    /// not kept.
    username: [u8; 32],
    password: [u8; 32],
    /// Accepts service-role bearer JWTs too, when an issuer is configured.
    jwt: Option<JwtValidator>,
}

impl std::fmt::Debug for WriteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAuth")
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl WriteAuth {
    /// Writes need `username`/`password` (or, with `jwt`, a service-role token).
    pub fn new(username: &str, password: &str, jwt: Option<JwtValidator>) -> WriteAuth {
        WriteAuth {
            username: digest(username.as_bytes()),
            password: digest(password.as_bytes()),
            jwt,
        }
    }

    /// From the common options: `None` (writes open) unless both the user
    /// name and the password are set.
    pub fn from_common(common: &kit::CommonArgs, jwt: Option<JwtValidator>) -> Option<WriteAuth> {
        let credentials = common.registry_credentials()?;
        Some(WriteAuth::new(
            credentials.username(),
            credentials.password().expose_secret(),
            jwt,
        ))
    }

    /// Whether service-role JWTs are accepted too.
    pub fn accepts_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Whether `username`/`password` are the configured ones (constant time).
    pub fn matches(&self, username: &[u8], password: &[u8]) -> bool {
        let user_ok = digest(username).ct_eq(&self.username);
        let password_ok = digest(password).ct_eq(&self.password);
        (user_ok & password_ok).into()
    }

    /// Checks a write's credentials; the error is the answer to send.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(self.unauthorized("registry writes need credentials (HTTP Basic)"));
        };
        let value = value.as_bytes();
        let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
            Some(i) => (&value[..i], value[i + 1..].trim_ascii()),
            None => (value, &[][..]),
        };
        if scheme.eq_ignore_ascii_case(b"basic") {
            return match basic_pair(rest) {
                Some((user, password)) if self.matches(&user, &password) => Ok(()),
                Some(_) => Err(self.unauthorized("wrong registry credentials")),
                None => {
                    Err(self
                        .unauthorized("the Basic credentials are not base64 of `user:password`"))
                }
            };
        }
        if scheme.eq_ignore_ascii_case(b"bearer")
            && let Some(jwt) = &self.jwt
        {
            return jwt
                .authorize(headers, &[SERVICE_ROLE.to_string()])
                .await
                .map(|_| ())
                .map_err(|rejected| {
                    let mut res = rejected.into_response();
                    res.headers_mut()
                        .append(header::WWW_AUTHENTICATE, basic_challenge());
                    res
                });
        }
        Err(self.unauthorized("registry writes need HTTP Basic credentials"))
    }

    /// 401 problem+json with the challenges a client can answer.
    fn unauthorized(&self, detail: &str) -> Response {
        let mut res = Problem::with_detail(StatusCode::UNAUTHORIZED, detail)
            .kind("unauthorized")
            .into_response();
        let headers = res.headers_mut();
        headers.append(header::WWW_AUTHENTICATE, basic_challenge());
        if self.jwt.is_some() {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"eureka\""),
            );
        }
        res
    }
}

fn basic_challenge() -> HeaderValue {
    HeaderValue::from_static("Basic realm=\"eureka\", charset=\"UTF-8\"")
}

/// `user` and `password` of a Basic credential (RFC 7617: base64 of
/// `user:password`, the password after the first colon).
fn basic_pair(encoded: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    // Real credentials are short; do not decode a megabyte of header.
    if encoded.len() > 4096 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Whether `method` only reads.
fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware on the Eureka routes: writes need credentials when
/// [`AppState::write_auth`] is set; reads always pass.
pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(auth) = &s.write_auth
        && !is_read(req.method())
        && let Err(res) = auth.check(req.headers()).await
    {
        tracing::info!(method = %req.method(), path = req.uri().path(), status = res.status().as_u16(), "registry write refused");
        return res;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authz: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(authz).unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Only the exact pair matches; a password may contain colons.
    #[test]
    fn matches_exactly() {
        let a = WriteAuth::new("eureka", "pa:ss", None);
        assert!(a.matches(b"eureka", b"pa:ss"));
        for (u, p) in [
            ("eureka", "pa:s"),
            ("eureka", "pa:sss"),
            ("Eureka", "pa:ss"),
            ("", ""),
        ] {
            assert!(!a.matches(u.as_bytes(), p.as_bytes()), "{u}:{p}");
        }
        assert_eq!(
            basic_pair(b"ZXVyZWthOnBhOnNz"),
            Some((b"eureka".to_vec(), b"pa:ss".to_vec()))
        );
        assert_eq!(basic_pair(b"not base64!"), None);
        assert_eq!(basic_pair(b"bm9jb2xvbg=="), None);
    }

    /// Right credentials pass; none, wrong ones, other schemes and garbage get 401 with the
    /// Basic challenge; a bearer token without an issuer is no credential.
    #[tokio::test]
    async fn checks_the_header() {
        let a = WriteAuth::new("eureka", "secret", None);
        assert!(a.check(&headers(&basic("eureka", "secret"))).await.is_ok());
        assert!(
            a.check(&headers(
                &basic("eureka", "secret").replace("Basic", "basic")
            ))
            .await
            .is_ok()
        );
        for bad in [
            basic("eureka", "wrong"),
            basic("other", "secret"),
            "Basic".to_string(),
            "Basic ???".to_string(),
            "Bearer abc".to_string(),
            "Digest x".to_string(),
        ] {
            let res = a.check(&headers(&bad)).await.unwrap_err();
            assert_eq!(res.status(), 401, "{bad}");
            assert_eq!(
                res.headers()[header::WWW_AUTHENTICATE],
                "Basic realm=\"eureka\", charset=\"UTF-8\""
            );
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
        }
        let res = a.check(&HeaderMap::new()).await.unwrap_err();
        assert_eq!(res.status(), 401);
    }
}
