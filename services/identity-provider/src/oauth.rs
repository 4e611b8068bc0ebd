//! The token endpoint: `POST /realms/{realm}/protocol/openid-connect/token`.
//!
//! RFC 6749 in Keycloak's dialect: a form-encoded body (at most
//! [`MAX_FORM_BYTES`], each parameter once), client authentication by
//! `client_secret_basic` or `client_secret_post` (never both), then the
//! `client_credentials`, `password` or `refresh_token` grant. Errors are
//! RFC 6749 §5.2 JSON (`error`, `error_description`) with its status codes:
//! `invalid_client` 401 with a `WWW-Authenticate: Basic` challenge,
//! `invalid_request`, `invalid_grant`, `unauthorized_client`,
//! `unsupported_grant_type` and `invalid_scope` 400. Responses are
//! `Cache-Control: no-store`.
//!
//! Password checks run on the blocking pool, at most one per core at a
//! time, so a burst of logins cannot starve the async workers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kit::http::Path;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::credentials::PasswordCredential;
use crate::realm::{Client, ClientKind};
use crate::tokens::{self, Minted, Scope, Subject};
use crate::{AppState, RequestError};

/// Largest token request body read (a real one is a few hundred bytes).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// An RFC 6749 §5.2 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `WWW-Authenticate: Basic realm="..."` for `invalid_client`.
    pub challenge_realm: Option<String>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge_realm: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    pub fn invalid_client(realm: &str, d: impl Into<String>) -> OAuthError {
        OAuthError {
            challenge_realm: Some(realm.to_string()),
            ..OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
        }
    }

    pub fn invalid_grant(d: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }

    /// A username locked by brute-force detection: 429 with `invalid_grant` and the same
    /// description as a wrong password, so nothing says which part was wrong.
    pub fn locked_out() -> OAuthError {
        OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_grant",
            "Invalid user credentials",
        )
    }

    pub fn unauthorized_client(d: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }

    pub fn unsupported_grant_type(d: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }

    pub fn invalid_scope(d: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }

    /// 500; log the cause before calling.
    pub fn server_error() -> OAuthError {
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "An internal error occurred; it has been logged.",
        )
    }
}

fn no_store(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut res = (self.status, axum::Json(body)).into_response();
        no_store(&mut res);
        if let Some(v) = self
            .challenge_realm
            .and_then(|r| HeaderValue::from_str(&format!("Basic realm=\"{r}\"")).ok())
        {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// Parses a form body; every parameter at most once (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if form.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {k} is repeated"
            )));
        }
    }
    Ok(form)
}

/// A value decoded from `application/x-www-form-urlencoded` (RFC 6749
/// §2.3.1 encodes the Basic credentials that way).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `Authorization: Basic` client credentials, if the header is present.
fn basic_credentials(
    headers: &HeaderMap,
    realm: &str,
) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client(realm, "Malformed Basic client credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            realm,
            "Unsupported client authentication scheme (use Basic or client_secret_post)",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

fn secrets_equal(presented: &str, expected: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    a.ct_eq(&b).into()
}

/// Authenticates the client of a token request.
fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Arc<Client>, OAuthError> {
    let realm = &state.realm().name;
    let generic =
        || OAuthError::invalid_client(realm, "Invalid client or Invalid client credentials");
    let basic = basic_credentials(headers, realm)?;
    let form_id = form.get("client_id").filter(|s| !s.is_empty());
    let form_secret = form.get("client_secret");
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not Basic and client_secret together",
                ));
            }
            if form_id.is_some_and(|f| *f != id) {
                return Err(generic());
            }
            (id, Some(secret))
        }
        None => match form_id {
            Some(id) => (id.clone(), form_secret.cloned()),
            None => {
                return Err(OAuthError::invalid_client(
                    realm,
                    "Missing parameter: client_id",
                ));
            }
        },
    };
    let client = state
        .realm()
        .client(&client_id)
        .cloned()
        .ok_or_else(generic)?;
    if !client.enabled {
        return Err(generic());
    }
    if client.bearer_only {
        return Err(OAuthError::unauthorized_client(
            "Bearer-only clients cannot obtain tokens",
        ));
    }
    match &client.kind {
        ClientKind::Public => Ok(client),
        ClientKind::Confidential { secret: expected } => match secret {
            Some(s) if secrets_equal(&s, expected.expose_secret()) => Ok(client),
            Some(_) => Err(generic()),
            None => Err(OAuthError::invalid_client(
                realm,
                "Client secret not provided in request",
            )),
        },
    }
}

