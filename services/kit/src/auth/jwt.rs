//! Validation of Keycloak-style JWT access tokens.
//!
//! [`JwtValidator`] checks, in this order, and stops at the first failure:
//! size and shape; the header's `alg` against the allow-list (RS256 and
//! ES256 only: `none` and every HMAC algorithm are refused before any key
//! is touched, which is what defeats "HS256 signed with the public key");
//! `crit`; the `kid` against the cached JWKS (fetching on a miss, rate
//! limited); that the key is for that algorithm; the signature
//! (jsonwebtoken); `iss` (exact); `typ` (an access token's `Bearer`, so a
//! refresh or ID token cannot be used instead); `exp`, `nbf` and `iat` with
//! a bounded clock skew; `aud` (or `azp`) when audiences are configured;
//! and finally required realm roles.
//!
//! Time is read from a [`Clock`], so tests move it instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use backoff::Backoff;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::claims::Claims;
use super::error::{AuthError, Rejected, TokenRejection};
use super::keys::{KeyCache, KeySource, Lookup, OidcDiscovery};
use crate::clock::Clock;

/// Tokens longer than this are refused unread (Keycloak's are ~1-2 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Which `iss` values are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerPolicy {
    /// Exactly this issuer (without trailing slash). The normal case.
    Exact(String),
    /// `http(s)://<any host>/realms/<realm>`: only for a validator whose keys
    /// are the issuer's own private keys (the identity provider checking its
    /// own admin tokens), where the host part of `iss` merely reflects the
    /// `Host` header a token was requested with and carries no trust.
    AnyHostForRealm(String),
}

impl IssuerPolicy {
    fn accepts(&self, iss: &str) -> bool {
        match self {
            IssuerPolicy::Exact(expected) => iss == expected,
            IssuerPolicy::AnyHostForRealm(realm) => {
                let rest = iss
                    .strip_prefix("http://")
                    .or_else(|| iss.strip_prefix("https://"));
                match rest.and_then(|r| r.split_once('/')) {
                    Some((authority, path)) => {
                        !authority.is_empty()
                            && !authority.contains(['@', ' '])
                            && path.strip_prefix("realms/") == Some(realm.as_str())
                    }
                    None => false,
                }
            }
        }
    }
}

/// How a [`JwtValidator`] checks tokens.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    pub issuer: IssuerPolicy,
    /// Accepted audiences; empty means `aud` is not checked. A token passes
    /// when its `aud` names one of them or its `azp` is one of them
    /// (Keycloak's own adapters accept the authorized party too).
    pub audiences: Vec<String>,
    /// Allowed clock skew for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    pub min_refresh_interval: Duration,
    /// How often the keys are refreshed in the background.
    pub refresh_interval: Duration,
    /// The realm named in `WWW-Authenticate` challenges.
    pub realm: String,
}

impl ValidatorConfig {
    /// Defaults for an issuer URL such as
    /// `http://identity-provider:8180/realms/platform`: 60 s skew, unknown-kid
    /// refresh at most every 5 s, background refresh every 5 min, the realm
    /// taken from the issuer's last path segment.
    pub fn new(issuer: &str) -> ValidatorConfig {
        let issuer = issuer.trim_end_matches('/').to_string();
        let realm = issuer
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty() && !s.contains(':'))
            .unwrap_or("platform")
            .to_string();
        ValidatorConfig {
            issuer: IssuerPolicy::Exact(issuer),
            audiences: Vec::new(),
            leeway: Duration::from_secs(60),
            min_refresh_interval: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(300),
            realm,
        }
    }

    pub fn audiences(mut self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }
}

/// A validated token, put into request extensions by the guards so
/// handlers (and the gateway, which relays it) can read it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Arc<Claims>,
    /// The token as presented, for relaying downstream.
    pub token: Arc<str>,
}

struct Inner {
    config: ValidatorConfig,
    /// Shared by every clone: one JWKS cache and one fetch schedule per validator.
    keys: KeyCache,
    /// `exp`/`nbf`/`iat` checks and the refresh rate limit; manual in tests.
    clock: Clock,
    /// `config.realm`, shared into every rejection without copying.
    realm: Arc<str>,
}

/// Validates bearer tokens of one issuer; cheap to clone (shared cache).
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("issuer", &self.inner.config.issuer)
            .field("audiences", &self.inner.config.audiences)
            .field("keys", &self.inner.keys)
            .finish()
    }
}

