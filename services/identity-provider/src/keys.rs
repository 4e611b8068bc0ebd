//! Signing keys and their rotation.
//!
//! Tokens are signed RS256 with the newest *active* key; every key that
//! may still have live tokens is published in the JWKS. Rotation follows
//! the order validators need to never fail a request:
//!
//! 1. the new key is published at once (JWKS), but does not sign yet;
//! 2. after the activation delay it starts signing: validators have had
//!    time to refresh (they also refetch on the first unknown `kid`, at most
//!    once per 5 s, so the default delay is longer than that);
//! 3. the old key stops signing but stays published until every token it
//!    signed has expired (the realm's longest token lifespan plus skew),
//!    then disappears from the JWKS.
//!
//! Time is read from a [`Clock`] so tests drive the schedule.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use kit::clock::Clock;
use parking_lot::RwLock;
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Failure to create or load a signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    #[error("not an RSA private key in PEM (PKCS#1 or PKCS#8): {0}")]
    Pem(String),
    #[error("the RSA key has {0} bits; at least 2048 are required")]
    TooShort(usize),
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// One RSA signing key with everything derived from it.
pub struct SigningKey {
    /// RFC 7638 thumbprint of the public key: stable for a key file.
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public JWK as published.
    pub jwk: Value,
    /// Base64 DER SubjectPublicKeyInfo, as Keycloak's realm page shows it.
    pub public_key_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A new RSA-2048 key. CPU-heavy (tens to hundreds of ms): call it on
    /// the blocking pool.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        SigningKey::from_private(key)
    }

    /// A key from PEM text: `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let key = RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        SigningKey::from_private(key)
    }

    fn from_private(key: RsaPrivateKey) -> Result<SigningKey, KeyError> {
        let bits = key.size() * 8;
        if bits < 2048 {
            return Err(KeyError::TooShort(bits));
        }
        let der = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let public = key.to_public_key();
        let (n, e) = (public.n().to_bytes_be(), public.e().to_bytes_be());
        let (n64, e64) = (b64url(&n), b64url(&e));
        // RFC 7638: members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"e":"{e64}","kty":"RSA","n":"{n64}"}}"#);
        let kid = b64url(&Sha256::digest(thumbprint_input.as_bytes()));
        let spki = public
            .to_public_key_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(SigningKey {
            jwk: json!({"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", "n": n64, "e": e64}),
            public_key_b64: base64::engine::general_purpose::STANDARD.encode(spki.as_bytes()),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            kid,
        })
    }

    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// A key's place in the rotation schedule (clock millis).
struct Entry {
    key: Arc<SigningKey>,
    published_at: u64,
    active_from: u64,
}

/// What `GET /admin/keys` and `POST /admin/keys/rotate` report about a key.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    pub kid: String,
    /// `pending` (published, not signing yet), `active` (signing) or
    /// `retired` (published until its tokens expire).
    pub state: String,
    pub published_at: u64,
    pub active_from: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
    /// When it leaves the JWKS (retired keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpublish_at: Option<u64>,
}