/// `POST /realms/{realm}/protocol/openid-connect/token`.
pub async fn token(
    State(state): State<AppState>,
    Path(realm): Path<String>,
    req: Request,
) -> Response {
    match token_inner(&state, &realm, req).await {
        Ok(res) => res,
        Err(TokenFailure::Request(e)) => e.into_response(),
        Err(TokenFailure::OAuth(e)) => {
            tracing::debug!(error = e.error, description = %e.description, "token request refused");
            e.into_response()
        }
    }
}

enum TokenFailure {
    Request(RequestError),
    OAuth(OAuthError),
}

impl From<OAuthError> for TokenFailure {
    fn from(e: OAuthError) -> Self {
        TokenFailure::OAuth(e)
    }
}

impl From<RequestError> for TokenFailure {
    fn from(e: RequestError) -> Self {
        TokenFailure::Request(e)
    }
}

async fn token_inner(
    state: &AppState,
    realm: &str,
    req: Request,
) -> Result<Response, TokenFailure> {
    state.check_realm(realm)?;
    let issuer = state
        .issuer(&req)
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client_address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let (parts, body) = req.into_parts();

    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !form_type {
        return Err(OAuthError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let body = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Err(OAuthError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..OAuthError::invalid_request(format!(
                    "the request body is larger than {MAX_FORM_BYTES} bytes or could not be read"
                ))
            }
            .into());
        }
    };
    let form = parse_form(&body)?;
    let grant_type = form
        .get("grant_type")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing form parameter: grant_type"))?
        .clone();
    let client = authenticate_client(state, &parts.headers, &form)?;
    let now = state.now_secs();

    let (minted, grant) = match grant_type.as_str() {
        "client_credentials" => (
            client_credentials(state, &client, &form, &issuer, client_address, now)?,
            "client_credentials",
        ),
        "password" => (
            password(state, &client, &form, &issuer, now).await?,
            "password",
        ),
        "refresh_token" => (
            refresh(state, &client, &form, &issuer, now)?,
            "refresh_token",
        ),
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "Unsupported grant_type {}",
                other.chars().take(64).collect::<String>()
            ))
            .into());
        }
    };
    tracing::info!(client = %client.client_id, grant, "tokens issued");
    Ok(token_response(minted))
}

fn token_response(m: Minted) -> Response {
    let mut body = json!({
        "access_token": m.access_token,
        "expires_in": m.expires_in,
        "refresh_expires_in": m.refresh.as_ref().map(|r| r.1).unwrap_or(0),
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": m.scope,
    });
    if let Some((rt, _)) = m.refresh {
        body["refresh_token"] = Value::String(rt);
    }
    if let Some(id) = m.id_token {
        body["id_token"] = Value::String(id);
    }
    if let Some(sid) = m.sid {
        body["session_state"] = Value::String(sid);
    }
    let mut res = axum::Json(body).into_response();
    no_store(&mut res);
    res
}

fn signing_failed(e: jsonwebtoken::errors::Error) -> OAuthError {
    tracing::error!(error = %e, "cannot sign a token");
    OAuthError::server_error()
}

fn requested_scope(form: &HashMap<String, String>) -> Result<Scope, OAuthError> {
    Scope::parse(form.get("scope").map(String::as_str)).map_err(OAuthError::invalid_scope)
}

fn client_credentials(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    issuer: &str,
    client_address: Option<String>,
    now: i64,
) -> Result<Minted, OAuthError> {
    if matches!(client.kind, ClientKind::Public) {
        return Err(OAuthError::unauthorized_client(
            "Public client not allowed to retrieve service account",
        ));
    }
    if !client.service_accounts_enabled {
        return Err(OAuthError::unauthorized_client(
            "Client not enabled to retrieve service account",
        ));
    }
    let scope = requested_scope(form)?;
    let realm = state.realm();
    let Some(user) = client
        .service_account_user
        .as_deref()
        .and_then(|id| realm.user_by_id(id))
    else {
        // Realm loading gives every service-account client its user.
        tracing::error!(client = %client.client_id, "service-account user missing");
        return Err(OAuthError::server_error());
    };
    if !user.enabled {
        return Err(OAuthError::invalid_grant(
            "Service account user is disabled",
        ));
    }
    let subject = Subject {
        realm,
        client,
        user,
        issuer,
        sid: None,
        auth_time: now,
        scope,
        client_address,
    };
    tokens::mint(state.keys(), &subject, now, false).map_err(signing_failed)
}

