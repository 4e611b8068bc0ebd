//! order-service: places orders after reserving stock at inventory-service
//! (through the registry, a load balancer, a timeout and a circuit
//! breaker), stores each order with its `OrderPlacedEvent` in one MySQL
//! transaction (transactional outbox) and relays the events to Kafka.
//!
//! Modules: [`api`] (HTTP and the order flow), [`inventory`] (the guarded
//! client), [`store`] (MySQL), [`relay`] (outbox → Kafka),
//! [`compensation`] (releasing reservations of failed orders), [`model`]
//! (request/response types and rules), [`error`].
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod compensation;
pub mod error;
pub mod inventory;
pub mod model;
pub mod relay;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use kit::breaker::{BreakerArgs, BreakerRegistry, CircuitBreaker};
use kit::config::{HasCommon, ServiceSpec, parse_duration};
use kit::lb::{Balancer, EjectionPolicy, Strategy};
use kit::{CommonArgs, Service};
use secrecy::{ExposeSecret, SecretString};

/// What this service is.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "order-service",
    default_port: 8082,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// The name of the breaker guarding inventory calls.
pub const INVENTORY_BREAKER: &str = "inventory-service";

/// The service's configuration, from flags and environment (`--help` shows
/// the package description first).
#[derive(Debug, Clone, clap::Parser)]
#[command(about)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// MySQL URL of the orders database, with the service's own user: mysql://user:password@host:port/orders
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,

    /// Largest number of database connections
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 32)]
    pub db_max_connections: u32,

    /// How long to keep retrying the first database connection at start
    #[arg(long, env = "DB_CONNECT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub db_connect_timeout: Duration,

    /// Kafka bootstrap servers (host:port[,host:port])
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub kafka_bootstrap_servers: String,

    /// Partitions of the order-placed topic when this service creates it
    #[arg(long, env = "ORDER_TOPIC_PARTITIONS", default_value_t = 3)]
    pub order_topic_partitions: i32,

    /// Registry name of the inventory service
    #[arg(long, env = "INVENTORY_SERVICE", default_value = "inventory-service")]
    pub inventory_service: String,

    /// Time limit of one inventory call (the seed's time limiter: 3s)
    #[arg(long, env = "INVENTORY_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub inventory_timeout: Duration,

    /// How instances of inventory are chosen
    #[arg(long, env = "INVENTORY_LB_STRATEGY", value_enum, default_value_t = Strategy::PowerOfTwoChoices)]
    pub inventory_lb_strategy: Strategy,

    /// How each line's price is checked: `catalog` (it must equal product-service's price, else 422 price-mismatch) or `off` (taken as sent; only for tests without product-service)
    #[arg(long, env = "PRICE_CHECK", value_enum, default_value = "catalog")]
    pub price_check: catalog::PriceCheck,

    /// Registry name of the product catalogue
    #[arg(long, env = "PRODUCT_SERVICE", default_value = "product-service")]
    pub product_service: String,

    /// Client id of this service's account at the issuer: its token (client credentials grant) carries the `service` role that inventory's reservations require
    #[arg(long, env = "CLIENT_ID", default_value = "order-service")]
    pub client_id: String,

    /// Secret of --client-id; required with --issuer-url (without an issuer, the shared admin token is sent instead)
    #[arg(long, env = "CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<SecretString>,

    #[command(flatten)]
    pub breaker: BreakerArgs,

    /// Outbox relay: poll interval when no order wakes it
    #[arg(long, env = "OUTBOX_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub outbox_poll_interval: Duration,

    /// Outbox relay: concurrent workers per instance (one sends while another waits for acknowledgements)
    #[arg(long, env = "OUTBOX_RELAY_WORKERS", default_value_t = 2)]
    pub outbox_relay_workers: usize,

    /// Outbox relay: events per pass
    #[arg(long, env = "OUTBOX_BATCH_SIZE", default_value_t = 500)]
    pub outbox_batch_size: u32,

    /// Outbox relay: how long the Kafka producer waits for more events before it sends a request (librdkafka linger.ms); each pass hands its whole batch at once, so this only gathers events of passes running together: longer means fewer, larger requests and later events
    #[arg(long, env = "OUTBOX_LINGER", default_value = "1ms", value_parser = relay::parse_linger)]
    pub outbox_linger: Duration,

    /// Outbox relay: how long a pass waits for the broker's acknowledgements before it retries the batch with a new producer
    #[arg(long, env = "OUTBOX_SEND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub outbox_send_timeout: Duration,

    /// Idempotency-Key: how long a repeat waits for the first attempt before answering 409
    #[arg(long, env = "IDEMPOTENCY_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub idempotency_wait: Duration,

    /// Idempotency-Key: an attempt silent this long is taken over by a repeat (its instance crashed)
    #[arg(long, env = "IDEMPOTENCY_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub idempotency_lease: Duration,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

