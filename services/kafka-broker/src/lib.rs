//! A single-node broker speaking the Kafka wire protocol: the offline stand-in for Apache Kafka
//! in the dev stack, like discovery-server, identity-provider and trace-collector are for Eureka,
//! Keycloak and Zipkin.
//!
//! - [`server`]: TCP, length-prefixed frames, request headers, one handler per API (codecs from
//!   the `kafka-protocol` crate); [`versions`]: the APIs and versions it implements.
//! - [`store`] and [`log`]: topics, partitions on append-only segment files with a sparse offset
//!   index, the idempotent producer's sequence state, committed offsets.
//! - [`group`]: the classic consumer-group coordinator.
//! - [`batch`]: record-batch headers (validated, never decoded further).

pub mod batch;
pub mod group;
pub mod log;
pub mod server;
pub mod store;
pub mod versions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use server::Broker;

/// Stops [`run`] when cancelled.
pub use tokio_util::sync::CancellationToken as Shutdown;

/// The broker's configuration (flags and environment, see `main.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "KAFKA_BROKER_LISTEN", default_value = "0.0.0.0:9092")]
    pub listen: SocketAddr,
    /// The `host:port` clients are told to connect to (Metadata, FindCoordinator); a
    /// `PLAINTEXT://` or `tcp://` prefix is accepted. Default: the listen address, with
    /// 127.0.0.1 for an unspecified IP and the bound port for port 0.
    #[arg(long, env = "KAFKA_BROKER_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Directory of topics, segment files and committed offsets.
    #[arg(long, env = "KAFKA_BROKER_DATA_DIR", default_value = "./kafka-data")]
    pub data_dir: PathBuf,
    /// This broker's node id.
    #[arg(long, env = "KAFKA_BROKER_NODE_ID", default_value_t = 1)]
    pub node_id: i32,
    /// The cluster id Metadata reports.
    #[arg(long, env = "KAFKA_BROKER_CLUSTER_ID", default_value = "kafka-broker")]
    pub cluster_id: String,
    /// Partitions of a topic created by Metadata (auto-create) or by CreateTopics with -1.
    #[arg(long, env = "KAFKA_BROKER_DEFAULT_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub default_partitions: i32,
    /// Whether Metadata creates topics that do not exist (when the client allows it).
    #[arg(long, env = "KAFKA_BROKER_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Largest request frame accepted; a larger one closes the connection (Kafka's
    /// socket.request.max.bytes).
    #[arg(long, env = "KAFKA_BROKER_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Size at which a partition's active segment file rolls.
    #[arg(long, env = "KAFKA_BROKER_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub segment_bytes: u64,
    /// When appends are fsynced: `always` (before the producer is answered), an interval such
    /// as `1s` or `200ms` (a background flush), or `never` (the kernel writes the page cache
    /// back: a killed broker loses nothing, a crashed machine may lose recent appends; Apache
    /// Kafka's default too).
    #[arg(long, env = "KAFKA_BROKER_FSYNC", default_value = "never")]
    pub fsync: log::FsyncPolicy,
    /// How long a new group waits for more members before its first generation (Kafka's
    /// group.initial.rebalance.delay.ms, which defaults to 3000).
    #[arg(
        long,
        env = "KAFKA_BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 0
    )]
    pub group_initial_rebalance_delay_ms: u64,
}

impl Config {
    /// A configuration for tests: loopback, port 0, data in `dir`.
    pub fn for_tests(dir: PathBuf) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("literal"),
            advertised_listener: None,
            data_dir: dir,
            node_id: 1,
            cluster_id: "kafka-broker".into(),
            default_partitions: 1,
            auto_create_topics: true,
            max_request_bytes: 100 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            fsync: log::FsyncPolicy::Never,
            group_initial_rebalance_delay_ms: 0,
        }
    }
}

/// Parses `host:port` (optionally `PLAINTEXT://host:port` or `tcp://host:port`).
pub fn parse_listener(s: &str) -> Result<(String, i32), String> {
    let rest = s
        .split_once("://")
        .map_or(s, |(_, rest)| rest)
        .trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}`: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{s}`: `{port}` is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(format!("`{s}`: expected a host and a non-zero port"));
    }
    Ok((host.to_string(), i32::from(port)))
}

/// Binds, opens the storage and serves until `shutdown`; returns the bound address through
/// `bound` as soon as it listens.
pub async fn run(
    config: Config,
    shutdown: Shutdown,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let advertised = match &config.advertised_listener {
        Some(l) => parse_listener(l).map_err(anyhow::Error::msg)?,
        None => {
            let ip = if local.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                local.ip().to_string()
            };
            (ip, i32::from(local.port()))
        }
    };
    let opts = log::LogOptions {
        segment_bytes: config.segment_bytes.max(1024),
        fsync: config.fsync,
        ..log::LogOptions::default()
    };
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&data_dir, opts))
        .await
        .context("opening the storage")?
        .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
    let broker = Arc::new(Broker::new(config.clone(), advertised.clone(), store));
    tracing::info!(
        listen = %local,
        advertised = %format!("{}:{}", advertised.0, advertised.1),
        data_dir = %config.data_dir.display(),
        fsync = ?config.fsync,
        "kafka-broker listening"
    );
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }
    let ticker = {
        let broker = broker.clone();
        // As often as the groups need (every 100 ms during a rebalance, else at the next
        // session expiry, at most a second): an idle broker wakes once a second, not ten times.
        tokio::spawn(async move {
            loop {
                let wait = broker.groups().tick();
                tokio::time::sleep(wait).await;
            }
        })
    };
    let flusher = match config.fsync {
        log::FsyncPolicy::Interval(period) => {
            let broker = broker.clone();
            Some(tokio::spawn(async move {
                let mut every = tokio::time::interval(period);
                loop {
                    every.tick().await;
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.store().flush_all()).await;
                }
            }))
        }
        _ => None,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    tokio::spawn(async move { broker.serve_connection(stream, peer).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    ticker.abort();
    if let Some(f) = flusher {
        f.abort();
    }
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.store().flush_all())
        .await
        .context("flushing on shutdown")?;
    tracing::info!("kafka-broker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse() {
        assert_eq!(
            parse_listener("kafka:9092").unwrap(),
            ("kafka".into(), 9092)
        );
        assert_eq!(
            parse_listener("PLAINTEXT://127.0.0.1:19092").unwrap(),
            ("127.0.0.1".into(), 19092)
        );
        assert_eq!(parse_listener("tcp://[::1]:1/").unwrap(), ("::1".into(), 1));
        assert!(parse_listener("kafka").is_err());
        assert!(parse_listener("kafka:0").is_err());
        assert!(parse_listener(":9092").is_err());
    }
}
