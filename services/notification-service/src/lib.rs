//! notification-service: turns `OrderPlacedEvent`s into notifications (port 8084).
//!
//! A Kafka consumer ([`consumer`]) reads `order-placed` in group `notification-service`,
//! renders each order's e-mail ([`email`]), stores it once per event id ([`store`], MySQL
//! database `notifications`) and "sends" it to the log. Poison messages go to
//! `order-placed.DLT`. The HTTP side ([`api`]) lists the notifications and reports the
//! consumer's state and lag.
//!
//! `main.rs` parses the [`Config`] and calls [`run`]; tests start the same service
//! in-process on port 0, or the binary itself for crash tests.
#![forbid(unsafe_code)]

pub mod api;
pub mod consumer;
pub mod email;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kit::config::{SecretParser, ServiceSpec, parse_duration};
use kit::{CommonArgs, HasCommon, Service};
use secrecy::{ExposeSecret, SecretString};

use crate::consumer::kafka::{self, DeadLetters};
use crate::consumer::state::{ConsumerState, StateCollector};
use crate::consumer::{ConsumerOptions, Monitor, Worker};
use crate::store::{NotificationStore, StoreError};

/// What notification-service is to the platform.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "notification-service",
    default_port: 8084,
    version: env!("CARGO_PKG_VERSION"),
    registers: true,
};

/// notification-service's configuration (flags or environment; `--help` shows defaults).
#[derive(Debug, Clone, Parser)]
#[command(about)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Kafka bootstrap servers, host:port[,host:port...]
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    pub kafka_bootstrap_servers: String,

    /// MySQL/MariaDB URL of the notifications database, mysql://user:password@host:3306/notifications
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "mysql://notifications@localhost:3306/notifications",
        value_parser = SecretParser::new("--database-url (DATABASE_URL)", parse_database_url),
        hide_env_values = true
    )]
    pub database_url: SecretString,

    /// Kafka consumer group
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "notification-service")]
    pub group_id: String,

    /// Topic of OrderPlacedEvents
    #[arg(long, env = "ORDER_PLACED_TOPIC", default_value = events::ORDER_PLACED_TOPIC)]
    pub topic: String,

    /// Dead-letter topic for messages that cannot be handled (created at start when missing)
    #[arg(long, env = "DLT_TOPIC", default_value = events::ORDER_PLACED_DLT)]
    pub dlt_topic: String,

    /// Handling attempts of a message before it goes to the dead-letter topic (database outages do not count: the consumer waits for the database)
    #[arg(long, env = "DLT_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,

    /// First wait before retrying a failed message; doubles up to --retry-backoff-max
    #[arg(long, env = "RETRY_BACKOFF", default_value = "200ms", value_parser = parse_duration)]
    pub retry_backoff: Duration,

    /// Longest wait between retries (also while waiting for the database)
    #[arg(long, env = "RETRY_BACKOFF_MAX", default_value = "5s", value_parser = parse_duration)]
    pub retry_backoff_max: Duration,

    /// Consumer group session timeout: how soon the group notices a dead instance
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,

    /// Longest time the broker may hold one fetch (librdkafka fetch.wait.max.ms). nisshi 0.6 looks for new data at half the remaining wait each time, so a message arriving mid-wait waits up to half of it: shorter means lower latency and more broker CPU while the topic is idle (see the README)
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX", default_value = "500ms", value_parser = kafka::parse_fetch_wait)]
    pub fetch_wait_max: Duration,

    /// Most bytes of records one fetch asks for, in all and per partition (librdkafka fetch.max.bytes and max.partition.fetch.bytes, 1000 to 52428800). Small, because on nisshi 0.6.0 a fetch's work grows with it and is not bounded by the fetch wait (issue 10's stall under load); it must stay above the largest event's key and value, which nisshi 0.6.0 otherwise never delivers (see the README)
    #[arg(long, env = "KAFKA_FETCH_MAX_BYTES", default_value_t = kafka::DEFAULT_FETCH_MAX_BYTES, value_parser = clap::value_parser!(u32).range(kafka::MIN_FETCH_MAX_BYTES as i64..=kafka::MAX_FETCH_MAX_BYTES as i64))]
    pub fetch_max_bytes: u32,

    /// librdkafka debug contexts of the consumer, comma-separated (librdkafka `debug`, e.g. `consumer,cgrp,fetch,protocol`); empty: off. Its lines are logged at debug level under target `librdkafka`, so RUST_LOG must let them through (`librdkafka=debug`)
    #[arg(long, env = "KAFKA_DEBUG", default_value = "", value_parser = kafka::parse_debug)]
    pub kafka_debug: String,

    /// How long one dead-letter write may take before it is retried
    #[arg(long, env = "DLT_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub dlt_write_timeout: Duration,

    /// How often consumer lag is measured from the broker for /metrics and readiness, and the watchdog looks at the consumer (/admin/consumer measures on request)
    #[arg(long, env = "LAG_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub lag_interval: Duration,

    /// How long the consumer may stay stuck (not in its group, holding no partition while partitions have no consumer, or receiving nothing while its partitions have lag) before it is closed and built again
    #[arg(long, env = "KAFKA_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub stall_timeout: Duration,

    /// Most messages handled at once; their notifications are stored in one transaction (1 handles messages one by one)
    #[arg(long, env = "CONSUMER_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,

    /// Database connections in the pool
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub db_max_connections: u32,

    /// How long a database operation waits for a connection before it fails
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
}