impl Config {
    /// A configuration for tests: port 0, the given database and broker, the
    /// platform's breaker defaults, a fast relay poll.
    pub fn for_tests(database_url: &str, kafka: &str, registry_url: Option<&str>) -> Config {
        use clap::Parser;
        // Parse the defaults (breaker included) from an empty command line,
        // so tests see exactly what a deployment without overrides sees.
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            breaker: BreakerArgs,
        }
        let defaults = Defaults::parse_from(["order-service"]);
        Config {
            common: CommonArgs::for_tests(registry_url),
            database_url: SecretString::from(database_url.to_string()),
            db_max_connections: 32,
            db_connect_timeout: Duration::from_secs(30),
            kafka_bootstrap_servers: kafka.to_string(),
            order_topic_partitions: 3,
            inventory_service: "inventory-service".into(),
            inventory_timeout: Duration::from_secs(3),
            inventory_lb_strategy: Strategy::PowerOfTwoChoices,
            // Tests of other concerns run without product-service; the
            // price tests switch the check on.
            price_check: catalog::PriceCheck::Off,
            product_service: "product-service".into(),
            client_id: "order-service".into(),
            client_secret: None,
            breaker: defaults.breaker,
            outbox_poll_interval: Duration::from_millis(200),
            outbox_batch_size: 500,
            outbox_relay_workers: 2,
            outbox_send_timeout: Duration::from_secs(10),
            outbox_linger: Duration::from_millis(1),
            idempotency_wait: Duration::from_secs(5),
            idempotency_lease: Duration::from_secs(30),
        }
    }
}

/// The credentials order-service presents to inventory: its service
/// account's token with an issuer, else the shared admin token (which is
/// what inventory then accepts in place of the `service` role).
fn service_token(
    config: &Config,
    http: &reqwest::Client,
) -> anyhow::Result<kit::auth::ServiceToken> {
    use kit::auth::ServiceToken;
    match (&config.common.issuer_url, &config.client_secret) {
        (Some(issuer), Some(secret)) => Ok(ServiceToken::client_credentials(
            issuer,
            config.client_id.clone(),
            secret.clone(),
            http.clone(),
        )),
        (Some(_), None) => anyhow::bail!(
            "ISSUER_URL is set but CLIENT_SECRET is not: order-service needs its service account's secret (client {}) to reserve stock",
            config.client_id
        ),
        (None, _) => Ok(config
            .common
            .admin_token
            .clone()
            .map_or(ServiceToken::None, ServiceToken::Static)),
    }
}

/// Connects to the database, starts the relay and the compensator, and
/// serves until the service's shutdown token is cancelled (or a signal).
pub async fn run(config: Config, service: Service) -> anyhow::Result<()> {
    let breaker_config = config
        .breaker
        .config()
        .context("circuit breaker configuration")?;
    let store = store::Store::connect(
        config.database_url.expose_secret(),
        config.db_max_connections,
        config.db_connect_timeout,
    )
    .await?;
    kit::db::add_health_check(service.health(), store.pool());

    // Start watching the registry now, so the first order finds inventory
    // in the cache instead of waiting for the first registry answer.
    service.discovery().start();
    let breakers = BreakerRegistry::new(service.metrics());
    let breaker = CircuitBreaker::new(INVENTORY_BREAKER, breaker_config);
    breakers.add(breaker.clone());
    let balancer = Balancer::new(
        &config.inventory_service,
        service.discovery().clone(),
        config.inventory_lb_strategy,
        EjectionPolicy::default(),
    );
    let inventory = inventory::InventoryClient::new(
        balancer,
        breaker,
        service.http_client().clone(),
        config.inventory_timeout,
        service_token(&config, service.http_client())?,
    );

    let catalog = match config.price_check {
        catalog::PriceCheck::Catalog => Some(catalog::CatalogClient::new(
            Balancer::new(
                &config.product_service,
                service.discovery().clone(),
                Strategy::PowerOfTwoChoices,
                EjectionPolicy::default(),
            ),
            service.http_client().clone(),
            config.inventory_timeout,
        )),
        catalog::PriceCheck::Off => {
            tracing::warn!("PRICE_CHECK=off: order prices are taken as the client sends them");
            None
        }
    };

    let relay = relay::Relay::new(
        store.pool().clone(),
        relay::RelayOptions {
            bootstrap_servers: config.kafka_bootstrap_servers.clone(),
            topic_partitions: config.order_topic_partitions,
            poll_interval: config.outbox_poll_interval,
            batch_size: config.outbox_batch_size,
            send_timeout: config.outbox_send_timeout,
            linger: config.outbox_linger,
            client_id: service.instance_id().to_string(),
            workers: config.outbox_relay_workers,
        },
        service.metrics(),
    )
    .context("creating the Kafka producer")?;
    let wake = relay.waker();
    service.spawn("outbox-relay", relay.run(service.shutdown_token()));

    let (compensate, queue) = tokio::sync::mpsc::channel(10_000);
    service.spawn(
        "compensation",
        compensation::run(
            queue,
            store.clone(),
            inventory.clone(),
            service.shutdown_token(),
        ),
    );

    let state = api::AppState::new(
        store,
        api::Upstreams { inventory, catalog },
        wake,
        compensate,
        service.jwt_validator().cloned(),
        api::IdempotencyOptions {
            wait: config.idempotency_wait,
            lease: config.idempotency_lease,
        },
        service.metrics(),
    );
    service
        .serve(
            api::router(state.clone()),
            api::admin_router(state, breakers),
        )
        .await
        .context("serving HTTP")
}
