//! What every gateway test starts: a real registry (the discovery-server
//! binary as a child process), echo upstreams registered in it, the real
//! gateway on port 0, and a stand-in OIDC issuer whose keys the tests
//! control.
//!
//! The registry is real, so the gateway finds its upstreams the way it does
//! in production: registration over the Eureka API, the kit's watch-fed
//! discovery cache, the shared balancer. `cargo build -p discovery-server`
//! must have run (the tests say so when the binary is missing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use kit::CommonArgs;
use kit::clock::Clock;
use kit::registry::RegistryHttp;
use kit::registry::model::InstanceInfo;
use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The admin token of in-process services (no issuer configured).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The secret of order-service's client in `keycloak/realm.json` (its service account
/// carries the `service` role that inventory's reservations require).
pub const ORDER_SERVICE_SECRET: &str = "order-service-secret";

/// A reqwest client that neither pools across tests nor follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A built binary of this workspace.
pub fn workspace_bin(name: &str) -> PathBuf {
    testkit::bin_path(name).unwrap_or_else(|e| panic!("this test runs the {name} binary: {e}"))
}

/// The flags that register a service binary with `registry` on loopback.
pub fn registered(registry: &Registry) -> [&str; 4] {
    [
        "--advertise-host",
        "127.0.0.1",
        "--registry-url",
        &registry.url,
    ]
}

/// Starts a service binary with `args` plus the common loopback flags and
/// extra environment `env`, and waits until it is ready.
pub async fn service(
    name: &str,
    registry: &Registry,
    issuer: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (testkit::ChildGuard, String) {
    let started = testkit::Starter::new(workspace_bin(name))
        .args(registered(registry))
        .args(["--issuer-url", issuer])
        .args(args)
        .envs(env.iter().copied())
        .within(Duration::from_secs(60))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (started.process, started.base)
}

/// The discovery-server, started for one test.
pub struct Registry {
    pub url: String,
    pub http: RegistryHttp,
    _process: testkit::ChildGuard,
}

impl Registry {
    pub async fn start() -> Registry {
        let started = testkit::Starter::new(workspace_bin("discovery-server"))
            .args(["--admin-token", "registry-admin"])
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let http = RegistryHttp::new(started.base.parse().unwrap(), reqwest::Client::new());
        Registry {
            url: started.base,
            http,
            _process: started.process,
        }
    }

    /// Registers an instance of `service` at 127.0.0.1:`port` (UP).
    pub async fn register(&self, service: &str, id: &str, port: u16) {
        let info = InstanceInfo::new(service, id, "127.0.0.1", "127.0.0.1", port);
        self.http.register(&info).await.unwrap();
    }

    /// An echo upstream named `id`, registered as an instance of `service`.
    pub async fn echo(&self, service: &str, id: &str) -> Upstream {
        let upstream = Upstream::echo(id).await;
        self.register(service, id, upstream.port).await;
        upstream
    }

    pub async fn deregister(&self, service: &str, id: &str) {
        self.http
            .cancel(&service.to_ascii_uppercase(), id)
            .await
            .unwrap();
    }
}

/// An in-process HTTP server on a loopback port (an echo upstream or a
/// special-purpose one), stopped when dropped.
pub struct Upstream {
    pub port: u16,
    stop: CancellationToken,
    _task: JoinHandle<()>,
}

impl Upstream {
    /// An echo upstream named `name` (see the `echo_upstream` fixture crate).
    pub async fn echo(name: &str) -> Upstream {
        Upstream::serve(echo_upstream::router(name)).await
    }

    pub async fn serve(app: axum::Router) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
        });
        Upstream {
            port,
            stop,
            _task: task,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The gateway, in-process on port 0.
pub struct Gateway {
    pub base: String,
    pub gateway: api_gateway::Gateway,
    pub discovery: kit::registry::Discovery,
    pub metrics: kit::metrics::Metrics,
    stop: CancellationToken,
    _task: JoinHandle<Result<(), kit::service::ServiceError>>,
}

/// Changes a test makes to the gateway's configuration.
pub type Adjust<'a> = Box<dyn FnOnce(&mut api_gateway::Config) + 'a>;

/// How a test gateway is set up.
pub struct GatewaySetup<'a> {
    pub routes: &'a str,
    pub registry: &'a Registry,
    /// A validator for protected routes (the service's admin auth becomes JWT).
    pub validator: Option<kit::auth::JwtValidator>,
    pub adjust: Option<Adjust<'a>>,
}

impl Gateway {
    /// A gateway with public routes only.
    pub async fn start(routes: &str, registry: &Registry) -> Gateway {
        Gateway::start_with(GatewaySetup {
            routes,
            registry,
            validator: None,
            adjust: None,
        })
        .await
    }

    /// A gateway whose protected routes and admin API take JWTs of `validator`.
    pub async fn protected(
        routes: &str,
        registry: &Registry,
        validator: kit::auth::JwtValidator,
    ) -> Gateway {
        Gateway::start_with(GatewaySetup {
            routes,
            registry,
            validator: Some(validator),
            adjust: None,
        })
        .await
    }

