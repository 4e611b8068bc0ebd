//! Throwaway tansu brokers: the Kafka API on loopback, one per test.
//!
//! tansu 0.6.0 is a single-process Kafka-compatible broker. Each instance gets a free port and a temp
//! dir holding its SQLite storage (`tansu.db`), so topics, messages and committed offsets survive
//! `stop`/`kill` and `start_again`, which outage tests need. The storage URL is relative and the
//! broker runs in its directory, because tansu 0.6.0 turns an absolute `sqlite:///...` path into a
//! path below the current directory.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};

use crate::paths::{find_program, workspace_root};
use crate::process::Spec;
use crate::server::{Instance, Server, new_instance_dir};
use crate::{Error, Result};

/// A running (or stopped) throwaway tansu broker. Dropping it kills the broker and deletes its storage.
#[derive(Debug)]
pub struct Tansu {
    instance: Instance<TansuServer>,
}

/// How to run and probe tansu.
struct TansuServer {
    bin: std::path::PathBuf,
}

impl Server for TansuServer {
    const NAME: &'static str = "tansu";
    // Usually under 100 ms.
    const START_TIMEOUT: Duration = Duration::from_secs(30);
    // tansu waits about 5 s for connected clients on SIGTERM.
    const STOP_GRACE: Duration = Duration::from_secs(10);

    fn spec(&self, dir: &Path, port: u16) -> Spec {
        broker_spec(&self.bin, dir, port)
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

impl Tansu {
    /// Starts a broker on a free port with empty storage and waits until it answers a Kafka metadata
    /// request.
    ///
    /// The binary is `$TANSU_BIN`, else `<workspace>/.tools/bin/tansu` (where `install.sh` puts it),
    /// else `tansu` on `$PATH`.
    pub async fn start() -> Result<Self> {
        let bin = find_program(
            "tansu",
            "TANSU_BIN",
            &[workspace_root().join(".tools/bin/tansu")],
            "run ./install.sh, which installs tansu 0.6.0 into .tools/bin",
        )?;
        let dir = new_instance_dir("testkit-tansu-")?;
        let instance = Instance::start(TansuServer { bin }, dir).await?;
        Ok(Self { instance })
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
    /// tansu 0.6.0 waits about 5 s for connected clients before it exits on SIGTERM; use
    /// [`kill`](Self::kill) for an instant outage.
    pub async fn stop(&mut self) -> Result<()> {
        self.instance.stop().await
    }

    /// Kills the broker with SIGKILL (a crash).
    pub async fn kill(&mut self) -> Result<()> {
        self.instance.kill().await
    }

    /// Starts the broker again on the same port with the same storage. Does nothing if it runs.
    pub async fn start_again(&mut self) -> Result<()> {
        self.instance.start_again().await
    }
}

fn broker_spec(bin: &Path, dir: &Path, port: u16) -> Spec {
    let url = format!("tcp://127.0.0.1:{port}");
    let args: Vec<OsString> = vec![
        "broker".into(),
        "--listener-url".into(),
        url.clone().into(),
        "--advertised-listener-url".into(),
        url.into(),
        "--storage-engine".into(),
        // Relative to the broker's working directory, `dir` (see the module docs).
        "sqlite://tansu.db".into(),
    ];
    Spec {
        name: "tansu".into(),
        program: bin.to_path_buf(),
        args,
        env: Vec::new(),
        current_dir: Some(dir.to_path_buf()),
        log: dir.join("tansu.log"),
    }
}