async fn password(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    issuer: &str,
    now: i64,
) -> Result<Minted, OAuthError> {
    if !client.direct_access_grants_enabled {
        return Err(OAuthError::unauthorized_client(
            "Client not allowed for direct access grants",
        ));
    }
    let username = form
        .get("username")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing parameter: username"))?;
    let password = form
        .get("password")
        .ok_or_else(|| OAuthError::invalid_request("Missing parameter: password"))?
        .clone();
    let scope = requested_scope(form)?;
    // Locked names are refused before any password is checked, the right one included.
    if state
        .brute_force()
        .locked(username, state.now_millis())
        .is_some()
    {
        return Err(OAuthError::locked_out());
    }
    let realm = state.realm();
    let user = realm
        .user_by_login(username)
        .filter(|u| u.service_account_of.is_none())
        .cloned();
    let credential = user.as_ref().and_then(|u| u.password.clone());

    let verified = {
        // The semaphore is never closed, so acquiring only waits.
        let permit = state
            .hashing()
            .acquire_owned()
            .await
            .map_err(|_| OAuthError::server_error())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match credential {
                Some(c) => c.verify(&password),
                None => {
                    PasswordCredential::dummy_verify(&password);
                    false
                }
            }
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password check task failed");
            OAuthError::server_error()
        })?
    };
    let user = match (user, verified) {
        (Some(u), true) => u,
        _ => {
            state.brute_force().failure(username, state.now_millis());
            return Err(OAuthError::invalid_grant("Invalid user credentials"));
        }
    };
    state.brute_force().success(username);
    if !user.enabled {
        return Err(OAuthError::invalid_grant("Account disabled"));
    }
    if user.not_fully_set_up {
        return Err(OAuthError::invalid_grant("Account is not fully set up"));
    }
    let subject = Subject {
        realm,
        client,
        user: &user,
        issuer,
        sid: Some(uuid::Uuid::new_v4().to_string()),
        auth_time: now,
        scope,
        client_address: None,
    };
    tokens::mint(state.keys(), &subject, now, true).map_err(signing_failed)
}

fn refresh(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
    issuer: &str,
    now: i64,
) -> Result<Minted, OAuthError> {
    let token = form
        .get("refresh_token")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing parameter: refresh_token"))?;
    let claims = tokens::read_refresh(state.keys(), token, issuer, now)
        .map_err(OAuthError::invalid_grant)?;
    if claims.azp.as_deref() != Some(client.client_id.as_str()) {
        return Err(OAuthError::invalid_grant(
            "Invalid refresh token. Token client and authorized client don't match",
        ));
    }
    let realm = state.realm();
    let user = claims
        .sub
        .as_deref()
        .and_then(|id| realm.user_by_id(id))
        .ok_or_else(|| OAuthError::invalid_grant("User not found"))?;
    if !user.enabled {
        return Err(OAuthError::invalid_grant("User disabled"));
    }
    let auth_time = claims
        .other
        .get("auth_time")
        .and_then(Value::as_i64)
        .ok_or_else(|| OAuthError::invalid_grant("Invalid refresh token"))?;
    if auth_time + realm.lifespans.session_max <= now {
        return Err(OAuthError::invalid_grant("Session not active"));
    }
    let granted = Scope::from_claim(claims.scope.as_deref());
    let scope = match form.get("scope") {
        Some(s) => {
            let asked = Scope::parse(Some(s)).map_err(OAuthError::invalid_scope)?;
            if asked.openid && !granted.openid {
                return Err(OAuthError::invalid_scope("Invalid scopes: openid"));
            }
            asked
        }
        None => granted,
    };
    let subject = Subject {
        realm,
        client,
        user,
        issuer,
        sid: claims.sid.clone(),
        auth_time,
        scope,
        client_address: None,
    };
    tokens::mint(state.keys(), &subject, now, true).map_err(signing_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeated parameters are refused; values are form-decoded.
    #[test]
    fn forms() {
        let f = parse_form(b"grant_type=password&username=a%40b.c&password=p+q").unwrap();
        assert_eq!(f["username"], "a@b.c");
        assert_eq!(f["password"], "p q");
        assert_eq!(parse_form(b"a=1&a=2").unwrap_err().error, "invalid_request");
        assert_eq!(form_decode("x%3Ay+z"), "x:y z");
    }

    /// Basic credentials parse (form-decoded per RFC 6749 §2.3.1); other schemes are invalid_client.
    #[test]
    fn basic_auth() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h, "r").unwrap(), None);
        let v = base64::engine::general_purpose::STANDARD.encode("my%20client:s%3Acret");
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        assert_eq!(
            basic_credentials(&h, "r").unwrap(),
            Some(("my client".into(), "s:cret".into()))
        );
        for bad in ["Bearer x", "Basic !!!", "Basic", "Basic bm9jb2xvbg=="] {
            h.insert(header::AUTHORIZATION, bad.parse().unwrap());
            let e = basic_credentials(&h, "r").unwrap_err();
            assert_eq!(
                (e.status, e.error),
                (StatusCode::UNAUTHORIZED, "invalid_client"),
                "{bad}"
            );
        }
    }
}
