//! The Python clients (confluent-kafka and kafka-python, from `.tools/venv`) against kafka-broker:
//! each produces, consumes in a group, commits and reads its lag; kafka-lag (what `platform
//! status` and notification-service use) reads the same lag from the broker.

use kafka_lag::BrokerClient;
use testkit::python_clients::{PYTHON_CLIENTS, run_client};
use testkit::{Broker, BrokerKind};

async fn check(client: &str) {
    let broker = Broker::start_kind(BrokerKind::KafkaBroker).await.unwrap();
    let Some(result) = run_client(&broker, client).await else {
        return;
    };
    assert_eq!(result["consumed"], 6, "{result}");
    assert_eq!(result["committed"], 6, "{result}");
    assert_eq!(result["high"], 10, "{result}");
    assert_eq!(result["lag"], 4, "{result}");
    let lag = BrokerClient::new(&broker.bootstrap_servers(), Default::default())
        .unwrap()
        .group_lag(&format!("{client}-group"), &[])
        .await
        .unwrap();
    assert_eq!(lag.total_lag, 4, "{lag:?}");
    assert_eq!(lag.partitions[0].committed, Some(6), "{lag:?}");
}

#[tokio::test]
async fn confluent_kafka_produces_consumes_commits_and_reads_lag() {
    assert_eq!(PYTHON_CLIENTS[0], "confluent-kafka");
    check("confluent-kafka").await;
}

#[tokio::test]
async fn kafka_python_produces_consumes_commits_and_reads_lag() {
    assert_eq!(PYTHON_CLIENTS[1], "kafka-python");
    check("kafka-python").await;
}
