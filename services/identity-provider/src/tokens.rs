//! Minting tokens in Keycloak's shape, and reading back our refresh tokens.
//!
//! Access tokens carry what a Keycloak 2x access token carries for the
//! default client scopes (`profile`, `email`, `roles`): `exp`, `iat`,
//! `jti`, `iss`, `aud` (from the client's audience mappers), `sub`, `typ`
//! `Bearer`, `azp`, `sid`, `acr`, `realm_access.roles`, `scope`,
//! `email_verified`, `name`, `preferred_username`, `given_name`,
//! `family_name`, `email`; client-credentials tokens add `client_id`,
//! `clientHost` and `clientAddress` and have no session.
//!
//! Refresh tokens (`typ` `Refresh`, `aud` = the issuer, as Keycloak) are
//! signed with the same RS256 keys rather than Keycloak's realm HMAC key:
//! one key set to rotate, and validators refuse them by `typ`. They carry
//! `auth_time` so the session's maximum lifespan holds across refreshes
//! without server-side session state.

use base64::Engine;
use jsonwebtoken::{Algorithm, Header, Validation};
use kit::auth::{Audience, Claims, RealmAccess};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::keys::KeyRing;
use crate::realm::{Client, Realm, User};

/// Scopes a token request may ask for: Keycloak's default client scopes.
/// Anything else is `invalid_scope`.
pub const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "roles",
    "web-origins",
    "acr",
    "basic",
];

/// The granted scope: what Keycloak writes for the default client scopes,
/// plus `openid` when asked for (which also yields an ID token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub openid: bool,
}

impl Scope {
    /// Parses a requested `scope` parameter.
    pub fn parse(requested: Option<&str>) -> Result<Scope, String> {
        let mut openid = false;
        for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            if !KNOWN_SCOPES.contains(&s) {
                return Err(format!("Invalid scopes: {s}"));
            }
            openid |= s == "openid";
        }
        Ok(Scope { openid })
    }

    /// From a refresh token's `scope` claim.
    pub fn from_claim(scope: Option<&str>) -> Scope {
        Scope {
            openid: scope.is_some_and(|s| s.split(' ').any(|x| x == "openid")),
        }
    }

    pub fn as_claim(&self) -> String {
        if self.openid {
            "openid profile email".into()
        } else {
            "profile email".into()
        }
    }
}

/// Who a token is for.
pub struct Subject<'a> {
    pub realm: &'a Realm,
    pub client: &'a Client,
    pub user: &'a User,
    pub issuer: &'a str,
    /// Session id; `None` for client credentials (no session, as in Keycloak).
    pub sid: Option<String>,
    /// When the session started (seconds), bounding refresh tokens.
    pub auth_time: i64,
    pub scope: Scope,
    /// The caller's IP (client-credentials tokens record it).
    pub client_address: Option<String>,
}

/// The tokens of one successful token request.
#[derive(Debug)]
pub struct Minted {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh: Option<(String, i64)>,
    pub id_token: Option<String>,
    pub scope: String,
    pub sid: Option<String>,
}

fn sign(keys: &KeyRing, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    let key = keys.signing_key();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, key.encoding())
}

fn profile_claims(user: &User, other: &mut Map<String, Value>) {
    other.insert("email_verified".into(), json!(user.email_verified));
    if let Some(name) = user.full_name() {
        other.insert("name".into(), json!(name));
    }
    if let Some(f) = &user.first_name {
        other.insert("given_name".into(), json!(f));
    }
    if let Some(l) = &user.last_name {
        other.insert("family_name".into(), json!(l));
    }
}