/// The key source of a misconfigured validator: an issuer pattern has no
/// URL to discover keys from, so every lookup reports keys unavailable.
struct NoDiscovery;

#[async_trait::async_trait]
impl KeySource for NoDiscovery {
    async fn fetch_jwks(&self) -> Result<Value, String> {
        Err("an issuer pattern has no discovery URL; give the validator a key source".into())
    }
}

/// The parts of a JOSE header the validator reads.
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    has_crit: bool,
}

fn b64url_decode(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

fn read_header(token: &str) -> Result<(JoseHeader, &str), TokenRejection> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed(
            "a JWT has three dot-separated parts".into(),
        ));
    };
    if h.is_empty() || p.is_empty() {
        return Err(TokenRejection::Malformed("empty header or payload".into()));
    }
    let bytes = b64url_decode(h)
        .ok_or_else(|| TokenRejection::Malformed("header is not base64url".into()))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenRejection::Malformed("header is not JSON".into()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| TokenRejection::Malformed("header is not a JSON object".into()))?;
    let alg = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| TokenRejection::Malformed("header has no alg".into()))?
        .to_string();
    Ok((
        JoseHeader {
            alg,
            kid: obj.get("kid").and_then(Value::as_str).map(str::to_string),
            has_crit: obj.contains_key("crit"),
        },
        p,
    ))
}

impl JwtValidator {
    /// A validator over any key source.
    pub fn new(config: ValidatorConfig, source: Arc<dyn KeySource>, clock: Clock) -> JwtValidator {
        let keys = KeyCache::new(source, clock.clone(), config.min_refresh_interval);
        let realm: Arc<str> = Arc::from(config.realm.as_str());
        JwtValidator {
            inner: Arc::new(Inner {
                config,
                keys,
                clock,
                realm,
            }),
        }
    }

    /// A validator whose keys come from the issuer's OIDC discovery document.
    /// Needs an [`IssuerPolicy::Exact`] issuer: discovery starts from its URL.
    pub fn discover(config: ValidatorConfig, http: reqwest::Client, clock: Clock) -> JwtValidator {
        let source: Arc<dyn KeySource> = match &config.issuer {
            IssuerPolicy::Exact(issuer) => Arc::new(OidcDiscovery::new(issuer, http)),
            IssuerPolicy::AnyHostForRealm(_) => Arc::new(NoDiscovery),
        };
        JwtValidator::new(config, source, clock)
    }

    pub fn config(&self) -> &ValidatorConfig {
        &self.inner.config
    }

    /// The key cache (kids, fetch count).
    pub fn keys(&self) -> &KeyCache {
        &self.inner.keys
    }

    /// The protection realm for challenges.
    pub fn realm(&self) -> Arc<str> {
        self.inner.realm.clone()
    }

