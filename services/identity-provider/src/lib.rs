//! The identity provider: an offline stand-in for Keycloak.
//!
//! It serves one realm, read from a Keycloak realm export
//! (`keycloak/realm.json`, the same file the full stack's real Keycloak
//! imports), under Keycloak's paths, so clients configured for Keycloak
//! work unchanged:
//!
//! | path | what |
//! | --- | --- |
//! | `GET /realms/{realm}` | realm info with the active public key (python-keycloak reads it) |
//! | `GET /realms/{realm}/.well-known/openid-configuration` | OIDC discovery |
//! | `GET /realms/{realm}/protocol/openid-connect/certs` | JWKS |
//! | `POST /realms/{realm}/protocol/openid-connect/token` | `client_credentials`, `password`, `refresh_token` ([`oauth`]) |
//! | `GET/POST /realms/{realm}/protocol/openid-connect/userinfo` | the token's user |
//! | `POST /admin/keys/rotate`, `GET /admin/keys` | key rotation ([`keys`]), admin role required |
//!
//! **Issuer.** Tokens say `iss = <base>/realms/<realm>`. With
//! `--issuer-base-url` the base is fixed (what Keycloak's `--hostname`
//! does), and every URL the provider publishes (the discovery document's
//! token, JWKS and userinfo endpoints, the realm page's token service) is
//! built from it, as Keycloak does with a configured hostname and
//! `--hostname-backchannel-dynamic=false` (its default): a request's Host
//! header cannot point clients that read the discovery document elsewhere.
//! Without a configured base the base is `http://<Host header>`, for the
//! issuer and the endpoints alike, as Keycloak derives it from the request
//! when no hostname is configured. Validators must be configured with the
//! issuer exactly as tokens carry it.
//!
//! **Admin.** The provider checks tokens for its own `/admin` endpoints
//! with its own keys (no HTTP round trip to itself): a token of this realm
//! with the `admin` realm role.

#![forbid(unsafe_code)]

pub mod brute_force;
pub mod credentials;
pub mod keys;
pub mod oauth;
pub mod realm;
pub mod tokens;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use kit::auth::{AdminAuth, IssuerPolicy, JwtValidator, Rejected, ValidatorConfig};
use kit::clock::Clock;
use kit::http::Path;
use kit::{CommonArgs, HasCommon, Problem, Service, ServiceSpec};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use url::Url;

use crate::keys::{KeyRing, SigningKey};
use crate::realm::Realm;

/// The service as the platform knows it.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "identity-provider",
    default_port: 8180,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// Allowed clock skew when checking our own access tokens (userinfo, admin).
const SKEW: Duration = Duration::from_secs(60);

/// Configuration of the identity provider.
#[derive(Debug, Clone, Parser)]
#[command(
    about,
    after_help = "Admin: /admin endpoints (POST /admin/keys/rotate, GET /admin/keys) accept this provider's own \
                  tokens carrying the `admin` realm role; --issuer-url, --jwt-audience and --admin-token do not apply."
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Keycloak realm export to serve (RealmRepresentation JSON, as `kc.sh export` writes it)
    #[arg(long, env = "REALM_FILE", default_value = "keycloak/realm.json")]
    pub realm_file: PathBuf,

    /// Public base URL tokens are issued under: iss = <base>/realms/<realm>, e.g. http://identity-provider:8180
    /// [default: http://<Host header of each request>, like Keycloak without a configured hostname]
    #[arg(long, env = "ISSUER_BASE_URL", value_parser = kit::config::parse_http_url)]
    pub issuer_base_url: Option<Url>,

    /// PEM file with the RSA signing key (PKCS#1 or PKCS#8, at least 2048 bits); keys made by rotation are
    /// generated [default: a new RSA-2048 key at every start]
    #[arg(long, env = "SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// How long a rotated-in key is published in the JWKS before it signs tokens; longer than validators'
    /// 5 s minimum refresh interval so none fails a token with the new kid
    #[arg(long, env = "KEY_ACTIVATION_DELAY", default_value = "10s", value_parser = kit::config::parse_duration)]
    pub key_activation_delay: Duration,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// A request the provider cannot serve before any OAuth logic: unknown
