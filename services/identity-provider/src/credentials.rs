//! Password credentials as Keycloak exports them, and their verification.
//!
//! A realm export carries a password either as a plain `value` (Keycloak
//! hashes it at import) or as the stored hash: `secretData` is a JSON
//! string `{"value": base64(hash), "salt": base64(salt)}` and
//! `credentialData` a JSON string `{"hashIterations": n, "algorithm":
//! "pbkdf2-sha256"}`. Keycloak derives the hash with PBKDF2-HMAC over the
//! UTF-8 password, the salt and the iterations, the derived length being
//! the stored hash's length; so do we.
//!
//! Comparisons are constant time: hashes with `subtle`, plain values by
//! comparing SHA-256 digests (so neither content nor length leaks). PBKDF2
//! is deliberately slow; callers run [`PasswordCredential::verify`] on the
//! blocking pool.

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::realm::CredentialExport;

/// The most PBKDF2 iterations accepted from a file (a bound on CPU per login).
const MAX_ITERATIONS: u32 = 10_000_000;

/// Keycloak's PBKDF2 variants that we can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf2Prf {
    Sha256,
    Sha512,
}

/// A user's password, ready to check.
#[derive(Clone)]
pub enum PasswordCredential {
    /// A plain `value` from the file, kept only as its SHA-256 digest.
    Plain([u8; 32]),
    /// A Keycloak PBKDF2 hash.
    Pbkdf2 {
        prf: Pbkdf2Prf,
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl std::fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordCredential::Plain(_) => f.write_str("Plain(****)"),
            PasswordCredential::Pbkdf2 {
                prf, iterations, ..
            } => write!(f, "Pbkdf2({prf:?}, {iterations} iterations, ****)"),
        }
    }
}

#[derive(Deserialize)]
struct SecretData {
    value: String,
    #[serde(default)]
    salt: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialData {
    hash_iterations: i64,
    algorithm: String,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("{what} is not base64: {e}"))
}

