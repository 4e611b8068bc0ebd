//! A service account's access token, for calls one service makes to
//! another (order-service reserving stock at inventory-service).
//!
//! The token comes from the OAuth 2.0 client credentials grant at the
//! issuer's token endpoint (Keycloak's `<issuer>/protocol/openid-connect/token`,
//! client authenticated with `client_secret_basic`), is cached, and is
//! fetched again when 80 % of its lifetime has passed or after the callee
//! refused it ([`ServiceToken::invalidate`]). Concurrent callers share one
//! fetch: the cache sits behind an async mutex held across the request.
//!
//! Without an issuer (tests, a service run by hand) the shared admin token
//! stands in, as it does on the receiving side ([`super::AdminAuth`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// Longest wait for the token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no service token could be had.
#[derive(Debug, thiserror::Error)]
pub enum ServiceTokenError {
    #[error("cannot reach the token endpoint {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the token endpoint {url} refused the client credentials of {client_id}: {status} {body}"
    )]
    Refused {
        url: String,
        client_id: String,
        status: u16,
        body: String,
    },
    #[error("the token endpoint {url} answered without a usable access token: {reason}")]
    Malformed { url: String, reason: String },
}

/// Credentials a service presents to another; cheap to clone.
#[derive(Clone)]
pub enum ServiceToken {
    /// A service account's token by the client credentials grant.
    ClientCredentials(Arc<ClientCredentials>),
    /// A fixed bearer token (the shared admin token when no issuer is configured).
    Static(SecretString),
    /// Nothing to present.
    None,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceToken::ClientCredentials(c) => f
                .debug_struct("ServiceToken::ClientCredentials")
                .field("token_url", &c.token_url)
                .field("client_id", &c.client_id)
                .finish_non_exhaustive(),
            ServiceToken::Static(_) => f.write_str("ServiceToken::Static(****)"),
            ServiceToken::None => f.write_str("ServiceToken::None"),
        }
    }
}

/// The client credentials grant of one client, with its cached token.
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    secret: SecretString,
    http: reqwest::Client,
    /// The current token and when to fetch the next; held during a fetch so
    /// that concurrent callers wait for it instead of fetching too.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl ServiceToken {
    /// The client credentials grant of `client_id` at `issuer`'s token endpoint.
    pub fn client_credentials(
        issuer: &Url,
        client_id: impl Into<String>,
        secret: SecretString,
        http: reqwest::Client,
    ) -> ServiceToken {
        let token_url = format!(
            "{}/protocol/openid-connect/token",
            issuer.as_str().trim_end_matches('/')
        );
        ServiceToken::ClientCredentials(Arc::new(ClientCredentials {
            token_url,
            client_id: client_id.into(),
            secret,
            http,
            cached: tokio::sync::Mutex::new(None),
        }))
    }

    /// The bearer token to send, fetching one if none is cached or it is
    /// due for renewal; `None` when there is nothing to present.
    pub async fn bearer(&self) -> Result<Option<SecretString>, ServiceTokenError> {
        match self {
            ServiceToken::None => Ok(None),
            ServiceToken::Static(t) => Ok(Some(t.clone())),
            ServiceToken::ClientCredentials(c) => c.token().await.map(Some),
        }
    }

    /// Forgets the cached token (the callee answered 401: it may have been
    /// revoked or signed by a retired key), so the next call fetches anew.
    pub async fn invalidate(&self) {
        if let ServiceToken::ClientCredentials(c) = self {
            *c.cached.lock().await = None;
        }
    }
}

impl ClientCredentials {
    async fn token(&self) -> Result<SecretString, ServiceTokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let fetched = Instant::now();
        let res = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .timeout(TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|source| ServiceTokenError::Request {
                url: self.token_url.clone(),
                source,
            })?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|source| ServiceTokenError::Request {
                url: self.token_url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(ServiceTokenError::Refused {
                url: self.token_url.clone(),
                client_id: self.client_id.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| ServiceTokenError::Malformed {
                url: self.token_url.clone(),
                reason: e.to_string(),
            })?;
        if answer.access_token.is_empty() {
            return Err(ServiceTokenError::Malformed {
                url: self.token_url.clone(),
                reason: "empty access_token".into(),
            });
        }
        // Renew after 80 % of the lifetime (Keycloak's default is 300 s);
        // without `expires_in`, after a minute.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60));
        let token = SecretString::from(answer.access_token);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: fetched + lifetime.mul_f64(0.8),
        });
        tracing::debug!(client_id = %self.client_id, lifetime = ?lifetime, "service token fetched");
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::post;

    /// A token endpoint that counts its calls and checks the client's basic credentials.
    async fn token_endpoint(calls: Arc<AtomicUsize>, expires_in: u64) -> Url {
        let app = axum::Router::new().route(
            "/realms/platform/protocol/openid-connect/token",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let calls = calls.clone();
                async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    // base64("svc:secret")
                    if auth != "Basic c3ZjOnNlY3JldA==" || body != "grant_type=client_credentials" {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            r#"{"error":"invalid_client"}"#.to_string(),
                        );
                    }
                    (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"access_token":"t{n}","expires_in":{expires_in}}}"#),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{port}/realms/platform")
            .parse()
            .unwrap()
    }

    /// One fetch serves many calls; invalidation fetches anew; wrong credentials are a typed error.
    #[tokio::test]
    async fn caches_and_refetches() {
        let calls = Arc::new(AtomicUsize::new(0));
        let issuer = token_endpoint(calls.clone(), 300).await;
        let t = ServiceToken::client_credentials(
            &issuer,
            "svc",
            SecretString::from("secret"),
            reqwest::Client::new(),
        );
        let (a, b) = tokio::join!(t.bearer(), t.bearer());
        assert_eq!(a.unwrap().unwrap().expose_secret(), "t0");
        assert_eq!(b.unwrap().unwrap().expose_secret(), "t0");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        t.invalidate().await;
        assert_eq!(t.bearer().await.unwrap().unwrap().expose_secret(), "t1");

        let wrong = ServiceToken::client_credentials(
            &issuer,
            "svc",
            SecretString::from("nope"),
            reqwest::Client::new(),
        );
        let err = wrong.bearer().await.unwrap_err();
        assert!(
            matches!(err, ServiceTokenError::Refused { status: 401, .. }),
            "{err}"
        );
    }

    /// A token whose lifetime is over is fetched again.
    #[tokio::test]
    async fn expired_token_is_renewed() {
        let calls = Arc::new(AtomicUsize::new(0));
        let issuer = token_endpoint(calls.clone(), 0).await;
        let t = ServiceToken::client_credentials(
            &issuer,
            "svc",
            SecretString::from("secret"),
            reqwest::Client::new(),
        );
        assert_eq!(t.bearer().await.unwrap().unwrap().expose_secret(), "t0");
        assert_eq!(t.bearer().await.unwrap().unwrap().expose_secret(), "t1");
        assert!(matches!(ServiceToken::None.bearer().await, Ok(None)));
    }
}
