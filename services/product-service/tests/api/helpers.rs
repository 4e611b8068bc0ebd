//! Starting the real service in-process for a test, and reading its answers.

use std::sync::Arc;

use product_service::store::embedded::EmbeddedStore;
use reqwest::Client;
use serde_json::Value;
use testkit::InProcess;

/// The shared admin token of a service run without an issuer.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A client that sends the admin credentials on every request: catalogue
/// writes need the admin role (without an issuer, the shared admin token).
pub fn admin_client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    Client::builder().default_headers(headers).build().unwrap()
}

/// A product-service instance on a free port with its own embedded store.
pub struct TestApp {
    /// Sends the admin credentials (see [`admin_client`]).
    pub client: Client,
    service: InProcess<product_service::RunError>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts the service on port 0 with an embedded store in a fresh temp dir.
    pub async fn spawn() -> TestApp {
        kit::telemetry::init_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("products"))
            .await
            .unwrap();
        let service = InProcess::start(
            &product_service::SPEC,
            kit::CommonArgs::for_tests(None),
            |service| product_service::serve(Arc::new(store), service),
        )
        .await
        .unwrap();
        TestApp {
            client: admin_client(),
            service,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/product"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A POST with a raw body and content type, for malformed input.
    pub fn raw_post(&self, body: &'static str, content_type: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url("/api/product"))
            .header("content-type", content_type)
            .body(body)
    }

    /// `GET /api/product<query>` as JSON, asserting 200.
    pub async fn list(&self, query: &str) -> Value {
        let res = self.get(&format!("/api/product{query}")).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Stops the service and waits for it to finish cleanly.
    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// Asserts a problem+json answer with `status` and type slug `kind`; returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(
        body["type"],
        format!("https://platform.local/problems/{kind}"),
        "{body}"
    );
    body
}