/// Mints the tokens for `s` at `now` (seconds). `with_refresh` is false for
/// client credentials (Keycloak issues no refresh token there by default).
pub fn mint(
    keys: &KeyRing,
    s: &Subject<'_>,
    now: i64,
    with_refresh: bool,
) -> Result<Minted, jsonwebtoken::errors::Error> {
    let lifespan = s.realm.access_token_lifespan(s.client);
    let exp = now + lifespan;
    let scope = s.scope.as_claim();
    let roles = RealmAccess {
        roles: s.user.roles.clone(),
    };

    let mut other = Map::new();
    other.insert("acr".into(), json!("1"));
    profile_claims(s.user, &mut other);
    if s.user.service_account_of.is_some() {
        other.insert("client_id".into(), json!(s.client.client_id));
        if let Some(addr) = &s.client_address {
            other.insert("clientHost".into(), json!(addr));
            other.insert("clientAddress".into(), json!(addr));
        }
    }
    let access = Claims {
        exp,
        iat: Some(now),
        nbf: None,
        jti: Some(uuid::Uuid::new_v4().to_string()),
        iss: s.issuer.to_string(),
        aud: Audience::from_list(s.client.audiences.clone()),
        sub: Some(s.user.id.clone()),
        typ: Some("Bearer".into()),
        azp: Some(s.client.client_id.clone()),
        sid: s.sid.clone(),
        realm_access: Some(roles),
        scope: Some(scope.clone()),
        preferred_username: Some(s.user.username.clone()),
        email: s.user.email.clone(),
        other,
    };
    let access_token = sign(keys, &access)?;

    let refresh = if with_refresh {
        let l = &s.realm.lifespans;
        let refresh_exp = (now + l.session_idle).min(s.auth_time + l.session_max);
        let mut other = Map::new();
        other.insert("auth_time".into(), json!(s.auth_time));
        let claims = Claims {
            exp: refresh_exp,
            iat: Some(now),
            nbf: None,
            jti: Some(uuid::Uuid::new_v4().to_string()),
            iss: s.issuer.to_string(),
            aud: Audience::One(s.issuer.to_string()),
            sub: Some(s.user.id.clone()),
            typ: Some("Refresh".into()),
            azp: Some(s.client.client_id.clone()),
            sid: s.sid.clone(),
            realm_access: None,
            scope: Some(scope.clone()),
            preferred_username: None,
            email: None,
            other,
        };
        Some((sign(keys, &claims)?, refresh_exp - now))
    } else {
        None
    };

    let id_token = if s.scope.openid {
        let digest = Sha256::digest(access_token.as_bytes());
        let mut other = Map::new();
        other.insert("auth_time".into(), json!(s.auth_time));
        other.insert(
            "at_hash".into(),
            json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])),
        );
        other.insert("acr".into(), json!("1"));
        profile_claims(s.user, &mut other);
        let claims = Claims {
            exp,
            iat: Some(now),
            nbf: None,
            jti: Some(uuid::Uuid::new_v4().to_string()),
            iss: s.issuer.to_string(),
            aud: Audience::One(s.client.client_id.clone()),
            sub: Some(s.user.id.clone()),
            typ: Some("ID".into()),
            azp: Some(s.client.client_id.clone()),
            sid: s.sid.clone(),
            realm_access: None,
            scope: None,
            preferred_username: Some(s.user.username.clone()),
            email: s.user.email.clone(),
            other,
        };
        Some(sign(keys, &claims)?)
    } else {
        None
    };

    Ok(Minted {
        access_token,
        expires_in: lifespan,
        refresh,
        id_token,
        scope,
        sid: s.sid.clone(),
    })
}

/// Reads one of our refresh tokens: signature by a published key, `typ`
/// `Refresh`, issuer `issuer`, not expired at `now`. Client binding and the
/// user's state are the caller's checks.
pub fn read_refresh(
    keys: &KeyRing,
    token: &str,
    issuer: &str,
    now: i64,
) -> Result<Claims, &'static str> {
    if token.len() > kit::auth::jwt::MAX_TOKEN_BYTES {
        return Err("Invalid refresh token");
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| "Invalid refresh token")?;
    if header.alg != Algorithm::RS256 {
        return Err("Invalid refresh token");
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or("Invalid refresh token")?;
    let mut v = Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(token, key.decoding(), &v)
        .map_err(|_| "Invalid refresh token")?
        .claims;
    if claims.typ.as_deref() != Some("Refresh") {
        return Err("Invalid refresh token");
    }
    if claims.iss != issuer {
        return Err("Invalid token issuer");
    }
    if claims.exp < now {
        return Err("Token is not active");
    }
    Ok(claims)
}