    pub async fn start_with(setup: GatewaySetup<'_>) -> Gateway {
        kit::telemetry::init_for_tests();
        let common = CommonArgs::for_tests(Some(&setup.registry.url));
        let mut config = api_gateway::Config::for_tests(common);
        if let Some(adjust) = setup.adjust {
            adjust(&mut config);
        }
        let routes = api_gateway::routes_file::parse(setup.routes, "test-routes.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut service = kit::Service::bind(&api_gateway::SPEC, config.service_args())
            .await
            .unwrap();
        if let Some(v) = setup.validator {
            service.set_admin_auth(kit::auth::AdminAuth::Jwt(v));
        }
        let gateway = api_gateway::build(&config, routes, &service).unwrap();
        let base = format!("http://127.0.0.1:{}", service.port());
        let discovery = service.discovery().clone();
        let metrics = service.metrics().clone();
        let stop = service.shutdown_token();
        let task = tokio::spawn(service.serve(gateway.api(), gateway.admin()));
        Gateway {
            base,
            gateway,
            discovery,
            metrics,
            stop,
            _task: task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until the gateway's registry view has `n` UP instances of `service`.
    pub async fn wait_for_instances(&self, service: &str, n: usize) {
        let d = self.discovery.clone();
        d.start();
        testkit::eventually(
            &format!("{n} instances of {service}"),
            Duration::from_secs(10),
            || std::future::ready(d.cached(service).len() == n),
        )
        .await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The gateway binary as its own process (routes from a file, upstreams
/// through the registry, the allocator settings of the stacks), so that its
/// memory can be read from `/proc/<pid>/status` alone. Admin token `x`.
pub struct GatewayProcess {
    pub base: String,
    pub process: testkit::ChildGuard,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts it with `routes` (TOML) and waits until `ready_path` answers.
    pub async fn start(routes: &str, registry: &Registry, ready_path: &str) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.toml");
        std::fs::write(&file, routes).unwrap();
        let started = testkit::Starter::new(env!("CARGO_BIN_EXE_api-gateway"))
            .args(["--routes", file.to_str().unwrap()])
            .args(registered(registry))
            .args(["--admin-token", "x"])
            // The allocator setting the stacks give the gateway (see stacks/dev.toml).
            .envs([("MIMALLOC_ARENA_EAGER_COMMIT", "0")])
            .ready_path(ready_path)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (base, process) = (started.base, started.process);
        GatewayProcess {
            base,
            process,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `kB` field of the process's `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
    pub fn status_bytes(&self, field: &str) -> u64 {
        testkit::benchmarks::status_bytes(self.process.pid(), field)
            .unwrap_or_else(|| panic!("{field} of the gateway process"))
    }
}

/// GETs of one URL from four tasks, each with the current bearer token, until
/// [`TokenLoad::finish`]: the load a key rotation must not fail a request of.
pub struct TokenLoad {
    token: Arc<RwLock<String>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<RwLock<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TokenLoad {
    pub fn start(url: String, token: String) -> TokenLoad {
        let token = Arc::new(RwLock::new(token));
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(RwLock::new(Vec::<String>::new()));
        let tasks = (0..4)
            .map(|_| {
                let (c, url, token, stop, ok, failures) = (
                    client(),
                    url.clone(),
                    token.clone(),
                    stop.clone(),
                    ok.clone(),
                    failures.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let bearer = token.read().clone();
                        match c.get(&url).bearer_auth(bearer).send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures.write().push(format!(
                                "{} {:?}",
                                r.status(),
                                r.headers().get("www-authenticate")
                            )),
                            Err(err) => failures.write().push(err.to_string()),
                        }
                    }
                })
            })
            .collect();
        TokenLoad {
            token,
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// The token every following request sends.
    pub fn set_token(&self, token: String) {
        *self.token.write() = token;
    }

    /// Stops the load and asserts that no request failed and that it ran
    /// (more than 50 answers of 200).
    pub async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        assert!(
            self.failures.read().is_empty(),
            "failed: {:?}",
            self.failures.read()
        );
        assert!(self.ok.load(Ordering::Relaxed) > 50, "the load ran");
    }
}

// ---- the real identity provider -----------------------------------------------

/// The identity-provider binary serving `keycloak/realm.json`, started for one test.
pub struct Idp {
    /// `<base>/realms/platform`.
    pub issuer: String,
    _process: testkit::ChildGuard,
}

impl Idp {
    pub async fn start() -> Idp {
        // The issuer URL goes into the provider's flags, so the port is chosen first.
        let port = testkit::free_port().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let issuer = format!("{base}/realms/platform");
        let realm = testkit::workspace_root().join("keycloak/realm.json");
        let started = testkit::Starter::new(workspace_bin("identity-provider"))
            .port(port)
            .args(["--no-register", "--realm-file", realm.to_str().unwrap()])
            .args(["--issuer-base-url", &base])
            // A rotated-in key signs 1 s after it is published (the
            // default 10 s is for validators that were not told).
            .args(["--key-activation-delay", "1s"])
            .ready_path("/realms/platform/.well-known/openid-configuration")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Idp {
            issuer,
            _process: started.process,
        }
    }

    /// A token endpoint answer (asserted 200).
    pub async fn token(&self, form: &[(&str, &str)]) -> Value {
        let res = client()
            .post(format!("{}/protocol/openid-connect/token", self.issuer))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "token request {form:?}");
        res.json().await.unwrap()
    }

    /// An access token by the password grant of the public client.
    pub async fn password(&self, user: &str, password: &str) -> String {
        self.access_token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", user),
            ("password", password),
        ])
        .await
    }

    /// An access token by the client credentials grant of the confidential client.
    pub async fn client_credentials(&self) -> String {
        self.access_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "platform-service"),
            ("client_secret", "platform-service-secret"),
        ])
        .await
    }

