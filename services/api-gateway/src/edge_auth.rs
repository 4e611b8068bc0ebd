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
//!
//! Verdicts are remembered: an RS256 signature check costs 100-200 µs of
//! CPU with the pure-Rust RSA the platform uses, and a client sends the
//! same token with every request until it expires. So a token the
//! validator accepted is kept, by its exact text, in a bounded map until
//! its `exp` (and at most [`MAX_REMEMBER`], so a key the issuer withdraws
//! stops being honoured soon after the validator's next key refresh).
//! Only accepted tokens are remembered, so nobody without a valid token
//! can fill the map; roles are checked on every request, per route.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use kit::Problem;
use kit::auth::{AuthError, Claims, JwtValidator, bearer_token};
use kit::clock::Clock;
use parking_lot::RwLock;

use crate::route::Access;

/// Longest a verdict is remembered, whatever the token's `exp`.
pub const MAX_REMEMBER: Duration = Duration::from_secs(60);

/// The gateway's token check; cheap to clone.
#[derive(Debug, Clone)]
pub struct EdgeAuth {
    /// The validator of `--issuer-url`, shared with the kit's `/admin`
    /// guard (one JWKS cache per process). `None` only when every route is
    /// public, which [`crate::build`] checks at start.
    validator: Option<JwtValidator>,
    verdicts: Arc<Verdicts>,
}

/// Tokens the validator accepted, by their exact text.
#[derive(Debug)]
struct Verdicts {
    /// Shared by every request; written only on a miss that validated.
    map: RwLock<HashMap<Arc<str>, Remembered, TailHash>>,
    /// Most tokens kept (0: nothing is remembered).
    capacity: usize,
    clock: Clock,
}

#[derive(Debug)]
struct Remembered {
    claims: Arc<Claims>,
    until_millis: u64,
}

impl EdgeAuth {
    /// `remember` tokens at most (0 verifies every request's signature).
    pub fn new(validator: Option<JwtValidator>, remember: usize, clock: Clock) -> EdgeAuth {
        EdgeAuth {
            validator,
            verdicts: Arc::new(Verdicts {
                map: RwLock::new(HashMap::default()),
                capacity: remember,
                clock,
            }),
        }
    }

    /// Whether tokens can be checked at all.
    pub fn has_validator(&self) -> bool {
        self.validator.is_some()
    }

    /// How many verdicts are remembered now.
    pub fn remembered(&self) -> usize {
        self.verdicts.map.read().len()
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
        match self.authorize(validator, headers, roles).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let rejected = error.in_realm(validator.realm());
                tracing::debug!(reason = %rejected, "request rejected at the edge");
                Err(rejected.into_response())
            }
        }
    }

    async fn authorize(
        &self,
        validator: &JwtValidator,
        headers: &HeaderMap,
        roles: &[String],
    ) -> Result<(), AuthError> {
        let token = bearer_token(headers)?;
        let claims = match self.verdicts.recall(token) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(validator.validate(token).await?);
                self.verdicts.remember(token, &claims);
                claims
            }
        };
        let missing = claims.missing_roles(roles);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(AuthError::InsufficientRole {
                missing: missing.into_iter().map(str::to_string).collect(),
            })
        }
    }
}

/// Hashes a token by its length and its last [`TailHash::BYTES`] bytes
/// only. A token is about a kilobyte and is looked up on every request:
/// SipHash over all of it cost more than the rest of the edge check. The
/// tail of a JWT is its signature, which differs between any two tokens
/// the issuer signed, and the map holds only tokens the validator
/// accepted, so tokens sharing a tail cannot pile up in one bucket; the
/// key comparison is still over the whole text. The hasher is SipHash with
/// the process's random keys, like the default.
#[derive(Debug, Default, Clone)]
struct TailHash(std::collections::hash_map::RandomState);