/// The realm's signing keys over time.
pub struct KeyRing {
    /// In order of publication; pruned when a retired key's tokens are all expired.
    entries: RwLock<Vec<Entry>>,
    clock: Clock,
    activation_delay: Duration,
    /// How long a retired key stays published.
    retention: Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.status())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring whose first key signs at once.
    pub fn new(
        first: SigningKey,
        clock: Clock,
        activation_delay: Duration,
        retention: Duration,
    ) -> KeyRing {
        let now = clock.now_millis();
        KeyRing {
            entries: RwLock::new(vec![Entry {
                key: Arc::new(first),
                published_at: now,
                active_from: now,
            }]),
            clock,
            activation_delay,
            retention,
        }
    }

    /// When entry `i` stopped signing: when a later key became active.
    fn retired_at(entries: &[Entry], i: usize, now: u64) -> Option<u64> {
        entries[i + 1..]
            .iter()
            .map(|e| e.active_from)
            .filter(|t| *t <= now)
            .min()
    }

    fn is_published(&self, entries: &[Entry], i: usize, now: u64) -> bool {
        match KeyRing::retired_at(entries, i, now) {
            Some(t) => now < t + self.retention.as_millis() as u64,
            None => true,
        }
    }

    /// The key that signs now: the newest active one.
    pub fn signing_key(&self) -> Arc<SigningKey> {
        let now = self.clock.now_millis();
        let entries = self.entries.read();
        // Invariant: the first entry is active from creation, so one always qualifies.
        entries
            .iter()
            .rev()
            .find(|e| e.active_from <= now)
            .unwrap_or(&entries[0])
            .key
            .clone()
    }

    /// Keys currently published.
    pub fn published(&self) -> Vec<Arc<SigningKey>> {
        let now = self.clock.now_millis();
        let entries = self.entries.read();
        (0..entries.len())
            .filter(|i| self.is_published(&entries, *i, now))
            .map(|i| entries[i].key.clone())
            .collect()
    }

    /// A published key by kid (to verify our own refresh tokens).
    pub fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.published().into_iter().find(|k| k.kid == kid)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.published().iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// Publishes `key` now; it signs after the activation delay. Keys whose
    /// tokens have all expired are dropped.
    pub fn rotate(&self, key: SigningKey) -> KeyStatus {
        let now = self.clock.now_millis();
        let mut entries = self.entries.write();
        let keep: Vec<bool> = (0..entries.len())
            .map(|i| self.is_published(&entries, i, now))
            .collect();
        let mut i = 0;
        entries.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let kid = key.kid.clone();
        entries.push(Entry {
            key: Arc::new(key),
            published_at: now,
            active_from: now + self.activation_delay.as_millis() as u64,
        });
        tracing::info!(%kid, delay = ?self.activation_delay, "new signing key published; it signs after the delay");
        drop(entries);
        self.status()
            .into_iter()
            .find(|s| s.kid == kid)
            .unwrap_or_else(|| KeyStatus {
                kid,
                state: "pending".into(),
                published_at: now,
                active_from: now + self.activation_delay.as_millis() as u64,
                retired_at: None,
                unpublish_at: None,
            })
    }

    /// Every published key with its schedule.
    pub fn status(&self) -> Vec<KeyStatus> {
        let now = self.clock.now_millis();
        let entries = self.entries.read();
        let signing = entries
            .iter()
            .rposition(|e| e.active_from <= now)
            .unwrap_or(0);
        (0..entries.len())
            .filter(|i| self.is_published(&entries, *i, now))
            .map(|i| {
                let e = &entries[i];
                let retired_at = KeyRing::retired_at(&entries, i, now);
                let state = if i == signing {
                    "active"
                } else if e.active_from > now {
                    "pending"
                } else {
                    "retired"
                };
                KeyStatus {
                    kid: e.key.kid.clone(),
                    state: state.into(),
                    published_at: e.published_at,
                    active_from: e.active_from,
                    retired_at: retired_at.filter(|_| state == "retired"),
                    unpublish_at: retired_at
                        .filter(|_| state == "retired")
                        .map(|t| t + self.retention.as_millis() as u64),
                }
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl kit::auth::KeySource for KeyRing {
    async fn fetch_jwks(&self) -> Result<Value, String> {
        Ok(self.jwks())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared pair of keys: generating RSA keys is the slow part of these tests.
    fn keys() -> (SigningKey, SigningKey) {
        (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        )
    }

    /// Publish first, sign after the delay, unpublish the old key once its tokens expired.
    #[test]
    fn rotation_schedule() {
        let clock = Clock::manual(1_000_000);
        let (k1, k2) = keys();
        let (kid1, kid2) = (k1.kid.clone(), k2.kid.clone());
        let ring = KeyRing::new(
            k1,
            clock.clone(),
            Duration::from_secs(10),
            Duration::from_secs(360),
        );
        assert_eq!(ring.signing_key().kid, kid1);

        let st = ring.rotate(k2);
        assert_eq!(
            (st.kid.as_str(), st.state.as_str()),
            (kid2.as_str(), "pending")
        );
        // Published at once, not signing yet.
        assert_eq!(ring.published().len(), 2);
        assert_eq!(ring.signing_key().kid, kid1);

        clock.advance(Duration::from_secs(10));
        assert_eq!(ring.signing_key().kid, kid2);
        let status = ring.status();
        assert_eq!(status[0].state, "retired");
        assert_eq!(status[0].unpublish_at, Some(1_010_000 + 360_000));
        assert!(ring.find(&kid1).is_some());

        clock.advance(Duration::from_secs(359));
        assert_eq!(ring.published().len(), 2);
        clock.advance(Duration::from_secs(1));
        let kids: Vec<String> = ring.published().iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, std::slice::from_ref(&kid2));
        assert_eq!(ring.jwks()["keys"][0]["kid"], kid2);
    }

    /// Keys load from PKCS#1 and PKCS#8 PEM with a stable thumbprint kid; short keys and junk are refused.
    #[test]
    fn pem_keys() {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let pkcs1 = key.to_pkcs1_pem(Default::default()).unwrap();
        let pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, Default::default()).unwrap();
        let a = SigningKey::from_pem(&pkcs1).unwrap();
        let b = SigningKey::from_pem(&pkcs8).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.kid.len(), 43);
        assert_eq!(a.jwk["alg"], "RS256");
        let short = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let short = short.to_pkcs1_pem(Default::default()).unwrap();
        assert!(matches!(
            SigningKey::from_pem(&short),
            Err(KeyError::TooShort(1024))
        ));
        assert!(matches!(
            SigningKey::from_pem("junk"),
            Err(KeyError::Pem(_))
        ));
    }
}
