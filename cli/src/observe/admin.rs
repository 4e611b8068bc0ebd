//! Readers of the services' admin endpoints, for the dashboard and later commands: circuit
//! breakers (`GET /admin/breakers`, order-service), consumer lag (`GET /admin/consumer`,
//! notification-service) and load-balancer upstreams (`GET /admin/upstreams`, api-gateway and
//! order-service). `/admin` wants a JWT with the `admin` realm role, so [`Admin`] first gets a
//! client-credentials token ([`super::auth::Grant::default_service`]) and reuses it.
//!
//! Every running instance is read on its own (each has its own breakers, lag and balancer
//! state); an instance that fails to answer is reported as such instead of failing the rest.
//! Breakers and upstream entries use the kit's own types; the consumer report mirrors
//! notification-service's JSON (the CLI does not depend on service crates).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use circuit_breaker::Snapshot;
use registry_client::lb::{EndpointStatus, Strategy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::{self, Grant};
use super::{Observer, Result, instance_label};

/// The service with the circuit breakers (towards inventory-service).
pub const BREAKERS_SERVICE: &str = "order-service";
/// The service whose consumer lag is read.
pub const CONSUMER_SERVICE: &str = "notification-service";
/// The service whose upstreams are read.
pub const UPSTREAMS_SERVICE: &str = "api-gateway";

/// One instance's answer, or why there is none.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRead<T> {
    /// `order-service-2`.
    pub instance: String,
    pub container: String,
    /// What was read, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /admin/consumer` of notification-service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerReport {
    pub group: String,
    pub topic: String,
    #[serde(default)]
    pub dead_letter_topic: String,
    /// Whether the consumer joined its group.
    pub joined: bool,
    /// Partitions of the topic this instance holds.
    #[serde(default)]
    pub assigned_partitions: Vec<i32>,
    /// Every partition of the topic, measured from the broker.
    #[serde(default)]
    pub partitions: Vec<PartitionLag>,
    /// The group's lag over the whole topic (true when this instance holds nothing).
    pub total_lag: i64,
    #[serde(default)]
    pub lag_measured_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub lag_error: Option<String>,
    #[serde(default)]
    pub messages_handled: u64,
    #[serde(default)]
    pub notifications_sent: u64,
    #[serde(default)]
    pub duplicates_skipped: u64,
    #[serde(default)]
    pub dead_lettered: u64,
    #[serde(default)]
    pub retries: u64,
    #[serde(default)]
    pub commit_failures: u64,
    /// Why the consumer waits (its database is unreachable), if it does.
    #[serde(default)]
    pub waiting_for_database: Option<String>,
    /// Times the consumer's watchdog rebuilt a stuck Kafka consumer.
    #[serde(default)]
    pub rebuilds: u64,
}

/// Lag of one partition, as notification-service reports it (the shared kafka-lag type).
pub use kafka_lag::PartitionLag;

/// One upstream service of a balancer (`GET /admin/upstreams`, keyed by service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub strategy: Strategy,
    /// Gateway routes that send to it (the gateway only).
    #[serde(default)]
    pub routes: Vec<String>,
    pub instances: Vec<EndpointStatus>,
}

/// Reads admin endpoints with one admin token.
#[derive(Debug)]
pub struct Admin<'a> {
    obs: &'a Observer,
    token: String,
}

impl<'a> Admin<'a> {
    /// Gets an admin token from the stack's identity provider.
    pub async fn connect(obs: &'a Observer) -> Result<Self> {
        let set = auth::fetch_token(obs, &Grant::default_service()).await?;
        Ok(Self::with_token(obs, set.token.access_token))
    }

    /// Uses a token the caller already has.
    pub fn with_token(obs: &'a Observer, token: String) -> Self {
        Self { obs, token }
    }

    /// The bearer token in use.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET /admin/breakers` of every instance of `service`.
    pub async fn breakers(&self, service: &str) -> Vec<InstanceRead<Vec<Snapshot>>> {
        self.read_all(service, "/admin/breakers", "read circuit breakers")
            .await
    }

    /// `GET /admin/consumer` of every instance of `service`.
    pub async fn consumer(&self, service: &str) -> Vec<InstanceRead<ConsumerReport>> {
        self.read_all(service, "/admin/consumer", "read consumer lag")
            .await
    }

    /// `GET /admin/upstreams` of every instance of `service`.
    pub async fn upstreams(&self, service: &str) -> Vec<InstanceRead<BTreeMap<String, Upstream>>> {
        self.read_all(service, "/admin/upstreams", "read upstreams")
            .await
    }

    /// `GET path` on every running instance of `service`, concurrently.
    pub async fn read_all<T: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
        what: &str,
    ) -> Vec<InstanceRead<T>> {
        let reads = self
            .obs
            .instance_urls(service)
            .into_iter()
            .map(|(c, base)| {
                let label = instance_label(c);
                let container = c.name.clone();
                async move {
                    let result: Result<T> = async {
                        let url = base?.join(path).map_err(|e| {
                            super::ObserveError::Setting(format!("bad admin path {path}: {e}"))
                        })?;
                        self.obs.get_json(what, &url, Some(&self.token)).await
                    }
                    .await;
                    match result {
                        Ok(v) => InstanceRead {
                            instance: label,
                            container,
                            value: Some(v),
                            error: None,
                        },
                        Err(e) => InstanceRead {
                            instance: label,
                            container,
                            value: None,
                            error: Some(e.to_string()),
                        },
                    }
                }
            });
        futures::future::join_all(reads).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// notification-service's `/admin/consumer` JSON reads into the mirror, before and after
    /// the first commit.
    #[test]
    fn reads_consumer_report() {
        let json = r#"{"group":"notification-service","topic":"order-placed","deadLetterTopic":"order-placed.DLT",
            "joined":true,"assignedPartitions":[0,1],"partitions":[{"topic":"order-placed","partition":0,"committed":null,"lowWatermark":0,"highWatermark":3,"lag":3,"owner":"c1"},
            {"topic":"order-placed","partition":1,"committed":5,"lowWatermark":0,"highWatermark":5,"lag":0,"owner":null}],"rebuilds":1,
            "totalLag":3,"lagMeasuredAt":"2025-01-01T00:00:00Z","lagError":null,"messagesHandled":5,
            "notificationsSent":5,"duplicatesSkipped":0,"deadLettered":0,"deadLetteredUndecodable":0,
            "deadLetteredFailed":0,"retries":0,"commitFailures":0,"waitingForDatabase":null}"#;
        let r: ConsumerReport = serde_json::from_str(json).unwrap();
        assert_eq!(r.total_lag, 3);
        assert_eq!(r.partitions[0].committed, None);
        assert_eq!(r.partitions[1].committed, Some(5));
        assert!(r.joined);
        assert_eq!(r.assigned_partitions, [0, 1]);
        assert_eq!(r.rebuilds, 1);
    }

    /// The gateway's `/admin/upstreams` JSON reads with the kit's balancer types.
    #[test]
    fn reads_upstreams() {
        let json = r#"{"order-service":{"strategy":"power_of_two_choices","routes":["order-service"],
            "instances":[{"instanceId":"i1","url":"http://h:8082","inFlight":0,"requests":4,"failures":0,
            "ejected":false,"ejectedForMs":0,"ejections":0}]}}"#;
        let u: BTreeMap<String, Upstream> = serde_json::from_str(json).unwrap();
        assert_eq!(u["order-service"].instances[0].requests, 4);
        assert_eq!(u["order-service"].strategy, Strategy::PowerOfTwoChoices);
    }
}