    /// Validates a token (without role checks) and returns its claims.
    pub async fn validate(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(TokenRejection::Empty.into());
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge(MAX_TOKEN_BYTES).into());
        }
        let (header, _payload) = read_header(token)?;
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(
                    TokenRejection::AlgorithmNotAllowed(other.chars().take(20).collect()).into(),
                );
            }
        };
        if header.has_crit {
            return Err(TokenRejection::UnsupportedCritical.into());
        }
        let kid = header.kid.ok_or(TokenRejection::MissingKeyId)?;
        let key = match self.inner.keys.get(&kid).await {
            Lookup::Found(k) => k,
            Lookup::Unknown => {
                return Err(TokenRejection::UnknownKey(kid.chars().take(64).collect()).into());
            }
            Lookup::Unavailable(e) => return Err(AuthError::KeysUnavailable(e)),
        };
        if key.alg != alg {
            return Err(TokenRejection::KeyAlgorithmMismatch {
                kid,
                key_alg: format!("{:?}", key.alg),
                token_alg: header.alg,
            }
            .into());
        }
        // jsonwebtoken checks the signature; every claim check is ours
        // (clock-driven, Keycloak's rules), so its own are switched off.
        let mut v = jsonwebtoken::Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let claims = match jsonwebtoken::decode::<Claims>(token, &key.key, &v) {
            Ok(data) => data.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                return Err(match e.kind() {
                    K::InvalidSignature => TokenRejection::BadSignature,
                    K::InvalidAlgorithm => TokenRejection::AlgorithmNotAllowed(header.alg),
                    K::Json(_) => {
                        TokenRejection::Malformed("claims are missing or of the wrong type".into())
                    }
                    _ => TokenRejection::Malformed("signature or payload cannot be decoded".into()),
                }
                .into());
            }
        };
        self.check_claims(&claims)?;
        Ok(claims)
    }

    fn check_claims(&self, c: &Claims) -> Result<(), TokenRejection> {
        let cfg = &self.inner.config;
        if !cfg.issuer.accepts(&c.iss) {
            return Err(TokenRejection::WrongIssuer);
        }
        if let Some(typ) = &c.typ
            && !typ.eq_ignore_ascii_case("Bearer")
        {
            return Err(TokenRejection::WrongType(typ.chars().take(20).collect()));
        }
        let now = (self.inner.clock.now_millis() / 1000) as i64;
        let skew = cfg.leeway.as_secs() as i64;
        if now > c.exp.saturating_add(skew) {
            return Err(TokenRejection::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew))
            || c.iat.is_some_and(|iat| iat > now.saturating_add(skew))
        {
            return Err(TokenRejection::NotYetValid);
        }
        if !cfg.audiences.is_empty() {
            let ok = cfg
                .audiences
                .iter()
                .any(|a| c.aud.contains(a) || c.azp.as_deref() == Some(a.as_str()));
            if !ok {
                return Err(TokenRejection::WrongAudience);
            }
        }
        Ok(())
    }

    /// Reads the bearer token of a request, validates it and checks that
    /// it carries every role of `required`.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        required: &[String],
    ) -> Result<Authenticated, Rejected> {
        self.authorize_inner(headers, required)
            .await
            .map_err(|e| e.in_realm(self.inner.realm.clone()))
    }

    async fn authorize_inner(
        &self,
        headers: &HeaderMap,
        required: &[String],
    ) -> Result<Authenticated, AuthError> {
        let token = bearer_token(headers)?;
        let claims = self.validate(token).await?;
        let missing = claims.missing_roles(required);
        if !missing.is_empty() {
            return Err(AuthError::InsufficientRole {
                missing: missing.into_iter().map(str::to_string).collect(),
            });
        }
        Ok(Authenticated {
            claims: Arc::new(claims),
            token: Arc::from(token),
        })
    }

    /// Keeps the keys fresh until `stop`: loads them at once (retrying with
    /// back-off while the issuer is unreachable, e.g. still starting), then
    /// refreshes every `refresh_interval`.
    pub async fn keep_fresh(self, stop: CancellationToken) {
        let mut retry = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let wait = match self.inner.keys.refresh().await {
                Ok(()) => {
                    retry.reset();
                    self.inner.config.refresh_interval
                }
                Err(_) => retry.next_wait(),
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The bearer token of a request. A missing header or another scheme
/// (`Basic ...`) is "no token" (RFC 6750 §3.1: no error code); an empty
/// `Bearer` credential is an invalid token.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let value = value
        .to_str()
        .map_err(|_| TokenRejection::Malformed("the Authorization header is not ASCII".into()))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(TokenRejection::Empty.into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The realm-on-any-host policy accepts only `/realms/<realm>` issuers over http(s).
    #[test]
    fn issuer_policies() {
        let any = IssuerPolicy::AnyHostForRealm("platform".into());
        assert!(any.accepts("http://localhost:8180/realms/platform"));
        assert!(any.accepts("https://idp.example:443/realms/platform"));
        for bad in [
            "http://localhost:8180/realms/other",
            "http://localhost:8180/realms/platform/x",
            "ftp://h/realms/platform",
            "http:///realms/platform",
            "http://a@b/realms/platform",
        ] {
            assert!(!any.accepts(bad), "{bad}");
        }
        let exact = IssuerPolicy::Exact("http://h:1/realms/platform".into());
        assert!(exact.accepts("http://h:1/realms/platform"));
        assert!(!exact.accepts("http://h:1/realms/platform/"));
        assert_eq!(
            ValidatorConfig::new("http://h:1/realms/platform/").realm,
            "platform"
        );
    }

    /// Only the Bearer scheme yields a token; other schemes count as no token.
    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Err(AuthError::MissingToken));
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(bearer_token(&h), Err(AuthError::MissingToken));
        h.insert(header::AUTHORIZATION, "Bearer   ".parse().unwrap());
        assert_eq!(bearer_token(&h), Err(TokenRejection::Empty.into()));
        h.insert(header::AUTHORIZATION, "bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok("abc.def.ghi"));
    }
}