impl PasswordCredential {
    /// Reads a `password` credential of a realm export.
    pub fn from_export(c: &CredentialExport) -> Result<PasswordCredential, String> {
        if let Some(value) = &c.value {
            return Ok(PasswordCredential::Plain(
                Sha256::digest(value.as_bytes()).into(),
            ));
        }
        let (Some(secret), Some(data)) = (&c.secret_data, &c.credential_data) else {
            return Err(
                "a password credential needs \"value\" or \"secretData\" and \"credentialData\""
                    .into(),
            );
        };
        let secret: SecretData = serde_json::from_str(secret)
            .map_err(|e| format!("secretData is not Keycloak's JSON: {e}"))?;
        let data: CredentialData = serde_json::from_str(data)
            .map_err(|e| format!("credentialData is not Keycloak's JSON: {e}"))?;
        let prf = match data.algorithm.as_str() {
            "pbkdf2-sha256" => Pbkdf2Prf::Sha256,
            "pbkdf2-sha512" => Pbkdf2Prf::Sha512,
            other => {
                return Err(format!(
                    "password hash algorithm {other} is not supported (pbkdf2-sha256, pbkdf2-sha512)"
                ));
            }
        };
        let iterations = u32::try_from(data.hash_iterations)
            .ok()
            .filter(|n| (1..=MAX_ITERATIONS).contains(n))
            .ok_or_else(|| {
                format!(
                    "hashIterations {} is outside 1..={MAX_ITERATIONS}",
                    data.hash_iterations
                )
            })?;
        let hash = b64(&secret.value, "the hash")?;
        let salt = b64(&secret.salt, "the salt")?;
        if !(16..=128).contains(&hash.len()) {
            return Err(format!(
                "a {}-byte hash is not a Keycloak PBKDF2 hash",
                hash.len()
            ));
        }
        Ok(PasswordCredential::Pbkdf2 {
            prf,
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` matches, in constant time for a given credential.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            PasswordCredential::Plain(digest) => {
                let presented: [u8; 32] = Sha256::digest(password.as_bytes()).into();
                presented.ct_eq(digest).into()
            }
            PasswordCredential::Pbkdf2 {
                prf,
                iterations,
                salt,
                hash,
            } => {
                let mut derived = vec![0u8; hash.len()];
                match prf {
                    Pbkdf2Prf::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(
                        password.as_bytes(),
                        salt,
                        *iterations,
                        &mut derived,
                    ),
                    Pbkdf2Prf::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(
                        password.as_bytes(),
                        salt,
                        *iterations,
                        &mut derived,
                    ),
                }
                derived.ct_eq(hash).into()
            }
        }
    }

    /// Work comparable to checking a real hash, for unknown users, so the
    /// answer time does not tell which usernames exist.
    pub fn dummy_verify(password: &str) {
        let mut derived = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            password.as_bytes(),
            b"timing-equaliser",
            27_500,
            &mut derived,
        );
        std::hint::black_box(derived);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(algorithm: &str, iterations: i64, password: &str, salt: &[u8]) -> CredentialExport {
        let mut hash = vec![0u8; if algorithm.ends_with("512") { 64 } else { 32 }];
        if algorithm.ends_with("512") {
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations as u32, &mut hash);
        } else {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations as u32, &mut hash);
        }
        let e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        CredentialExport {
            kind: Some("password".into()),
            value: None,
            temporary: false,
            secret_data: Some(format!(
                r#"{{"value":"{}","salt":"{}","additionalParameters":{{}}}}"#,
                e(&hash),
                e(salt)
            )),
            credential_data: Some(format!(
                r#"{{"hashIterations":{iterations},"algorithm":"{algorithm}","additionalParameters":{{}}}}"#
            )),
        }
    }

    /// A hash exported by Keycloak (pbkdf2-sha256, 27500 iterations) verifies its password and nothing else.
    #[test]
    fn keycloak_exported_hash() {
        // As a real Keycloak exported it (found in a public realm export): user "user1", password "user1".
        let c = CredentialExport {
            kind: Some("password".into()),
            value: None,
            temporary: false,
            secret_data: Some(r#"{"value":"9qur72LAICdhFeb2SpkJt2jbOYaxJ44g9T+E7bmJXxI=","salt":"AGHjXoWftkFxnk/dcZRNnA==","additionalParameters":{}}"#.into()),
            credential_data: Some(r#"{"hashIterations":27500,"algorithm":"pbkdf2-sha256","additionalParameters":{}}"#.into()),
        };
        let p = PasswordCredential::from_export(&c).unwrap();
        assert!(p.verify("user1"));
        for wrong in ["password", "User1", "user1 ", ""] {
            assert!(!p.verify(wrong), "{wrong}");
        }
    }

    /// pbkdf2-sha256 and pbkdf2-sha512 hashes verify the right password only; plain values too.
    #[test]
    fn hashed_and_plain() {
        for alg in ["pbkdf2-sha256", "pbkdf2-sha512"] {
            let p =
                PasswordCredential::from_export(&hashed(alg, 1000, "s3cret", b"0123456789abcdef"))
                    .unwrap();
            assert!(p.verify("s3cret"), "{alg}");
            assert!(!p.verify("s3cret!") && !p.verify(""), "{alg}");
        }
        let plain = CredentialExport {
            kind: Some("password".into()),
            value: Some("alice".into()),
            temporary: false,
            secret_data: None,
            credential_data: None,
        };
        let p = PasswordCredential::from_export(&plain).unwrap();
        assert!(p.verify("alice") && !p.verify("alic") && !p.verify("alice2"));
        assert_eq!(format!("{p:?}"), "Plain(****)");
    }

    /// Unsupported algorithms, absurd iteration counts and broken JSON are refused at load.
    #[test]
    fn bad_exports() {
        let mut c = hashed("pbkdf2-sha256", 10, "x", b"salt");
        c.credential_data = Some(r#"{"hashIterations":1,"algorithm":"bcrypt"}"#.into());
        assert!(
            PasswordCredential::from_export(&c)
                .unwrap_err()
                .contains("bcrypt")
        );
        c.credential_data = Some(r#"{"hashIterations":0,"algorithm":"pbkdf2-sha256"}"#.into());
        assert!(
            PasswordCredential::from_export(&c)
                .unwrap_err()
                .contains("hashIterations")
        );
        c.credential_data = Some("not json".into());
        assert!(PasswordCredential::from_export(&c).is_err());
        c.credential_data = None;
        assert!(PasswordCredential::from_export(&c).is_err());
    }
}
