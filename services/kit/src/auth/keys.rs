//! Verification keys: where they come from and how they are cached.
//!
//! A [`KeySource`] produces a JWKS document: [`OidcDiscovery`] reads the
//! issuer's `/.well-known/openid-configuration` and then its `jwks_uri`
//! (what every OIDC relying party does with Keycloak); the identity
//! provider implements the trait over its own key ring so it checks its
//! admin tokens without calling itself over HTTP.
//!
//! [`KeyCache`] keeps the parsed keys by `kid` and decides when to fetch:
//! a cached key is used without any I/O; an unknown `kid` triggers a fetch,
//! but at most one per `min_refresh_interval` (a stream of forged kids must
//! not turn validators into a flood against the identity provider), and
//! concurrent misses wait for that one fetch instead of starting their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;
use serde_json::Value;

use crate::clock::Clock;

/// Largest discovery or JWKS document read (real ones are a few KiB).
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// RSA keys shorter than this are ignored (RFC 7518 §3.3 requires 2048).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Something that can produce the issuer's current JWKS.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// The JWKS document (`{"keys": [...]}`).
    async fn fetch_jwks(&self) -> Result<Value, String>;
}

/// Keys found through OpenID Connect discovery.
#[derive(Debug, Clone)]
pub struct OidcDiscovery {
    issuer: String,
    http: reqwest::Client,
    timeout: Duration,
    /// Whether the discovery document must name exactly `issuer` (OIDC
    /// Discovery §4.3); off only when the issuer is not a fixed URL.
    check_issuer: bool,
}

impl OidcDiscovery {
    /// Discovery for `issuer` (without trailing slash), e.g.
    /// `http://identity-provider:8180/realms/platform`.
    pub fn new(issuer: &str, http: reqwest::Client) -> OidcDiscovery {
        OidcDiscovery {
            issuer: issuer.trim_end_matches('/').to_string(),
            http,
            timeout: Duration::from_secs(5),
            check_issuer: true,
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut res = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {url}: status {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}

#[async_trait::async_trait]
impl KeySource for OidcDiscovery {
    async fn fetch_jwks(&self) -> Result<Value, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let doc = self.get_json(&url).await?;
        if self.check_issuer {
            let announced = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
            if announced != self.issuer {
                return Err(format!(
                    "{url} announces issuer {announced:?}, not {:?}; set the issuer URL to the one the provider announces",
                    self.issuer
                ));
            }
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url} has no jwks_uri"))?;
        self.get_json(jwks_uri).await
    }
}

/// One verification key.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64url_len(s: &str) -> Option<usize> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
        .map(|b| b.len())
}

/// The signature keys of a JWKS we accept: RSA (RS256, at least 2048 bits)
/// and EC P-256 (ES256), each with a `kid`. Encryption keys, other
/// algorithms and broken entries are skipped, so one odd key (Keycloak also
/// publishes an `RSA-OAEP` encryption key) does not hide the others.
pub fn parse_jwks(doc: &Value) -> Result<Vec<VerifyKey>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" array")?;
    let mut out = Vec::new();
    for k in keys {
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        let Some(kid) = field("kid") else { continue };
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let parsed = match (field("kty"), field("alg")) {
            (Some("RSA"), None | Some("RS256")) => {
                let (Some(n), Some(e)) = (field("n"), field("e")) else {
                    continue;
                };
                if b64url_len(n).is_none_or(|l| l < MIN_RSA_MODULUS_BYTES) {
                    tracing::warn!(kid, "ignoring an RSA key shorter than 2048 bits");
                    continue;
                }
                DecodingKey::from_rsa_components(n, e).map(|key| (Algorithm::RS256, key))
            }
            (Some("EC"), None | Some("ES256")) if field("crv") == Some("P-256") => {
                let (Some(x), Some(y)) = (field("x"), field("y")) else {
                    continue;
                };
                if b64url_len(x) != Some(32) || b64url_len(y) != Some(32) {
                    continue;
                }
                DecodingKey::from_ec_components(x, y).map(|key| (Algorithm::ES256, key))
            }
            _ => continue,
        };
        match parsed {
            Ok((alg, key)) => out.push(VerifyKey {
                kid: kid.to_string(),
                alg,
                key,
            }),
            Err(e) => tracing::warn!(kid, error = %e, "ignoring an unreadable JWKS key"),
        }
    }
    Ok(out)
}

/// Outcome of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<VerifyKey>),
    /// Not in the JWKS, even after a fetch (or a fetch was not allowed yet).
    Unknown,
    /// Not cached and the keys could not be fetched.
    Unavailable(String),
}