/// realm, unusable Host header.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("realm {0} does not exist")]
    UnknownRealm(String),
    #[error("the request has no usable Host header")]
    BadHost,
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        match self {
            RequestError::UnknownRealm(_) => Problem::not_found(self.to_string()).into_response(),
            RequestError::BadHost => Problem::bad_request(self.to_string()).into_response(),
        }
    }
}

struct Inner {
    /// The realm as loaded at start; read-only afterwards, so no lock.
    realm: Realm,
    /// Signing keys; shared with `validator`, which reads the JWKS from it.
    keys: Arc<KeyRing>,
    /// `--issuer-base-url` without trailing slash.
    issuer_base: Option<String>,
    /// Token times and the rotation schedule; manual in tests.
    clock: Clock,
    /// Checks our own access tokens (userinfo, admin) against our own keys.
    validator: JwtValidator,
    /// Bounds concurrent password hashing to the number of cores; a permit
    /// travels into the blocking task, so an abandoned request still holds
    /// it until its hash is done.
    hashing: Arc<Semaphore>,
    /// Failed password logins per username (the realm's brute-force detection).
    brute_force: brute_force::Detector,
}

/// Shared state of the provider; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("realm", &self.inner.realm.name)
            .field("issuer_base", &self.inner.issuer_base)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a loaded realm and a first signing key.
    pub fn new(
        realm: Realm,
        first_key: SigningKey,
        issuer_base: Option<&Url>,
        activation_delay: Duration,
        clock: Clock,
    ) -> AppState {
        let retention = Duration::from_secs(realm.longest_token_lifespan().max(0) as u64) + SKEW;
        let keys = Arc::new(KeyRing::new(
            first_key,
            clock.clone(),
            activation_delay,
            retention,
        ));
        let issuer_base = issuer_base.map(|u| u.as_str().trim_end_matches('/').to_string());
        let issuer = match &issuer_base {
            Some(base) => IssuerPolicy::Exact(format!("{base}/realms/{}", realm.name)),
            None => IssuerPolicy::AnyHostForRealm(realm.name.clone()),
        };
        let config = ValidatorConfig {
            issuer,
            audiences: Vec::new(),
            leeway: SKEW,
            // Our own keys: a refresh costs nothing, never rate-limit it.
            min_refresh_interval: Duration::ZERO,
            refresh_interval: Duration::from_secs(300),
            realm: realm.name.clone(),
        };
        let validator = JwtValidator::new(config, keys.clone(), clock.clone());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let brute_force = brute_force::Detector::new(realm.brute_force);
        AppState {
            inner: Arc::new(Inner {
                brute_force,
                realm,
                keys,
                issuer_base,
                clock,
                validator,
                hashing: Arc::new(Semaphore::new(cores)),
            }),
        }
    }

    pub fn realm(&self) -> &Realm {
        &self.inner.realm
    }

    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// The validator for this provider's own tokens.
    pub fn validator(&self) -> &JwtValidator {
        &self.inner.validator
    }

    pub(crate) fn brute_force(&self) -> &brute_force::Detector {
        &self.inner.brute_force
    }

    pub(crate) fn now_millis(&self) -> i64 {
        self.inner.clock.now_millis() as i64
    }

    pub(crate) fn hashing(&self) -> Arc<Semaphore> {
        self.inner.hashing.clone()
    }

    pub fn now_secs(&self) -> i64 {
        (self.inner.clock.now_millis() / 1000) as i64
    }

    pub(crate) fn check_realm(&self, realm: &str) -> Result<(), RequestError> {
        if realm == self.inner.realm.name {
            Ok(())
        } else {
            Err(RequestError::UnknownRealm(realm.chars().take(64).collect()))
        }
    }

    /// `http://<host>` of a request: its URI authority (HTTP/2) or Host header.
    fn request_base(req: &Request) -> Result<String, RequestError> {
        let host = match req.uri().authority() {
            Some(a) => a.as_str().to_string(),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or(RequestError::BadHost)?
                .to_string(),
        };
        let authority: axum::http::uri::Authority =
            host.parse().map_err(|_| RequestError::BadHost)?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(RequestError::BadHost);
        }
        Ok(format!("http://{authority}"))
    }

    /// The issuer for a request (see the crate docs).
    pub fn issuer(&self, req: &Request) -> Result<String, RequestError> {
        let base = match &self.inner.issuer_base {
            Some(b) => b.clone(),
            None => AppState::request_base(req)?,
        };
        Ok(format!("{base}/realms/{}", self.inner.realm.name))
    }
}

