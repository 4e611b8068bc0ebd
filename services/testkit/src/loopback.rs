//! The whole platform as release processes on loopback, for benchmarks that compare it with the
//! deployed stack or measure one of its costs: the same binaries `platform up` images, started
//! as plain processes, with JWT at the edge and span export to a trace-collector.
//!
//! - [`Infra`]: what outlives a run: MariaDB (testkit), the registry (discovery-server), the
//!   identity provider with the dev realm (`keycloak/realm.json`) and the trace-collector.
//! - [`Services`]: one run's part: a fresh broker (testkit, `order-placed` with 3 partitions),
//!   fresh databases, and inventory-, product- (optional), order-, notification-service and the
//!   api-gateway, every one with `TRACE_SAMPLE_RATIO` and the run's extra environment.
//! - [`start`]: one binary on a loopback port, waited for (`BENCH_BIN_DIR` overrides where the
//!   binaries are found: e.g. builds with symbols, to profile).
//! - [`token`]: a password-grant token of a dev-realm user.
//!
//! Services log at `warn` unless the run's environment sets `RUST_LOG`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Broker, BrokerKind, Error, MariaDb, Result, Started, Starter};

/// The services a [`Services`] run starts, in start order (product-service only with the
/// catalogue on).
pub const SERVICES: [&str; 5] = [
    "inventory-service",
    "product-service",
    "order-service",
    "notification-service",
    "api-gateway",
];

/// The release binaries of this workspace: `<target>/release`.
pub fn release_dir() -> PathBuf {
    crate::target_dir().join("release")
}

/// Starts binary `name` of `bin_dir` (or of `$BENCH_BIN_DIR` when it has one of that name) on
/// `port` (a free one when `None`) on 127.0.0.1 with `args` and `env` (`RUST_LOG=warn` unless
/// `env` sets it), and waits up to 60 s for `/health/ready`.
pub async fn start(
    bin_dir: &Path,
    name: &str,
    port: Option<u16>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Started> {
    let program = std::env::var_os("BENCH_BIN_DIR")
        .map(|d| PathBuf::from(d).join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| bin_dir.join(name));
    let mut starter = Starter::new(program)
        .args(args)
        .envs(env.iter().copied())
        .within(Duration::from_secs(60));
    if let Some(port) = port {
        starter = starter.port(port);
    }
    starter.start().await
}

/// An access token of dev-realm user `user` (password = user name, as in keycloak/realm.json)
/// from `issuer` (`.../realms/platform`), through the `platform-cli` client.
pub async fn token(http: &reqwest::Client, issuer: &str, user: &str) -> Result<String> {
    let url = format!("{issuer}/protocol/openid-connect/token");
    let failed = |reason: String| Error::Http {
        context: format!("token of {user} from {url}"),
        reason,
    };
    let res = http
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", user),
            ("password", user),
        ])
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !res.status().is_success() {
        return Err(failed(format!("HTTP {}", res.status())));
    }
    let body: Value = res.json().await.map_err(|e| failed(e.to_string()))?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| failed("no access_token in the answer".into()))
}

/// MariaDB, the registry, the identity provider and the trace-collector, shared by runs.
#[derive(Debug)]
pub struct Infra {
    pub db: MariaDb,
    pub registry: Started,
    pub idp: Started,
    pub collector: Started,
    /// `http://127.0.0.1:<idp>/realms/platform`.
    pub issuer: String,
    /// The collector's span endpoint (`ZIPKIN_ENDPOINT`).
    pub zipkin: String,
    bin_dir: PathBuf,
}

impl Infra {
    /// Starts them from the binaries in `bin_dir`.
    pub async fn start(bin_dir: &Path) -> Result<Infra> {
        let db = MariaDb::start().await?;
        let registry = start(bin_dir, "discovery-server", None, &[], &[]).await?;
        let idp_port = crate::free_port()?;
        let idp_base = format!("http://127.0.0.1:{idp_port}");
        let realm = crate::workspace_root().join("keycloak/realm.json");
        let realm = realm.to_string_lossy();
        let idp = start(
            bin_dir,
            "identity-provider",
            Some(idp_port),
            &[
                "--no-register",
                "--realm-file",
                &realm,
                "--issuer-base-url",
                &idp_base,
                "--key-activation-delay",
                "1s",
            ],
            &[],
        )
        .await?;
        let collector = start(bin_dir, "trace-collector", None, &["--no-register"], &[]).await?;
        let zipkin = collector.url("/api/v2/spans");
        Ok(Infra {
            db,
            registry,
            idp,
            collector,
            issuer: format!("{idp_base}/realms/platform"),
            zipkin,
            bin_dir: bin_dir.to_path_buf(),
        })
    }