/// Verification keys by `kid`, refreshed on demand and periodically.
pub struct KeyCache {
    source: Arc<dyn KeySource>,
    clock: Clock,
    min_refresh_interval: Duration,
    /// The current keys; replaced whole on every successful fetch so keys
    /// the issuer withdrew stop being accepted.
    keys: RwLock<Arc<HashMap<String, Arc<VerifyKey>>>>,
    /// Held while fetching: concurrent misses queue here and then find the
    /// key (or the rate limit) instead of fetching again.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Clock millis of the last fetch attempt; 0 = never. The rate limit.
    last_attempt: AtomicU64,
    /// Whether the last fetch attempt succeeded.
    last_ok: AtomicBool,
    /// Fetch attempts so far (exported for tests and diagnostics).
    fetches: AtomicU64,
    /// Why the last fetch failed, for [`Lookup::Unavailable`].
    last_error: RwLock<Option<String>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("kids", &self.kids())
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    pub fn new(source: Arc<dyn KeySource>, clock: Clock, min_refresh_interval: Duration) -> Self {
        KeyCache {
            source,
            clock,
            min_refresh_interval,
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_attempt: AtomicU64::new(0),
            last_ok: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
            last_error: RwLock::new(None),
        }
    }

    /// The cached kids, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// How many fetches were attempted.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Whether keys were ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.last_ok.load(Ordering::SeqCst) || !self.keys.read().is_empty()
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.read().get(kid).cloned()
    }

    /// The key `kid`: from the cache without I/O, else after one (shared,
    /// rate-limited) fetch.
    pub async fn get(&self, kid: &str) -> Lookup {
        if let Some(k) = self.cached(kid) {
            return Lookup::Found(k);
        }
        let _guard = self.fetch_lock.lock().await;
        // A fetch that finished while we queued may have brought it.
        if let Some(k) = self.cached(kid) {
            return Lookup::Found(k);
        }
        let now = self.clock.now_millis();
        let last = self.last_attempt.load(Ordering::SeqCst);
        let too_soon =
            last != 0 && now.saturating_sub(last) < self.min_refresh_interval.as_millis() as u64;
        if too_soon {
            return if self.last_ok.load(Ordering::SeqCst) {
                Lookup::Unknown
            } else {
                Lookup::Unavailable(self.last_error.read().clone().unwrap_or_default())
            };
        }
        match self.fetch_locked(now).await {
            Ok(()) => match self.cached(kid) {
                Some(k) => Lookup::Found(k),
                None => Lookup::Unknown,
            },
            Err(e) => Lookup::Unavailable(e),
        }
    }

    /// Fetches now regardless of the rate limit (periodic refresh, start).
    pub async fn refresh(&self) -> Result<(), String> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_locked(self.clock.now_millis()).await
    }

    async fn fetch_locked(&self, now: u64) -> Result<(), String> {
        self.last_attempt.store(now.max(1), Ordering::SeqCst);
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let result = match self.source.fetch_jwks().await {
            Ok(doc) => parse_jwks(&doc),
            Err(e) => Err(e),
        };
        match result {
            Ok(keys) => {
                let map: HashMap<_, _> = keys
                    .into_iter()
                    .map(|k| (k.kid.clone(), Arc::new(k)))
                    .collect();
                tracing::debug!(keys = map.len(), "signing keys refreshed");
                *self.keys.write() = Arc::new(map);
                self.last_ok.store(true, Ordering::SeqCst);
                *self.last_error.write() = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the issuer's signing keys");
                self.last_ok.store(false, Ordering::SeqCst);
                *self.last_error.write() = Some(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Encryption keys, short RSA keys, other algorithms and keys without kid are skipped.
    #[test]
    fn jwks_filtering() {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let doc = json!({"keys": [
            {"kid": "sig", "kty": "RSA", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kid": "noalg", "kty": "RSA", "n": n, "e": "AQAB"},
            {"kid": "enc", "kty": "RSA", "alg": "RSA-OAEP", "use": "enc", "n": n, "e": "AQAB"},
            {"kid": "ps", "kty": "RSA", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kid": "short", "kty": "RSA", "alg": "RS256", "n": short, "e": "AQAB"},
            {"kid": "hmac", "kty": "oct", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "RSA", "alg": "RS256", "n": n, "e": "AQAB"},
            {"kid": "odd", "kty": "OKP", "crv": "Ed25519", "x": "abc"}
        ]});
        let kids: Vec<String> = parse_jwks(&doc)
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, ["sig", "noalg"]);
        assert!(parse_jwks(&json!({"nokeys": []})).is_err());
    }
}
