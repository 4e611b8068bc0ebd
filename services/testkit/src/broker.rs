//! Throwaway Kafka-API brokers on loopback, one per test: the workspace's own `kafka-broker` (the
//! default, the dev stack's broker), nisshi 0.6.0 or tansu 0.6.0 (kept for comparisons and for
//! the tests that pin their defects).
//!
//! nisshi and tansu are single-process brokers with the same command line (nisshi is tansu renamed
//! and fixed). Each instance gets a free port and a temp dir holding its storage (`<kind>.db` for
//! nisshi/tansu, `data/` for kafka-broker), so topics, messages, committed offsets and consumer
//! groups survive `stop`/`kill` and `start_again`, which outage tests need. The SQLite URL is
//! relative and the broker runs in its directory, because nisshi and tansu turn an absolute
//! `sqlite:///...` path into a path below the current directory.
//!
//! Which broker: [`BrokerKind::from_env`] reads `TESTKIT_BROKER` (`nisshi`, `tansu` or
//! `kafka-broker`, default `kafka-broker`), so the whole suite can be run against another broker for
//! comparison; a test that is about one broker calls [`Broker::start_kind`]. Binaries:
//! `$NISSHI_BIN` / `$TANSU_BIN`, else `<workspace>/.tools/bin/<kind>` (where `install.sh` puts
//! them), else `$PATH`; kafka-broker: `$KAFKA_BROKER_BIN`, else the build in the cargo target
//! directory ([`crate::paths::bin_path`]: `cargo build -p kafka-broker` first).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};

use crate::paths::{bin_path, find_program, workspace_root};
use crate::process::Spec;
use crate::server::{Instance, Server, new_instance_dir};
use crate::{Error, Result};

/// The environment variable that picks the broker of [`Broker::start`].
pub const BROKER_ENV: &str = "TESTKIT_BROKER";

/// Which Kafka-API broker program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BrokerKind {
    /// nisshi 0.6.0: the platform's broker.
    Nisshi,
    /// tansu 0.6.0: the broker nisshi replaced, kept for old-versus-new comparisons.
    Tansu,
    /// The workspace's own single-node broker (services/kafka-broker).
    KafkaBroker,
}

impl BrokerKind {
    /// Every kind, the default first.
    pub const ALL: [BrokerKind; 3] = [
        BrokerKind::Nisshi,
        BrokerKind::Tansu,
        BrokerKind::KafkaBroker,
    ];

    /// The program name, also the value of `TESTKIT_BROKER`.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Nisshi => "nisshi",
            BrokerKind::Tansu => "tansu",
            BrokerKind::KafkaBroker => "kafka-broker",
        }
    }

    /// The version `--version` must report (`nisshi 0.6.0`).
    pub fn version_line(self) -> &'static str {
        match self {
            BrokerKind::Nisshi => "nisshi 0.6.0",
            BrokerKind::Tansu => "tansu 0.6.0",
            BrokerKind::KafkaBroker => concat!("kafka-broker ", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Parses `nisshi`, `tansu` or `kafka-broker`.
    pub fn parse(name: &str) -> Result<BrokerKind> {
        BrokerKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| Error::InvalidName {
                name: name.to_string(),
                reason: "brokers are `nisshi`, `tansu` and `kafka-broker`",
            })
    }

    /// `$TESTKIT_BROKER`, or kafka-broker (the dev stack's broker) when it is unset or empty.
    pub fn from_env() -> Result<BrokerKind> {
        match std::env::var(BROKER_ENV) {
            Ok(v) if !v.trim().is_empty() => BrokerKind::parse(&v),
            _ => Ok(BrokerKind::KafkaBroker),
        }
    }

    /// The variable naming this broker's binary (`NISSHI_BIN`).
    fn bin_env(self) -> &'static str {
        match self {
            BrokerKind::Nisshi => "NISSHI_BIN",
            BrokerKind::Tansu => "TANSU_BIN",
            BrokerKind::KafkaBroker => "KAFKA_BROKER_BIN",
        }
    }

    /// The broker's binary: `$<KIND>_BIN`, `<workspace>/.tools/bin/<kind>`, `$PATH`; for
    /// kafka-broker `$KAFKA_BROKER_BIN` or the workspace build.
    pub fn binary(self) -> Result<std::path::PathBuf> {
        if self == BrokerKind::KafkaBroker {
            return match std::env::var_os(self.bin_env()).filter(|v| !v.is_empty()) {
                Some(path) => Ok(path.into()),
                None => bin_path(self.name()),
            };
        }
        find_program(
            self.name(),
            self.bin_env(),
            &[workspace_root().join(".tools/bin").join(self.name())],
            &format!(
                "run ./install.sh, which installs {} into .tools/bin",
                self.version_line()
            ),
        )
    }
}

impl std::fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A running (or stopped) throwaway broker. Dropping it kills the broker and deletes its storage.
#[derive(Debug)]
pub struct Broker {
    kind: BrokerKind,
    instance: Instance<BrokerServer>,
}

/// How to run and probe a broker.
struct BrokerServer {
    kind: BrokerKind,
    bin: std::path::PathBuf,
}

impl Server for BrokerServer {
    const NAME: &'static str = "broker";
    // Usually under 100 ms.
    const START_TIMEOUT: Duration = Duration::from_secs(30);
    // tansu and nisshi wait about 5 s for connected clients on SIGTERM.
    const STOP_GRACE: Duration = Duration::from_secs(10);

    fn spec(&self, dir: &Path, port: u16) -> Spec {
        broker_spec(self.kind, &self.bin, dir, port)
    }