    async fn access_token(&self, form: &[(&str, &str)]) -> String {
        self.token(form).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

// ---- a stand-in OIDC issuer --------------------------------------------------

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of the test issuer, with its public JWK.
pub struct TestKey {
    pub kid: &'static str,
    pub key: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(kid: &'static str, pem: &str) -> TestKey {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey { kid, key, jwk }
    }

    /// `claims` signed under a normal RS256 header with this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        sign_with(&header, claims, &self.key, Algorithm::RS256)
    }
}

pub fn sign_with(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

pub fn key_a() -> TestKey {
    TestKey::rsa("key-a", include_str!("keys/rsa-a.pem"))
}
pub fn key_b() -> TestKey {
    TestKey::rsa("key-b", include_str!("keys/rsa-b.pem"))
}
pub fn key_other() -> TestKey {
    TestKey::rsa("key-other", include_str!("keys/rsa-other.pem"))
}

/// Serves OIDC discovery and a JWKS for realm `platform` (and `other`).
pub struct Issuer {
    pub base: String,
    /// `<base>/realms/platform`.
    pub issuer: String,
    jwks: Arc<RwLock<Value>>,
    _server: Upstream,
}

impl Issuer {
    pub async fn start(keys: &[&TestKey]) -> Issuer {
        let jwks = Arc::new(RwLock::new(json!({"keys": []})));
        let listener_probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener_probe.local_addr().unwrap().port();
        drop(listener_probe);
        let base = format!("http://127.0.0.1:{port}");
        let doc_base = base.clone();
        let served = jwks.clone();
        let app = axum::Router::new()
            .route(
                "/realms/{realm}/.well-known/openid-configuration",
                axum::routing::get(move |axum::extract::Path(realm): axum::extract::Path<String>| {
                    let b = doc_base.clone();
                    async move {
                        axum::Json(json!({
                            "issuer": format!("{b}/realms/{realm}"),
                            "jwks_uri": format!("{b}/realms/{realm}/protocol/openid-connect/certs"),
                        }))
                    }
                }),
            )
            .route(
                "/realms/{realm}/protocol/openid-connect/certs",
                axum::routing::get(move || {
                    let v = served.read().clone();
                    async move { axum::Json(v) }
                }),
            );
        // Bind the chosen port (freed above): the issuer URL must be known
        // before the server exists, to put into its discovery document.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        let issuer = Issuer {
            issuer: format!("{base}/realms/platform"),
            base,
            jwks,
            _server: Upstream {
                port,
                stop,
                _task: task,
            },
        };
        issuer.publish(keys);
        issuer
    }

    /// Replaces the published JWKS.
    pub fn publish(&self, keys: &[&TestKey]) {
        *self.jwks.write() =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }

    /// A validator of this issuer on `clock`, as the kit builds it from
    /// ISSUER_URL and JWT_AUDIENCE.
    pub fn validator(&self, audience: Option<&str>, clock: Clock) -> kit::auth::JwtValidator {
        let config = kit::auth::ValidatorConfig::new(&self.issuer).audiences(audience);
        kit::auth::JwtValidator::discover(config, reqwest::Client::new(), clock)
    }

    /// Keycloak-shaped access-token claims for `user` with `roles`, valid
    /// around `now` (seconds).
    pub fn claims(&self, now: i64, roles: &[&str]) -> Value {
        json!({
            "exp": now + 300, "iat": now, "jti": format!("jti-{now}-{}", roles.len()),
            "iss": self.issuer, "aud": "platform-api", "sub": "u-1", "typ": "Bearer",
            "azp": "platform-cli", "realm_access": {"roles": roles},
            "scope": "openid profile email", "preferred_username": "alice"
        })
    }
}

/// A public round-robin route `svc` from `/svc/**` (prefix stripped) to
/// `lb://svc`, with the TOML lines `extra` added to it.
pub fn svc_route(extra: &str) -> String {
    format!(
        r#"
[[routes]]
id = "svc"
uri = "lb://svc"
predicates = ["Path=/svc/**"]
filters = ["StripPrefix=1"]
strategy = "round_robin"
public = true
{extra}
"#
    )
}

/// GETs `url` (with `token` as bearer when given) and parses the JSON answer.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> T {
    let mut req = c.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// The status of a GET of `url` (with `token` as bearer when given).
pub async fn status(c: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    let mut req = c.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
