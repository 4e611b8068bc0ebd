//! Third-party Kafka clients from PyPI against the broker testkit starts (nisshi by default):
//! confluent-kafka (librdkafka's Python binding) and kafka-python (pure Python), from the venv
//! `.tools/venv` that install.sh creates. Each produces, consumes in a consumer group, commits,
//! and reads its lag (committed offset against the high watermark) its own way; kafka-lag then
//! reads the same lag from the broker.

use kafka_lag::BrokerClient;
use testkit::Broker;
use testkit::python_clients::{assert_figures, run_client};

/// Checks a client's own figures and that kafka-lag reads the same lag from the broker.
async fn check(broker: &Broker, client: &str) {
    let Some(result) = run_client(broker, client).await else {
        return;
    };
    assert_figures(&result);
    let lag = BrokerClient::new(&broker.bootstrap_servers(), Default::default())
        .unwrap()
        .group_lag(&format!("{client}-group"), &[])
        .await
        .unwrap();
    assert_eq!(lag.total_lag, 4, "{lag:?}");
    assert_eq!(lag.partitions[0].committed, Some(6), "{lag:?}");
    println!("{client} against {}: {result}", broker.kind());
}

/// confluent-kafka (librdkafka 2.x) produces with idempotence and headers, consumes in a group,
/// commits synchronously and reads its lag; kafka-lag agrees.
#[tokio::test]
async fn confluent_kafka_produces_consumes_commits_and_reads_lag() {
    let broker = Broker::start().await.unwrap();
    check(&broker, "confluent-kafka").await;
}

/// kafka-python (a pure-Python client) produces, consumes in a group, commits, and reads the
/// group's offsets with its admin client; kafka-lag agrees.
#[tokio::test]
async fn kafka_python_produces_consumes_commits_and_reads_lag() {
    let broker = Broker::start().await.unwrap();
    check(&broker, "kafka-python").await;
}
