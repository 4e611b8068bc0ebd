//! Whose data a caller may read: the rule "a user sees and changes only
//! what is theirs; the `admin` role sees everything", in one place for
//! every service that stores data per customer (orders, notifications).
//!
//! The owner of a stored record is the token's `sub` (what order-service
//! writes as `customer_id`, and notification-service copies from the
//! event). A record of someone else is answered as if it did not exist
//! (404, not 403), so ids cannot be probed.

use axum::http::HeaderMap;

use super::error::{Rejected, TokenRejection};
use super::jwt::JwtValidator;
use super::{ADMIN_ROLE, AuthError};

/// What a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything: a token with the `admin` realm role, or a service run
    /// without an issuer (nothing can say who the caller is: tests, a
    /// service started by hand).
    All,
    /// Only records whose owner is this subject.
    Owner(String),
}

impl Scope {
    /// The caller's scope. With a validator, a valid token is required
    /// (401 without one); its `admin` role gives [`Scope::All`], else its
    /// `sub` is the owner. Without a validator: [`Scope::All`].
    pub async fn of(
        validator: Option<&JwtValidator>,
        headers: &HeaderMap,
    ) -> Result<Scope, Rejected> {
        let Some(v) = validator else {
            return Ok(Scope::All);
        };
        let auth = v.authorize(headers, &[]).await?;
        Scope::from_claims(&auth.claims).map_err(|e| e.in_realm(v.realm()))
    }

    /// The scope a validated token's claims give.
    pub fn from_claims(claims: &super::Claims) -> Result<Scope, AuthError> {
        if claims.has_role(ADMIN_ROLE) {
            return Ok(Scope::All);
        }
        match claims.sub.as_deref() {
            Some(sub) if !sub.is_empty() => Ok(Scope::Owner(sub.to_string())),
            _ => Err(TokenRejection::MissingSubject.into()),
        }
    }

    /// The owner to filter by (`None`: no filter).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Owner(o) => Some(o),
        }
    }

    /// Whether a record owned by `owner` is visible.
    pub fn may_read(&self, owner: &str) -> bool {
        self.owner().is_none_or(|o| o == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(sub: Option<&str>, roles: &[&str]) -> super::super::Claims {
        serde_json::from_value(json!({
            "exp": 10, "iss": "http://h/realms/platform", "sub": sub,
            "realm_access": {"roles": roles}
        }))
        .unwrap()
    }

    /// A user is scoped to their subject, an admin sees all, a token without a subject is refused.
    #[test]
    fn scope_from_claims() {
        let alice = Scope::from_claims(&claims(Some("a-1"), &["user"])).unwrap();
        assert_eq!(alice, Scope::Owner("a-1".into()));
        assert!(alice.may_read("a-1") && !alice.may_read("b-2"));
        let admin = Scope::from_claims(&claims(Some("ad"), &["user", "admin"])).unwrap();
        assert_eq!(admin, Scope::All);
        assert!(admin.may_read("anyone") && admin.owner().is_none());
        assert_eq!(
            Scope::from_claims(&claims(None, &["user"])),
            Err(AuthError::InvalidToken(TokenRejection::MissingSubject))
        );
    }

    /// Without a validator (no issuer configured) every caller sees everything.
    #[tokio::test]
    async fn no_issuer_sees_all() {
        assert_eq!(
            Scope::of(None, &HeaderMap::new()).await.unwrap(),
            Scope::All
        );
    }
}