    /// Ready means a Kafka metadata request is answered and lists this broker.
    async fn probe(&self, port: u16) -> Result<(), String> {
        let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            // Quiet: refused connections while the broker starts are expected.
            .set("log_level", "0")
            .create()
            .map_err(|e| e.to_string())?;
        // librdkafka's metadata call blocks its thread.
        let answer = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Duration::from_millis(500))
                .map(|metadata| metadata.brokers().len())
        })
        .await
        .map_err(|e| e.to_string())?;
        match answer {
            Ok(brokers) if brokers > 0 => Ok(()),
            Ok(_) => Err("metadata listed no broker".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Broker {
    /// Starts the broker `TESTKIT_BROKER` names (nisshi by default), see [`Broker::start_kind`].
    pub async fn start() -> Result<Self> {
        Broker::start_kind(BrokerKind::from_env()?).await
    }

    /// Starts a `kind` broker on a free port with empty storage and waits until it answers a Kafka
    /// metadata request.
    pub async fn start_kind(kind: BrokerKind) -> Result<Self> {
        Broker::start_binary(kind, kind.binary()?).await
    }

    /// [`Broker::start_kind`] with the program `bin` (a build of `kind` chosen by the caller).
    pub async fn start_binary(kind: BrokerKind, bin: std::path::PathBuf) -> Result<Self> {
        let dir = new_instance_dir(&format!("testkit-{}-", kind.name()))?;
        let instance = Instance::start(BrokerServer { kind, bin }, dir).await?;
        Ok(Self { kind, instance })
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// `127.0.0.1:<port>`, the value for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The TCP port on 127.0.0.1 (the same after `start_again`).
    pub fn port(&self) -> u16 {
        self.instance.port()
    }

    /// The broker's directory (storage and log).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The broker's log file (across restarts).
    pub fn log_path(&self) -> &Path {
        self.instance.log_path()
    }

    /// The broker's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    /// Creates `name` with `partitions` partitions (replication factor 1: there is one broker).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.instance.ensure_running()?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .create()
            .map_err(|source| Error::Kafka {
                context: "creating an admin client".into(),
                source,
            })?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .map_err(|source| Error::Kafka {
                context: format!("creating topic {name}"),
                source,
            })?;
        for result in results {
            if let Err((topic, code)) = result {
                return Err(Error::Kafka {
                    context: format!("creating topic {topic}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
        Ok(())
    }

    /// Stops the broker gracefully (SIGTERM). Storage and port are kept for
    /// [`start_again`](Self::start_again). For outage tests.
    ///
    /// Both brokers wait about 5 s for connected clients before they exit on SIGTERM; use
    /// [`kill`](Self::kill) for an instant outage.
    pub async fn stop(&mut self) -> Result<()> {
        self.instance.stop().await
    }

    /// Kills the broker with SIGKILL (a crash).
    pub async fn kill(&mut self) -> Result<()> {
        self.instance.kill().await
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is answered, like a broker
    /// stalled by its host. Returns once the kernel reports the process stopped.
    /// [`resume`](Self::resume) thaws it.
    pub async fn pause(&mut self) -> Result<()> {
        self.instance.signal("STOP").await?;
        let pid = self.pid().ok_or(Error::NotRunning("broker"))?;
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let state = s.get(s.rfind(')')? + 2..)?.chars().next()?;
                    Some(matches!(state, 'T' | 't'))
                })
                .unwrap_or(false)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !stopped() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the broker (pid {pid}) to stop after SIGSTOP"),
                    after: Duration::from_secs(5),
                    last: "not in state T".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Thaws a [`pause`](Self::pause)d broker (SIGCONT).
    pub async fn resume(&mut self) -> Result<()> {
        self.instance.signal("CONT").await
    }

    /// Starts the broker again on the same port with the same storage. Does nothing if it runs.
    pub async fn start_again(&mut self) -> Result<()> {
        self.instance.start_again().await
    }
}

fn broker_spec(kind: BrokerKind, bin: &Path, dir: &Path, port: u16) -> Spec {
    if kind == BrokerKind::KafkaBroker {
        let address = format!("127.0.0.1:{port}");
        return Spec {
            name: kind.name().into(),
            program: bin.to_path_buf(),
            args: vec![
                "--listen".into(),
                address.clone().into(),
                "--advertised-listener".into(),
                address.into(),
                "--data-dir".into(),
                dir.join("data").into(),
            ],
            env: vec![("RUST_LOG".into(), "info,kafka_broker=debug".into())],
            current_dir: Some(dir.to_path_buf()),
            log: dir.join(format!("{}.log", kind.name())),
        };
    }
    let url = format!("tcp://127.0.0.1:{port}");
    let args: Vec<OsString> = vec![
        "broker".into(),
        "--listener-url".into(),
        url.clone().into(),
        "--advertised-listener-url".into(),
        url.into(),
        "--storage-engine".into(),
        // Relative to the broker's working directory, `dir` (see the module docs).
        format!("sqlite://{}.db", kind.name()).into(),
    ];
    Spec {
        name: kind.name().into(),
        program: bin.to_path_buf(),
        args,
        env: Vec::new(),
        current_dir: Some(dir.to_path_buf()),
        log: dir.join(format!("{}.log", kind.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broker names parse to their kinds; anything else is refused with the list of names.
    #[test]
    fn kinds_parse() {
        assert_eq!(BrokerKind::parse("nisshi").unwrap(), BrokerKind::Nisshi);
        assert_eq!(BrokerKind::parse(" tansu ").unwrap(), BrokerKind::Tansu);
        assert_eq!(
            BrokerKind::parse("kafka-broker").unwrap(),
            BrokerKind::KafkaBroker
        );
        let err = BrokerKind::parse("kafka").unwrap_err().to_string();
        assert!(err.contains("nisshi"), "{err}");
        assert_eq!(BrokerKind::Nisshi.version_line(), "nisshi 0.6.0");
    }
}