/// Loads the realm and the first key and builds the state.
pub async fn build(config: &Config, clock: Clock) -> anyhow::Result<AppState> {
    let realm = Realm::load(&config.realm_file)
        .with_context(|| format!("loading the realm from {}", config.realm_file.display()))?;
    let key = match &config.signing_key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the signing key {}", path.display()))?;
            SigningKey::from_pem(&pem)
                .with_context(|| format!("loading the signing key {}", path.display()))?
        }
        None => tokio::task::spawn_blocking(SigningKey::generate)
            .await
            .context("key generation task")?
            .context("generating the signing key")?,
    };
    tracing::info!(realm = %realm.name, kid = %key.kid, file = %config.realm_file.display(), "realm loaded");
    Ok(AppState::new(
        realm,
        key,
        config.issuer_base_url.as_ref(),
        config.key_activation_delay,
        clock,
    ))
}

/// The public routes, under Keycloak's paths.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/realms/{realm}", get(realm_info))
        .route(
            "/realms/{realm}/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/realms/{realm}/protocol/openid-connect/certs", get(certs))
        .route(
            "/realms/{realm}/protocol/openid-connect/token",
            post(oauth::token),
        )
        .route(
            "/realms/{realm}/protocol/openid-connect/userinfo",
            get(userinfo).post(userinfo),
        )
        .route(
            "/realms/{realm}/protocol/openid-connect/auth",
            get(authorization_endpoint),
        )
        .with_state(state)
}

/// The admin routes (mounted under `/admin`, admin role required by the scaffold).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/keys", get(list_keys))
        .route("/keys/rotate", post(rotate_keys))
        .with_state(state)
}

/// Serves `state` on `service` until shutdown; admin endpoints check
/// tokens with the provider's own keys.
pub async fn serve(state: AppState, mut service: Service) -> anyhow::Result<()> {
    service.set_admin_auth(AdminAuth::Jwt(state.validator().clone()));
    service
        .serve(router(state.clone()), admin_router(state))
        .await
        .context("serving HTTP")
}

/// Binds, builds and serves: the binary's whole life after parsing.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut common = config.common.clone();
    if common.issuer_url.take().is_some() || common.admin_token.is_some() {
        tracing::info!(
            "ISSUER_URL/ADMIN_TOKEN do not apply: /admin accepts this provider's own tokens with the admin role"
        );
    }
    // `serve` installs the JWT check with our own keys; an unlogged
    // throwaway token keeps `bind` from generating and announcing one.
    common.admin_token = Some(kit::auth::generate_token());
    let service = Service::bind(&SPEC, common)
        .await
        .context("binding the listener")?;
    let state = build(&config, Clock::System).await?;
    serve(state, service).await
}