    /// The processes by name: `MariaDB`, `discovery-server`, `identity-provider`,
    /// `trace-collector`.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        if let Some(pid) = self.db.pid() {
            out.push(("MariaDB".to_string(), pid));
        }
        for (name, p) in [
            ("discovery-server", &self.registry),
            ("identity-provider", &self.idp),
            ("trace-collector", &self.collector),
        ] {
            out.push((name.to_string(), p.process.pid()));
        }
        out
    }
}

/// How one run's services are started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Databases are `inventory_<tag>`, `orders_<tag>`, `notifications_<tag>`.
    pub tag: String,
    /// `TRACE_SAMPLE_RATIO` of every service.
    pub sample_ratio: f64,
    /// With product-service, and order-service checking prices against it (as deployed);
    /// without, order-service takes prices as sent (`PRICE_CHECK=off`).
    pub catalog: bool,
    /// More environment for every service (a later value wins: `RUST_LOG`, ...).
    pub env: Vec<(String, String)>,
    /// The broker; `None`: the one `TESTKIT_BROKER` names ([`BrokerKind::from_env`]).
    /// kafka-broker is the one in [`Infra`]'s binary directory when it has one.
    pub broker: Option<BrokerKind>,
}

/// One run's broker and services; stopped by [`Services::stop`] (killed when dropped).
#[derive(Debug)]
pub struct Services {
    pub broker: Broker,
    /// In start order ([`SERVICES`], product-service only with the catalogue).
    pub processes: Vec<(String, Started)>,
    /// product-service's embedded store.
    _data: tempfile::TempDir,
}

