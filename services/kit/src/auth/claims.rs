//! The claims of a Keycloak-style access token, as validators read them
//! and the identity provider writes them.
//!
//! One model for both sides, so what the identity-provider mints and what
//! the gateway and admin endpoints check cannot drift apart. The named
//! fields are the ones the platform reads; everything else a token carries
//! (`acr`, `allowed-origins`, `resource_access`, ...) is kept in
//! [`Claims::other`] so a relayed token loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `aud` claim: RFC 7519 allows a single string or an array, and
/// Keycloak writes a string when there is one audience and an array
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Default for Audience {
    fn default() -> Self {
        Audience::Many(Vec::new())
    }
}

impl Audience {
    /// The Keycloak shape for a list of audiences: absent, one string, or an array.
    pub fn from_list(mut list: Vec<String>) -> Audience {
        if list.len() == 1 {
            Audience::One(list.remove(0))
        } else {
            Audience::Many(list)
        }
    }

    /// Every audience named.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Audience::One(a) => (Some(a.as_str()), &[][..]),
            Audience::Many(v) => (None, v.as_slice()),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }

    pub fn contains(&self, audience: &str) -> bool {
        self.iter().any(|a| a == audience)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// `realm_access`: the realm roles granted to the subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealmAccess {
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A token's claims. Field order follows Keycloak's, so minted tokens look
/// like Keycloak's when decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch (Keycloak does not set it; others may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Issuer: `http://host:port/realms/<realm>`.
    pub iss: String,
    /// Audiences.
    #[serde(default, skip_serializing_if = "Audience::is_empty")]
    pub aud: Audience,
    /// Subject: the user's (or service account's) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Token type: `Bearer` for access tokens, `Refresh`, `ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Authorized party: the client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// Session id (absent for client-credentials tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Realm roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_access: Option<RealmAccess>,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Every other claim, kept as is.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Claims {
    /// The realm roles (empty when the token carries none).
    pub fn roles(&self) -> &[String] {
        self.realm_access
            .as_ref()
            .map(|r| r.roles.as_slice())
            .unwrap_or(&[])
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles().iter().any(|r| r == role)
    }

    /// The roles of `required` that the token does not carry.
    pub fn missing_roles<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|r| !self.has_role(r))
            .map(String::as_str)
            .collect()
    }

    /// Whether `scope` lists `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|x| x == wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `aud` reads as a string or an array, and writes back in Keycloak's shape.
    #[test]
    fn audience_shapes() {
        let one: Audience = serde_json::from_value(json!("platform-api")).unwrap();
        let many: Audience = serde_json::from_value(json!(["a", "b"])).unwrap();
        assert!(one.contains("platform-api") && !one.contains("a"));
        assert!(many.contains("b") && !many.is_empty());
        assert_eq!(
            serde_json::to_value(Audience::from_list(vec!["x".into()])).unwrap(),
            json!("x")
        );
        assert!(Audience::from_list(vec![]).is_empty());
    }

    /// Unknown claims survive a round trip; roles and scopes read as expected.
    #[test]
    fn claims_round_trip() {
        let v = json!({
            "exp": 10, "iss": "http://h/realms/platform", "aud": ["platform-api", "account"],
            "typ": "Bearer", "realm_access": {"roles": ["user"]}, "scope": "openid profile",
            "acr": "1", "resource_access": {"account": {"roles": ["view-profile"]}}
        });
        let c: Claims = serde_json::from_value(v.clone()).unwrap();
        assert!(c.has_role("user") && !c.has_role("admin"));
        assert!(c.has_scope("profile") && !c.has_scope("email"));
        assert_eq!(c.missing_roles(&["user".into(), "admin".into()]), ["admin"]);
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
    }
}