impl HasCommon for Config {
    fn common(&self) -> &CommonArgs {
        &self.common
    }

    /// Checks relations between options that clap cannot express (parsing calls it).
    fn validate(&self) -> Result<(), String> {
        if self.kafka_bootstrap_servers.trim().is_empty() {
            return Err("--kafka-bootstrap-servers must not be empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("--group-id must not be empty".into());
        }
        for (flag, topic) in [("--topic", &self.topic), ("--dlt-topic", &self.dlt_topic)] {
            if topic.is_empty()
                || topic.len() > 249
                || !topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(format!(
                    "{flag} `{topic}` is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"
                ));
            }
        }
        if self.topic == self.dlt_topic {
            return Err("--dlt-topic must differ from --topic".into());
        }
        if self.retry_backoff.is_zero() || self.retry_backoff > self.retry_backoff_max {
            return Err("--retry-backoff must be positive and at most --retry-backoff-max".into());
        }
        for (flag, d) in [
            ("--session-timeout", self.session_timeout),
            ("--dlt-write-timeout", self.dlt_write_timeout),
            ("--lag-interval", self.lag_interval),
            ("--stall-timeout", self.stall_timeout),
            ("--db-acquire-timeout", self.db_acquire_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} must be positive"));
            }
        }
        Ok(())
    }
}