impl TailHash {
    const BYTES: usize = 32;
}

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0
            .write(&bytes[bytes.len().saturating_sub(TailHash::BYTES)..]);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl Verdicts {
    fn recall(&self, token: &str) -> Option<Arc<Claims>> {
        if self.capacity == 0 {
            return None;
        }
        let now = self.clock.now_millis();
        let map = self.map.read();
        let r = map.get(token)?;
        (now < r.until_millis).then(|| r.claims.clone())
    }

    fn remember(&self, token: &str, claims: &Arc<Claims>) {
        if self.capacity == 0 {
            return;
        }
        let now = self.clock.now_millis();
        let exp = u64::try_from(claims.exp).unwrap_or(0).saturating_mul(1000);
        let until = exp.min(now + MAX_REMEMBER.as_millis() as u64);
        if until <= now {
            return;
        }
        let mut map = self.map.write();
        if map.len() >= self.capacity {
            map.retain(|_, r| r.until_millis > now);
            if map.len() >= self.capacity {
                // Still full of live tokens: start over rather than grow;
                // the next request of each client validates once more.
                map.clear();
            }
        }
        map.insert(
            Arc::from(token),
            Remembered {
                claims: claims.clone(),
                until_millis: until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::{Value, json};

    const ISSUER: &str = "http://idp.test/realms/platform";

    struct StaticKeys(Value);

    #[async_trait::async_trait]
    impl kit::auth::KeySource for StaticKeys {
        async fn fetch_jwks(&self) -> Result<Value, String> {
            Ok(self.0.clone())
        }
    }

    fn b64(b: impl AsRef<[u8]>) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b)
    }

    struct Setup {
        auth: EdgeAuth,
        clock: Clock,
        key: EncodingKey,
    }

    fn setup(remember: usize) -> Setup {
        let pem = include_str!("../tests/api/keys/rsa-a.pem");
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
        jwk["kid"] = json!("k1");
        let clock = Clock::manual(1_893_456_000_000);
        let validator = JwtValidator::new(
            kit::auth::ValidatorConfig::new(ISSUER),
            Arc::new(StaticKeys(json!({"keys": [jwk]}))),
            clock.clone(),
        );
        Setup {
            auth: EdgeAuth::new(Some(validator), remember, clock.clone()),
            clock,
            key,
        }
    }

    fn token(s: &Setup, exp_in: i64, roles: &[&str]) -> HeaderMap {
        let now = (s.clock.now_millis() / 1000) as i64;
        let claims = json!({"exp": now + exp_in, "iat": now, "iss": ISSUER, "typ": "Bearer",
            "realm_access": {"roles": roles}});
        let msg = format!(
            "{}.{}",
            b64(json!({"alg": "RS256", "kid": "k1"}).to_string()),
            b64(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &s.key, Algorithm::RS256).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {msg}.{sig}")).unwrap(),
        );
        h
    }

    fn access(roles: &[&str]) -> Access {
        Access::Authenticated {
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// An accepted token is remembered; roles are still checked per route;
    /// the verdict ends at the token's expiry.
    #[tokio::test]
    async fn remembers_until_expiry_and_checks_roles_each_time() {
        let s = setup(16);
        let h = token(&s, 90, &["user"]);
        assert!(s.auth.check(&access(&["user"]), &h).await.is_ok());
        assert_eq!(s.auth.remembered(), 1);
        assert!(s.auth.check(&access(&["user"]), &h).await.is_ok());
        assert_eq!(s.auth.remembered(), 1, "a hit adds nothing");
        let res = s.auth.check(&access(&["admin"]), &h).await.unwrap_err();
        assert_eq!(
            res.status(),
            403,
            "roles are per route, even for a remembered token"
        );
        // 59 s later: remembered still; 61 s: MAX_REMEMBER passed, validated again (still valid).
        s.clock.advance(Duration::from_secs(59));
        assert!(s.auth.verdicts.recall(bearer_token(&h).unwrap()).is_some());
        s.clock.advance(Duration::from_secs(2));
        assert!(s.auth.verdicts.recall(bearer_token(&h).unwrap()).is_none());
        assert!(s.auth.check(&access(&["user"]), &h).await.is_ok());
        // Past exp (90 s) plus the validator's 60 s leeway: rejected, remembered or not.
        s.clock.advance(Duration::from_secs(100));
        let res = s.auth.check(&access(&["user"]), &h).await.unwrap_err();
        assert_eq!(res.status(), 401);
    }

    /// Rejected tokens are never remembered; the map stays within its capacity.
    #[tokio::test]
    async fn only_accepted_tokens_and_bounded() {
        let s = setup(2);
        let mut bad = token(&s, 90, &["user"]);
        let v = bad["authorization"].to_str().unwrap().to_string();
        bad.insert(
            "authorization",
            HeaderValue::from_str(&format!("{v}x")).unwrap(),
        );
        assert_eq!(
            s.auth.check(&access(&[]), &bad).await.unwrap_err().status(),
            401
        );
        assert_eq!(s.auth.remembered(), 0);
        for k in 0..5 {
            let h = token(&s, 90 + k, &["user"]);
            assert!(s.auth.check(&access(&[]), &h).await.is_ok());
            assert!(s.auth.remembered() <= 2);
        }
        let off = setup(0);
        let h = token(&off, 90, &["user"]);
        assert!(off.auth.check(&access(&[]), &h).await.is_ok());
        assert_eq!(off.auth.remembered(), 0);
    }

    /// A token that ends like a remembered one (same signature, other
    /// payload) is not taken for it: only the hash looks at the tail.
    #[tokio::test]
    async fn same_tail_other_token_is_not_recalled() {
        let s = setup(16);
        let h = token(&s, 90, &["user"]);
        assert!(s.auth.check(&access(&["user"]), &h).await.is_ok());
        let good = bearer_token(&h).unwrap().to_string();
        let (head, rest) = good.split_once('.').unwrap();
        let forged = format!("{head}x.{rest}");
        assert!(s.auth.verdicts.recall(&good).is_some());
        assert!(s.auth.verdicts.recall(&forged).is_none());
        let mut bad = HeaderMap::new();
        bad.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {forged}")).unwrap(),
        );
        assert_eq!(
            s.auth.check(&access(&[]), &bad).await.unwrap_err().status(),
            401
        );
    }
}
