//! inventory-service against a real, throwaway MariaDB: the service runs
//! in-process on port 0, exactly as `main` runs it.

mod reservations;
mod validation;

use std::time::Duration;

use inventory_service::{Config, SPEC};
use serde_json::{Value, json};
use testkit::InProcess;

pub const ADMIN: &str = "Bearer test-admin-token";

/// A running inventory-service with its own database server.
pub struct App {
    /// Sends the shared admin token on every request: without an issuer it
    /// stands in for the `service` role that reservations need.
    pub http: reqwest::Client,
    pub db: testkit::MariaDb,
    pub pool: sqlx::MySqlPool,
    service: InProcess<anyhow::Error>,
}

impl App {
    pub async fn start() -> App {
        kit::telemetry::init_for_tests();
        let db = testkit::MariaDb::start().await.expect("MariaDB starts");
        let access = db.create_database("inventory").await.expect("database");
        let config = Config::for_tests(&access.url, None);
        let service = InProcess::start(&SPEC, config.common.clone(), |service| {
            inventory_service::run(config, service)
        })
        .await
        .expect("bind");
        service
            .wait_ready(Duration::from_secs(30))
            .await
            .expect("ready");
        let pool = sqlx::MySqlPool::connect(&access.url).await.expect("pool");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, ADMIN.parse().unwrap());
        App {
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            db,
            pool,
            service,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    pub async fn set_stock(&self, sku: &str, quantity: u64) {
        let res = self
            .http
            .put(self.url(&format!("/admin/inventory/{sku}")))
            .header("authorization", ADMIN)
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }

    pub async fn stock(&self, sku: &str) -> i64 {
        let v: Value =
            testkit::body_json(self.http.get(self.url(&format!("/api/inventory/{sku}")))).await;
        v["quantity"].as_i64().unwrap()
    }

    pub async fn reserve(&self, order: &str, lines: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/api/inventory/reservations"))
            .json(&json!({ "orderNumber": order, "lines": lines }))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn release(&self, order: &str) -> (u16, Value) {
        let res = self
            .http
            .delete(self.url(&format!("/api/inventory/reservations/{order}")))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, table: &str) -> i64 {
        testkit::count_rows(&self.pool, table).await
    }

    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

pub use testkit::problem;
