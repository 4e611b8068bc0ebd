//! Starting the registry (and kit-based instances) in-process, and small
//! HTTP helpers.

use std::time::Duration;

use axum::Router;
use discovery_server::{AppState, Config, SPEC, admin_router, build, router};
use kit::Service;
use kit::clock::Clock;
use kit::config::{CommonArgs, ServiceSpec};
use kit::registry::Discovery;
use kit::registry::model::{ApplicationsEnvelope, InstanceEnvelope, InstanceInfo};
use kit::service::ServiceError;
use serde_json::Value;
use testkit::InProcess;
pub use testkit::eventually;

/// 2023-11-14T22:13:20Z: where manual clocks start.
pub const T0: u64 = 1_700_000_000_000;

/// The admin token `CommonArgs::for_tests` configures.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A registry running in this process.
pub struct TestApp {
    pub url: String,
    pub port: u16,
    pub state: AppState,
    pub clock: Clock,
    pub http: reqwest::Client,
    service: InProcess<ServiceError>,
}

impl TestApp {
    /// Starts a registry with the test defaults, changed by `tweak`.
    pub async fn start_with(clock: Clock, tweak: impl FnOnce(&mut Config)) -> TestApp {
        kit::telemetry::init_for_tests();
        let mut config = Config::for_tests();
        tweak(&mut config);
        let service = Service::bind(&SPEC, config.common.clone())
            .await
            .expect("bind the registry");
        let state = build(&config, clock.clone(), &service);
        let served = state.clone();
        let service = InProcess::spawn(service, |s| {
            s.serve(router(served.clone()), admin_router(served))
        });
        TestApp {
            url: service.base().to_string(),
            port: service.port(),
            state,
            clock,
            http: reqwest::Client::new(),
            service,
        }
    }

    /// A registry on a manual clock starting at [`T0`].
    pub async fn manual() -> TestApp {
        TestApp::start_with(Clock::manual(T0), |_| {}).await
    }

    /// A registry on the system clock.
    pub async fn system() -> TestApp {
        TestApp::start_with(Clock::System, |_| {}).await
    }

    /// Stops the registry and waits until its port is free again.
    pub async fn stop(self) {
        // Only the port being free matters here, not how serving ended.
        let _ = self.service.stop().await;
    }

    pub fn eureka(&self, path: &str) -> String {
        format!("{}/eureka/{}", self.url, path.trim_start_matches('/'))
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Registers `instance` with `POST /eureka/apps/{APP}`, expecting 204.
    pub async fn register(&self, instance: &InstanceInfo) {
        let res = self
            .http
            .post(self.eureka(&format!("apps/{}", instance.app)))
            .json(&InstanceEnvelope {
                instance: instance.clone(),
            })
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    }

    /// `PUT /eureka/apps/{APP}/{ID}`, returning the status code.
    pub async fn renew(&self, app: &str, id: &str) -> u16 {
        self.put(&format!("apps/{app}/{id}?status=UP")).await
    }

    /// `PUT /eureka/{path}` without a body, returning the status code.
    pub async fn put(&self, path: &str) -> u16 {
        self.status(self.http.put(self.eureka(path))).await
    }

    /// `DELETE /eureka/{path}`, returning the status code.
    pub async fn delete(&self, path: &str) -> u16 {
        self.status(self.http.delete(self.eureka(path))).await
    }

    /// Sends `req`, returning the status code.
    pub async fn status(&self, req: reqwest::RequestBuilder) -> u16 {
        req.send().await.unwrap().status().as_u16()
    }

    /// The body of a GET of `url` (with `accept` when given).
    pub async fn text(&self, url: &str, accept: Option<&str>) -> String {
        let mut req = self.http.get(url);
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        req.send().await.unwrap().text().await.unwrap()
    }

    /// `GET /eureka/apps` as JSON.
    pub async fn apps(&self) -> ApplicationsEnvelope {
        testkit::body_json(
            self.http
                .get(self.eureka("apps"))
                .header("accept", "application/json"),
        )
        .await
    }

    /// GET with a JSON Accept, returning status and body.
    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let res = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/registry`.
    pub async fn admin(&self) -> Value {
        testkit::body_json(
            self.http
                .get(format!("{}/admin/registry", self.url))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        testkit::body_text(self.http.get(format!("{}/metrics", self.url))).await
    }

    pub fn instance_count(&self) -> usize {
        self.state.registry.stats().instances
    }
}

/// An instance as a kit-based service would register it.
pub fn instance(app: &str, id: &str, port: u16) -> InstanceInfo {
    InstanceInfo::new(app, id, "127.0.0.1", "127.0.0.1", port)
}

/// A kit-based service running in this process, registered with a registry.
pub struct KitInstance {
    pub port: u16,
    pub instance_id: String,
    pub discovery: Discovery,
    service: InProcess<ServiceError>,
}

impl KitInstance {
    /// Starts a kit `Service` named `spec.name` that registers with
    /// `registry_url` and renews every `renew` (lease three times that).
    pub async fn start(
        spec: &'static ServiceSpec,
        registry_url: &str,
        renew: Duration,
    ) -> KitInstance {
        let mut common = CommonArgs::for_tests(Some(registry_url));
        common.lease_renewal_interval = renew;
        common.lease_duration = renew * 3;
        let service = Service::bind(spec, common).await.expect("bind kit service");
        let port = service.port();
        let instance_id = service.instance_id().to_string();
        let discovery = service.discovery().clone();
        let service = InProcess::spawn(service, |s| s.serve(Router::new(), Router::new()));
        KitInstance {
            port,
            instance_id,
            discovery,
            service,
        }
    }

    /// Stops it (it deregisters first).
    pub async fn stop(self) {
        let _ = self.service.stop().await;
    }
}

/// A kit service spec for tests.
pub const fn spec(name: &'static str) -> ServiceSpec {
    ServiceSpec {
        name,
        default_port: 0,
        version: "0.0.0-test",
        registers: true,
    }
}