impl Services {
    /// Starts a fresh broker, fresh databases and the services against `infra`.
    pub async fn start(infra: &Infra, options: &Options) -> Result<Services> {
        // kafka-broker is one of the workspace's binaries: the build in `bin_dir`, like the
        // services (testkit's own lookup takes the newest build, which may be a debug one).
        let broker = match options.broker {
            Some(BrokerKind::KafkaBroker) if infra.bin_dir.join("kafka-broker").is_file() => {
                Broker::start_binary(BrokerKind::KafkaBroker, infra.bin_dir.join("kafka-broker"))
                    .await?
            }
            Some(kind) => Broker::start_kind(kind).await?,
            None => Broker::start().await?,
        };
        broker.create_topic("order-placed", 3).await?;
        let bootstrap = broker.bootstrap_servers();
        let mut urls = BTreeMap::new();
        for db in ["inventory", "orders", "notifications"] {
            let access = infra
                .db
                .create_database(&format!("{db}_{}", options.tag))
                .await?;
            urls.insert(db, access.url);
        }
        let data = tempfile::tempdir().map_err(Error::io("product store directory"))?;
        let product_db = format!("embedded:{}", data.path().display());
        let ratio = format!("{:.3}", options.sample_ratio);
        let env: Vec<(&str, &str)> = vec![
            ("ZIPKIN_ENDPOINT", &infra.zipkin),
            ("TRACE_SAMPLE_RATIO", &ratio),
        ];
        let common = [
            "--advertise-host",
            "127.0.0.1",
            "--registry-url",
            &infra.registry.base,
            "--issuer-url",
            &infra.issuer,
        ];
        let mut processes = Vec::new();
        for name in SERVICES {
            let mut args: Vec<&str> = common.to_vec();
            let mut vars = env.clone();
            match name {
                "inventory-service" => args.extend(["--database-url", &urls["inventory"]]),
                "product-service" if !options.catalog => continue,
                "product-service" => vars.push(("PRODUCT_DB_URL", &product_db)),
                "order-service" => {
                    args.extend([
                        "--database-url",
                        &urls["orders"],
                        "--kafka-bootstrap-servers",
                        &bootstrap,
                    ]);
                    // Its service account in the dev realm (the `service` role inventory's
                    // reservations require).
                    vars.push(("CLIENT_ID", "order-service"));
                    vars.push(("CLIENT_SECRET", "order-service-secret"));
                    if !options.catalog {
                        vars.push(("PRICE_CHECK", "off"));
                    }
                }
                "notification-service" => args.extend([
                    "--database-url",
                    &urls["notifications"],
                    "--kafka-bootstrap-servers",
                    &bootstrap,
                ]),
                // Every service's /metrics is read by benchmarks, the gateway's included
                // (private by default; this runs on loopback).
                "api-gateway" => args.push("--public-observability"),
                _ => {}
            }
            // The run's own environment last: it wins over the defaults above.
            vars.extend(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let started = start(&infra.bin_dir, name, None, &args, &vars).await?;
            processes.push((name.to_string(), started));
        }
        Ok(Services {
            broker,
            processes,
            _data: data,
        })
    }

    /// The process of service `name`.
    pub fn get(&self, name: &str) -> Option<&Started> {
        self.processes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// The gateway's base URL.
    pub fn gateway(&self) -> &str {
        self.get("api-gateway").map_or("", |p| p.base.as_str())
    }

    /// The services' and the broker's pids by name (the broker as `broker`).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .processes
            .iter()
            .map(|(n, p)| (n.clone(), p.process.pid()))
            .collect();
        if let Some(pid) = self.broker.pid() {
            out.push(("broker".to_string(), pid));
        }
        out
    }

    /// Lists each of `skus` at `price` in the catalogue (with the catalogue on) and sets its
    /// stock to `quantity`, as `admin_token`'s user (the `admin` role).
    pub async fn stock(
        &self,
        http: &reqwest::Client,
        admin_token: &str,
        skus: &[String],
        price: &str,
        quantity: u64,
    ) -> Result<()> {
        let inventory = self.get("inventory-service").map(|p| p.base.clone());
        let product = self.get("product-service").map(|p| p.base.clone());
        for sku in skus {
            if let Some(base) = &product {
                let body = json!({
                    "skuCode": sku,
                    "name": format!("bench product {sku}"),
                    "description": "listed by a benchmark",
                    "price": price,
                });
                send(http.post(format!("{base}/api/product")), admin_token, &body).await?;
            }
            if let Some(base) = &inventory {
                let body = json!({ "quantity": quantity });
                let url = format!("{base}/admin/inventory/{sku}");
                send(http.put(url), admin_token, &body).await?;
            }
        }
        Ok(())
    }

    /// Places orders of one unit of `sku` at `price` through the gateway with `token` until one
    /// is accepted (the gateway and order-service find their upstreams through the registry),
    /// for at most 30 s.
    pub async fn wait_for_orders(
        &self,
        http: &reqwest::Client,
        token: &str,
        sku: &str,
        price: &str,
    ) -> Result<()> {
        let url = format!("{}/api/order", self.gateway());
        let body = json!({ "lines": [{ "skuCode": sku, "price": price, "quantity": 1 }] });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let last = match http.post(&url).bearer_auth(token).json(&body).send().await {
                Ok(res) if res.status().is_success() => return Ok(()),
                Ok(res) => format!(
                    "HTTP {}: {}",
                    res.status(),
                    res.text().await.unwrap_or_default()
                ),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("an order accepted at {url}"),
                    after: Duration::from_secs(30),
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the services (SIGTERM, 10 s grace each, the gateway first) and the broker.
    pub async fn stop(mut self) {
        while let Some((_, mut p)) = self.processes.pop() {
            let _ = p.process.stop(Duration::from_secs(10)).await;
        }
        let _ = self.broker.stop().await;
    }
}

/// Sends `request` with `token` and the JSON `body`; any non-2xx answer is an error.
async fn send(request: reqwest::RequestBuilder, token: &str, body: &Value) -> Result<()> {
    let res = request
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| Error::Http {
            context: "stocking".into(),
            reason: e.to_string(),
        })?;
    if !res.status().is_success() {
        let url = res.url().to_string();
        let status = res.status();
        return Err(Error::Http {
            context: format!("stocking at {url}"),
            reason: format!("HTTP {status}: {}", res.text().await.unwrap_or_default()),
        });
    }
    Ok(())
}
