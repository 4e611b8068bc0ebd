//! Throwaway tansu brokers: the Kafka API on loopback, one per test.
//!
//! tansu 0.6.0 is a single-process Kafka-compatible broker. Each instance gets a free port and a temp
//! dir holding its SQLite storage (`tansu.db`), so topics, messages and committed offsets survive
//! `stop`/`kill` and `start_again`, which outage tests need. The storage URL is relative and the
//! broker runs in its directory, because tansu 0.6.0 turns an absolute `sqlite:///...` path into a
//! path below the current directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use tempfile::TempDir;

use crate::net::POLL;
use crate::paths::{find_program, workspace_root};
use crate::process::{Spec, Supervised, log_tail};
use crate::{Error, Result, free_port};

/// How long a start may take before it counts as failed (usually under 100 ms).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts with a new port when another process took the chosen one first.
const PORT_ATTEMPTS: usize = 3;

/// A running (or stopped) throwaway tansu broker. Dropping it kills the broker and deletes its storage.
pub struct Tansu {
    /// Declared before `dir`: the broker must be gone before its storage is removed.
    process: Option<Supervised>,
    /// Holds `tansu.db` and `tansu.log`.
    dir: TempDir,
    port: u16,
    spec: Spec,
}

impl Tansu {
    /// Starts a broker on a free port with empty storage and waits until it answers a Kafka metadata
    /// request.
    ///
    /// The binary is `$TANSU_BIN`, else `<workspace>/.tools/bin/tansu` (where `install.sh` puts it),
    /// else `tansu` on `$PATH`.
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        let bin = find_program(
            "tansu",
            "TANSU_BIN",
            &[workspace_root().join(".tools/bin/tansu")],
            "run ./install.sh, which installs tansu 0.6.0 into .tools/bin",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-tansu-")
            .tempdir()
            .map_err(Error::io("creating a temp dir for tansu"))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let spec = broker_spec(&bin, dir.path(), port);
            let log_offset = std::fs::metadata(&spec.log).map(|m| m.len()).unwrap_or(0);
            match launch(&spec, port).await {
                Ok(process) => {
                    tracing::info!(port, elapsed = ?started.elapsed(), "tansu started");
                    return Ok(Self {
                        process: Some(process),
                        dir,
                        port,
                        spec,
                    });
                }
                Err(e) if attempt < PORT_ATTEMPTS && port_taken(&spec.log, log_offset) => {
                    tracing::warn!(port, error = %e, "port taken before tansu could bind it, trying another");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `127.0.0.1:<port>`, the value for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's directory (storage and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log file (across restarts).
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// The broker's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Supervised::pid)
    }

    /// Creates `name` with `partitions` partitions (replication factor 1: there is one broker).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        if self.process.is_none() {
            return Err(Error::NotRunning("tansu"));
        }
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
        if let Some(mut process) = self.process.take() {
            process.stop(STOP_GRACE).await?;
        }
        Ok(())
    }

    /// Kills the broker with SIGKILL (a crash).
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill().await?;
        }
        Ok(())
    }

    /// Starts the broker again on the same port with the same storage. Does nothing if it runs.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        self.process = Some(launch(&self.spec, self.port).await?);
        tracing::info!(port = self.port, elapsed = ?started.elapsed(), "tansu started again");
        Ok(())
    }
}

impl std::fmt::Debug for Tansu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tansu")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testkit: tansu on port {} (log {}), last lines:\n{}",
                self.port,
                self.spec.log.display(),
                log_tail(&self.spec.log, 20)
            );
        }
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

/// Whether the attempt that started at `offset` in the log failed because the port was taken.
fn port_taken(log: &PathBuf, offset: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_string(&mut text);
    }
    text.contains("Address already in use") || text.contains("AddrInUse")
}

/// Spawns tansu and waits until it answers a metadata request that lists itself as a broker.
async fn launch(spec: &Spec, port: u16) -> Result<Supervised> {
    let mut process = Supervised::spawn(spec).await?;
    let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        // Quiet: refused connections while the broker starts are expected.
        .set("log_level", "0")
        .create()
        .map_err(|source| Error::Kafka {
            context: "creating a client to probe tansu".into(),
            source,
        })?;
    let consumer = std::sync::Arc::new(consumer);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let probe = consumer.clone();
        let answer = tokio::task::spawn_blocking(move || {
            probe
                .fetch_metadata(None, Duration::from_millis(500))
                .map(|metadata| metadata.brokers().len())
        })
        .await;
        let reason = match answer {
            Ok(Ok(brokers)) if brokers > 0 => return Ok(process),
            Ok(Ok(_)) => "metadata listed no broker".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let exited = process.exit_status();
        if exited.is_some() || Instant::now() >= deadline {
            let reason = match exited {
                Some(status) => format!("tansu exited with {status}"),
                None => format!("no metadata answer after {START_TIMEOUT:?}; last error: {reason}"),
            };
            return Err(Error::Start {
                name: "tansu".into(),
                reason,
                log: spec.log.clone(),
                tail: log_tail(&spec.log, 30),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
