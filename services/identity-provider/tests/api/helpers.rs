//! Starting a real identity provider in-process on a free port, and small
//! helpers to call it.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use identity_provider::keys::SigningKey;
use identity_provider::realm::Realm;
use identity_provider::{AppState, SPEC};
use kit::clock::Clock;
use kit::{CommonArgs, Service};
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The repository's realm file.
pub fn repo_realm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../keycloak/realm.json")
}

/// How to start a provider.
pub struct Opts {
    pub realm_file: PathBuf,
    pub issuer_base: Option<url::Url>,
    /// Configure the provider's own `http://127.0.0.1:<port>` as its issuer base (as the dev
    /// stack configures its service address): the base is known only once it is bound.
    pub own_base: bool,
    pub activation_delay: Duration,
    pub clock: Clock,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            realm_file: repo_realm(),
            issuer_base: None,
            own_base: false,
            activation_delay: Duration::from_secs(10),
            clock: Clock::System,
        }
    }
}

/// A running provider; stopped when dropped.
pub struct Idp {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The issuer of tokens requested through `base`.
    pub issuer: String,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Seconds since the epoch now, for a manual clock that starts at real time.
pub fn real_now_millis() -> u64 {
    Clock::System.now_millis()
}

impl Idp {
    pub async fn start() -> Idp {
        Idp::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Idp {
        kit::telemetry::init_for_tests();
        let realm = Realm::load(&opts.realm_file).expect("realm loads");
        let key = tokio::task::spawn_blocking(SigningKey::generate)
            .await
            .unwrap()
            .unwrap();
        let service = Service::bind(&SPEC, CommonArgs::for_tests(None))
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", service.port());
        let mut opts = opts;
        if opts.own_base {
            opts.issuer_base = Some(base.parse().unwrap());
        }
        let state = AppState::new(
            realm,
            key,
            opts.issuer_base.as_ref(),
            opts.activation_delay,
            opts.clock,
        );
        let stop = service.shutdown_token();
        tokio::spawn(identity_provider::serve(state.clone(), service));
        let issuer = match &opts.issuer_base {
            Some(b) => format!(
                "{}/realms/{}",
                b.as_str().trim_end_matches('/'),
                state.realm().name
            ),
            None => format!("{base}/realms/{}", state.realm().name),
        };
        Idp {
            base,
            issuer,
            state,
            http: reqwest::Client::new(),
            stop,
        }
    }

    pub fn token_url(&self) -> String {
        format!(
            "{}/realms/platform/protocol/openid-connect/token",
            self.base
        )
    }

    /// POSTs a token request; returns status, JSON body and headers.
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value, HeaderMap) {
        let res = self
            .http
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    /// A password-grant token response for a user of `platform-cli`.
    pub async fn login(&self, user: &str, password: &str) -> Value {
        let (status, body, _) = self
            .token(&[
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", user),
                ("password", password),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A client-credentials token response for `platform-service`.
    pub async fn machine(&self) -> Value {
        let (status, body, _) = self
            .token(&[
                ("grant_type", "client_credentials"),
                ("client_id", "platform-service"),
                ("client_secret", "platform-service-secret"),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// The payload of a JWT, unverified (the tests check signatures elsewhere).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// The header of a JWT.
pub fn header(token: &str) -> Value {
    let h = token.split('.').next().expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
