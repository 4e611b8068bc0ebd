//! Access tokens from the stack's identity provider (the Keycloak stand-in in the dev stack,
//! Keycloak itself in the full one): the OAuth 2.0 token endpoint under the issuer the services
//! check (their `ISSUER_URL`), reached from the host through [`super::Observer::resolve`].
//!
//! The issuer inside a token must be the in-network one (`http://identity-provider:8180/realms/
//! platform`), because services compare `iss` exactly. A token fetched from the host at the
//! provider's container address would otherwise carry that address: the dev stack fixes the
//! provider's issuer with `ISSUER_BASE_URL`, and [`TokenSet::check_issuer`] verifies it.
//!
//! The default credentials are the dev realm's (keycloak/realm.json): user `admin`/`admin`
//! through the public client `platform-cli`, and the confidential client `platform-service`
//! whose service account has the `admin` role; `PLATFORM_USER`, `PLATFORM_PASSWORD`,
//! `PLATFORM_CLIENT_ID` and `PLATFORM_CLIENT_SECRET` override them.

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ObserveError, Observer, Result};

/// The dev realm's public client for password grants.
pub const CLI_CLIENT: &str = "platform-cli";
/// The dev realm's confidential client with the `admin` role.
pub const SERVICE_CLIENT: &str = "platform-service";
/// Its secret in the dev realm (a development secret in a file everyone has, not a credential).
pub const SERVICE_CLIENT_SECRET: &str = "platform-service-secret";
/// The dev realm's administrator.
pub const ADMIN_USER: &str = "admin";
/// Its password in the dev realm.
pub const ADMIN_PASSWORD: &str = "admin";

/// How to ask for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Resource owner password (`grant_type=password`) through a public client.
    Password {
        client_id: String,
        username: String,
        password: String,
    },
    /// Client credentials (`grant_type=client_credentials`) of a confidential client.
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    /// A new access token for a refresh token (`grant_type=refresh_token`) of a public client.
    Refresh {
        client_id: String,
        refresh_token: String,
    },
}

impl Grant {
    /// The admin user through `platform-cli`, or the `PLATFORM_USER`/`PLATFORM_PASSWORD` user.
    pub fn default_user() -> Grant {
        Grant::Password {
            client_id: CLI_CLIENT.to_string(),
            username: env_or("PLATFORM_USER", ADMIN_USER),
            password: env_or("PLATFORM_PASSWORD", ADMIN_PASSWORD),
        }
    }

    /// The `platform-service` client, or `PLATFORM_CLIENT_ID`/`PLATFORM_CLIENT_SECRET`: what
    /// the CLI uses for the services' admin endpoints.
    pub fn default_service() -> Grant {
        Grant::ClientCredentials {
            client_id: env_or("PLATFORM_CLIENT_ID", SERVICE_CLIENT),
            client_secret: env_or("PLATFORM_CLIENT_SECRET", SERVICE_CLIENT_SECRET),
        }
    }

    fn form(&self) -> Vec<(&'static str, &str)> {
        match self {
            Grant::Password {
                client_id,
                username,
                password,
            } => vec![
                ("grant_type", "password"),
                ("client_id", client_id),
                ("username", username),
                ("password", password),
            ],
            Grant::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
            ],
            Grant::Refresh {
                client_id,
                refresh_token,
            } => vec![
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", refresh_token),
            ],
        }
    }
}

/// `$key` when set and not empty, else `default`.
pub(crate) fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The parts of a token answer the CLI uses (RFC 6749 section 5.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A token answer: the typed parts and the whole document (for `platform token --json`).
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub token: TokenResponse,
    pub raw: serde_json::Value,
    /// The issuer the services expect.
    pub issuer: Url,
    /// Where the token was fetched.
    pub endpoint: Url,
}

impl TokenSet {
    /// The `iss` of the access token, read without verifying the signature (the services do
    /// that; this only tells a wrong issuer apart from a wrong key).
    pub fn token_issuer(&self) -> Option<String> {
        unverified_claims(&self.token.access_token)?
            .get("iss")?
            .as_str()
            .map(str::to_string)
    }

    /// Fails when the token's issuer is not the one the services check: every request with it
    /// would be refused with 401, so say why now.
    pub fn check_issuer(&self) -> Result<()> {
        let wanted = self.issuer.as_str().trim_end_matches('/');
        match self.token_issuer() {
            Some(iss) if iss.trim_end_matches('/') == wanted => Ok(()),
            got => Err(ObserveError::Setting(format!(
                "the identity provider issued a token for issuer {}, but the services check {wanted}: \
                 set the provider's issuer (ISSUER_BASE_URL for the stand-in, --hostname for Keycloak) \
                 to the address the services use",
                got.as_deref().unwrap_or("(none)")
            ))),
        }
    }
}

