//! The Python clients (confluent-kafka and kafka-python, from `.tools/venv`) against kafka-broker:
//! each produces, consumes in a group, commits and reads its lag (committed offset and high
//! watermark, both from the broker) its own way. kafka-lag's suite reads the same lag with its
//! own client when run with `TESTKIT_BROKER=kafka-broker`.

use testkit::python_clients::{PYTHON_CLIENTS, assert_figures, run_client};
use testkit::{Broker, BrokerKind};

async fn check(client: &str) {
    assert!(PYTHON_CLIENTS.contains(&client));
    let broker = Broker::start_kind(BrokerKind::KafkaBroker).await.unwrap();
    if let Some(result) = run_client(&broker, client).await {
        assert_figures(&result);
    }
}

#[tokio::test]
async fn confluent_kafka_produces_consumes_commits_and_reads_lag() {
    check("confluent-kafka").await;
}

#[tokio::test]
async fn kafka_python_produces_consumes_commits_and_reads_lag() {
    check("kafka-python").await;
}