fn json_no_cache(body: Value) -> Response {
    let mut res = axum::Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// `GET /realms/{realm}`: Keycloak's realm page, with the active key.
async fn realm_info(
    State(st): State<AppState>,
    Path(realm): Path<String>,
    req: Request,
) -> Result<Response, RequestError> {
    st.check_realm(&realm)?;
    let issuer = st.issuer(&req)?;
    Ok(json_no_cache(json!({
        "realm": st.realm().name,
        "public_key": st.keys().signing_key().public_key_b64,
        "token-service": format!("{issuer}/protocol/openid-connect"),
        "account-service": format!("{issuer}/account"),
        "tokens-not-before": 0,
    })))
}

/// `GET /realms/{realm}/.well-known/openid-configuration`.
async fn discovery(
    State(st): State<AppState>,
    Path(realm): Path<String>,
    req: Request,
) -> Result<Response, RequestError> {
    st.check_realm(&realm)?;
    // Every endpoint under the issuer: the configured base, never a Host header when one is set.
    let issuer = st.issuer(&req)?;
    let oidc = format!("{issuer}/protocol/openid-connect");
    Ok(json_no_cache(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
        "token_endpoint": format!("{oidc}/token"),
        "userinfo_endpoint": format!("{oidc}/userinfo"),
        "jwks_uri": format!("{oidc}/certs"),
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        // No browser flows: the authorization endpoint only explains that.
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": tokens::KNOWN_SCOPES,
        "claims_supported": [
            "aud", "sub", "iss", "auth_time", "name", "given_name", "family_name",
            "preferred_username", "email", "email_verified", "acr", "azp", "sid", "realm_access"
        ],
    })))
}

/// `GET /realms/{realm}/protocol/openid-connect/certs`.
async fn certs(
    State(st): State<AppState>,
    Path(realm): Path<String>,
) -> Result<Response, RequestError> {
    st.check_realm(&realm)?;
    Ok(json_no_cache(st.keys().jwks()))
}

/// `GET|POST /realms/{realm}/protocol/openid-connect/userinfo`.
async fn userinfo(State(st): State<AppState>, Path(realm): Path<String>, req: Request) -> Response {
    if let Err(e) = st.check_realm(&realm) {
        return e.into_response();
    }
    let auth = match st.validator().authorize(req.headers(), &[]).await {
        Ok(a) => a,
        Err(rejected) => return rejected.into_response(),
    };
    let invalid = |why: &str| -> Response {
        kit::auth::AuthError::from(kit::auth::TokenRejection::Malformed(why.into()))
            .in_realm(st.realm().name.as_str())
            .into_response()
    };
    // The token must be one issued through this host (or the fixed base).
    match st.issuer(&req) {
        Ok(iss) if iss == auth.claims.iss => {}
        _ => {
            let r: Rejected = kit::auth::AuthError::from(kit::auth::TokenRejection::WrongIssuer)
                .in_realm(st.realm().name.as_str());
            return r.into_response();
        }
    }
    let Some(user) = auth
        .claims
        .sub
        .as_deref()
        .and_then(|id| st.realm().user_by_id(id))
    else {
        return invalid("the user no longer exists");
    };
    if !user.enabled {
        return invalid("the user is disabled");
    }
    let mut body = json!({
        "sub": user.id,
        "email_verified": user.email_verified,
        "preferred_username": user.username,
    });
    if let Some(n) = user.full_name() {
        body["name"] = json!(n);
    }
    if let Some(f) = &user.first_name {
        body["given_name"] = json!(f);
    }
    if let Some(l) = &user.last_name {
        body["family_name"] = json!(l);
    }
    if let Some(e) = &user.email {
        body["email"] = json!(e);
    }
    axum::Json(body).into_response()
}

/// `GET /realms/{realm}/protocol/openid-connect/auth`: browser flows are
/// not offered; say so in OAuth's words.
async fn authorization_endpoint(State(st): State<AppState>, Path(realm): Path<String>) -> Response {
    if let Err(e) = st.check_realm(&realm) {
        return e.into_response();
    }
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": "unsupported_response_type",
            "error_description": "this offline identity provider has no browser login; use the token endpoint (password, client_credentials, refresh_token)"
        })),
    )
        .into_response()
}

/// `GET /admin/keys`: the published keys and their schedule.
async fn list_keys(State(st): State<AppState>) -> Response {
    axum::Json(json!({"keys": st.keys().status()})).into_response()
}

/// `POST /admin/keys/rotate`: publish a new key now, sign with it after the delay.
async fn rotate_keys(State(st): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(SigningKey::generate).await {
        Ok(Ok(key)) => {
            let status = st.keys().rotate(key);
            (StatusCode::ACCEPTED, axum::Json(status)).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "key rotation failed");
            Problem::internal().into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "key generation task failed");
            Problem::internal().into_response()
        }
    }
}