/// The claims of a JWT, decoded but not verified.
pub fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `{issuer}/protocol/openid-connect/token`, Keycloak's token endpoint under an issuer.
pub fn token_endpoint(issuer: &Url) -> Result<Url> {
    let text = format!(
        "{}/protocol/openid-connect/token",
        issuer.as_str().trim_end_matches('/')
    );
    Url::parse(&text).map_err(|e| ObserveError::Setting(format!("bad issuer {issuer}: {e}")))
}

/// The RFC 6749 error body.
#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Asks the stack's identity provider for a token and checks its issuer.
pub async fn fetch_token(obs: &Observer, grant: &Grant) -> Result<TokenSet> {
    let issuer = obs.issuer_in_network()?;
    let endpoint = obs.resolve(&token_endpoint(&issuer)?)?;
    let set = request_token(obs.http(), &endpoint, &issuer, grant).await?;
    set.check_issuer()?;
    Ok(set)
}

/// Posts the grant to `endpoint` (no issuer check).
pub async fn request_token(
    http: &reqwest::Client,
    endpoint: &Url,
    issuer: &Url,
    grant: &Grant,
) -> Result<TokenSet> {
    let what = "get a token";
    let req = http.post(endpoint.clone()).form(&grant.form());
    let res = super::send(what, endpoint, req).await?;
    let status = res.status();
    if status.is_client_error() {
        let body = res.text().await.unwrap_or_default();
        return Err(match serde_json::from_str::<OAuthError>(&body) {
            Ok(e) => ObserveError::TokenRefused {
                url: endpoint.to_string(),
                error: e.error,
                description: e.error_description,
            },
            Err(_) => ObserveError::Status {
                what: what.to_string(),
                url: endpoint.to_string(),
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            },
        });
    }
    let res = super::expect_success(what, endpoint, res).await?;
    let raw: serde_json::Value = super::read_json(what, endpoint, res).await?;
    let token: TokenResponse =
        serde_json::from_value(raw.clone()).map_err(|e| ObserveError::Decode {
            what: what.to_string(),
            url: endpoint.to_string(),
            message: e.to_string(),
        })?;
    Ok(TokenSet {
        token,
        raw,
        issuer: issuer.clone(),
        endpoint: endpoint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(claims))
    }

    fn set(iss: &str) -> TokenSet {
        TokenSet {
            token: TokenResponse {
                access_token: jwt(&format!(r#"{{"iss":"{iss}","sub":"x"}}"#)),
                token_type: "Bearer".into(),
                expires_in: 300,
                refresh_token: None,
                scope: None,
            },
            raw: serde_json::Value::Null,
            issuer: Url::parse("http://identity-provider:8180/realms/platform").unwrap(),
            endpoint: Url::parse("http://10.0.0.2:8180/").unwrap(),
        }
    }

    /// A token for the in-network issuer passes; one for the address it was fetched at fails
    /// with a message naming both issuers and the setting that fixes it.
    #[test]
    fn issuer_must_match_exactly() {
        assert!(
            set("http://identity-provider:8180/realms/platform")
                .check_issuer()
                .is_ok()
        );
        let err = set("http://10.0.0.2:8180/realms/platform")
            .check_issuer()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http://10.0.0.2:8180/realms/platform"),
            "{err}"
        );
        assert!(err.contains("ISSUER_BASE_URL"), "{err}");
        assert!(unverified_claims("not-a-jwt").is_none());
    }

    /// The token endpoint sits under the issuer, with or without a trailing slash.
    #[test]
    fn endpoint_under_issuer() {
        for issuer in [
            "http://identity-provider:8180/realms/platform",
            "http://identity-provider:8180/realms/platform/",
        ] {
            assert_eq!(
                token_endpoint(&Url::parse(issuer).unwrap())
                    .unwrap()
                    .as_str(),
                "http://identity-provider:8180/realms/platform/protocol/openid-connect/token"
            );
        }
    }

    /// Each grant sends the form fields RFC 6749 names.
    #[test]
    fn grant_forms() {
        let p = Grant::Password {
            client_id: "c".into(),
            username: "u".into(),
            password: "p".into(),
        };
        assert!(p.form().contains(&("grant_type", "password")));
        assert!(p.form().contains(&("username", "u")));
        let c = Grant::ClientCredentials {
            client_id: "c".into(),
            client_secret: "s".into(),
        };
        assert!(c.form().contains(&("grant_type", "client_credentials")));
        assert!(c.form().contains(&("client_secret", "s")));
    }
}