/// Checks `DATABASE_URL` (read through [`kit::config::SecretParser`], so a bad value is never
/// echoed with its password).
fn parse_database_url(text: &str) -> Result<SecretString, String> {
    if !(text.starts_with("mysql://") || text.starts_with("mariadb://")) {
        return Err("expected mysql://user:password@host:3306/notifications".into());
    }
    <sqlx::mysql::MySqlConnectOptions as std::str::FromStr>::from_str(text)
        .map_err(|_| "not a valid MySQL connection URL".to_string())?;
    Ok(SecretString::from(text.to_string()))
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("notifications database: {0}")]
    Store(#[from] StoreError),
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Kafka broker address: {0}")]
    Broker(#[from] kafka_lag::LagError),
    #[error(transparent)]
    Service(#[from] kit::service::ServiceError),
}

/// A Kafka `client.id` from the instance id (brokers log it; keep it to safe characters).
fn client_id(instance_id: &str) -> String {
    instance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Starts the consumer and the lag refresher, and serves HTTP until shutdown.
pub async fn run(config: Config, service: Service) -> Result<(), RunError> {
    let store = NotificationStore::connect_lazy(
        config.database_url.expose_secret(),
        config.db_max_connections,
        config.db_acquire_timeout,
    )?;
    let state = Arc::new(ConsumerState::new(
        &config.group_id,
        &config.topic,
        &config.dlt_topic,
    ));
    let client_id = client_id(service.instance_id());
    let factory: consumer::ConsumerFactory = {
        let (bootstrap, client_id, group) = (
            config.kafka_bootstrap_servers.clone(),
            client_id.clone(),
            config.group_id.clone(),
        );
        let settings = kafka::ConsumerSettings {
            session_timeout: config.session_timeout,
            fetch_wait_max: config.fetch_wait_max,
            fetch_max_bytes: config.fetch_max_bytes,
            debug: config.kafka_debug.clone(),
        };
        let state = state.clone();
        Box::new(move || kafka::consumer(&bootstrap, &client_id, &group, &settings, state.clone()))
    };
    let dead_letters = DeadLetters::new(
        &config.kafka_bootstrap_servers,
        &client_id,
        &config.dlt_topic,
        config.dlt_write_timeout,
    )?;
    let broker = Arc::new(kafka_lag::BrokerClient::new(
        &config.kafka_bootstrap_servers,
        kafka_lag::Options {
            client_id: format!("{client_id}-lag"),
            ..kafka_lag::Options::default()
        },
    )?);
    let monitor = Monitor::new(broker.clone(), state.clone());

    kit::db::add_health_check(service.health(), store.pool());
    let kafka_check = monitor.clone();
    service.health().add_check("kafka", move || {
        let monitor = kafka_check.clone();
        async move { monitor.check().await }
    });
    service
        .metrics()
        .register_collector(Box::new(StateCollector(state.clone())));

    let options = ConsumerOptions {
        topic: config.topic.clone(),
        max_attempts: config.max_attempts,
        retry_backoff: config.retry_backoff,
        retry_backoff_max: config.retry_backoff_max,
        lag_interval: config.lag_interval,
        stall_timeout: config.stall_timeout,
        batch_size: usize::from(config.batch_size),
    };
    let (rebuild_tx, rebuild_rx) = tokio::sync::mpsc::channel(1);
    let worker = Worker::new(
        factory,
        broker,
        rebuild_rx,
        dead_letters,
        store.clone(),
        state.clone(),
        options,
        service.shutdown_token(),
    )?;
    service.spawn("order-placed consumer", worker.run());
    service.spawn(
        "consumer lag monitor and watchdog",
        monitor.clone().run(
            config.lag_interval,
            config.stall_timeout,
            rebuild_tx,
            service.shutdown_token(),
        ),
    );
    tracing::info!(
        bootstrap = %config.kafka_bootstrap_servers,
        group = %config.group_id,
        topic = %config.topic,
        dlt = %config.dlt_topic,
        max_attempts = config.max_attempts,
        "notification-service starting"
    );

    let app = api::AppState {
        store,
        consumer: state,
        monitor,
        validator: service.jwt_validator().cloned(),
    };
    service
        .serve(api::router(app.clone()), api::admin_router(app))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut all = vec!["notification-service"];
        all.extend_from_slice(args);
        kit::config::try_parse_from(&SPEC, all)
    }

    /// Defaults are the documented ones; the port defaults to 8084.
    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.common.port, Some(8084));
        assert_eq!(c.group_id, "notification-service");
        assert_eq!(c.topic, "order-placed");
        assert_eq!(c.dlt_topic, "order-placed.DLT");
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.fetch_wait_max, Duration::from_millis(500));
        assert_eq!(c.kafka_debug, "", "librdkafka debug is off by default");
        assert_eq!(c.fetch_max_bytes, 64 * 1024);
        c.validate().unwrap();
    }

    /// Bad values and bad combinations are usage errors, and a bad database URL is never echoed.
    #[test]
    fn bad_values() {
        let err = parse(&["--database-url", "postgres://u:s3cret@h/db"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(parse(&["--max-attempts", "0"]).is_err());
        assert!(parse(&["--fetch-wait-max", "0ms"]).is_err());
        assert!(parse(&["--fetch-wait-max", "301s"]).is_err());
        let c = parse(&["--fetch-wait-max", "20ms"]).unwrap();
        assert_eq!(c.fetch_wait_max, Duration::from_millis(20));
        assert!(parse(&["--kafka-debug", "fetch,nonsense"]).is_err());
        assert!(parse(&["--fetch-max-bytes", "999"]).is_err());
        assert!(parse(&["--fetch-max-bytes", "52428801"]).is_err());
        assert_eq!(
            parse(&["--fetch-max-bytes", "1000"])
                .unwrap()
                .fetch_max_bytes,
            1000
        );
        let c = parse(&["--kafka-debug", "consumer,fetch"]).unwrap();
        assert_eq!(c.kafka_debug, "consumer,fetch");
        for args in [
            &["--topic", "a", "--dlt-topic", "a"][..],
            &["--retry-backoff", "10s", "--retry-backoff-max", "1s"],
            &["--topic", "bad topic"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    /// Client ids keep only characters brokers accept everywhere.
    #[test]
    fn client_id_is_sanitised() {
        assert_eq!(
            client_id("10.0.0.5:notification-service:8084"),
            "10.0.0.5_notification-service_8084"
        );
    }
}
