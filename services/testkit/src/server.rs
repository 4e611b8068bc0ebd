//! What every throwaway server has in common: a free port (retried when another process takes it
//! first), a temp dir, start-and-wait-until-ready, stop, kill, start again on the same port and data,
//! and the log quoted on failure. [`MariaDb`](crate::MariaDb) and [`Broker`](crate::Broker) only say how
//! to run their program and how to tell it is ready.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::POLL;
use crate::process::{Spec, Supervised, log_tail};
use crate::{Error, Result, free_port};

/// Attempts with a new port when another process took the chosen one before the server bound it.
const PORT_ATTEMPTS: usize = 3;

/// File in each instance dir naming the test process that owns it.
const OWNER_FILE: &str = "testkit-owner";

/// Creates a fresh instance dir `<temp>/<prefix>XXXXXX` owned by this process, after removing dirs
/// with the same prefix whose owner process is gone.
///
/// A test killed by SIGKILL (nextest's timeout) runs no destructor, so its servers die (the
/// watchdog) but their data dirs, tens of MB each for MariaDB, would stay in the temp dir forever.
/// The next start cleans them up. Only dirs with an owner file naming a dead pid are removed, so a
/// dir being set up right now (no owner file yet) or owned by a live process is never touched.
pub(crate) fn new_instance_dir(prefix: &str) -> Result<TempDir> {
    sweep_dead_owners(&std::env::temp_dir(), prefix);
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(Error::io(format!("creating a temp dir {prefix}*")))?;
    let owner = dir.path().join(OWNER_FILE);
    std::fs::write(&owner, std::process::id().to_string())
        .map_err(Error::io(format!("writing {}", owner.display())))?;
    Ok(dir)
}

fn sweep_dead_owners(temp: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = entry.path();
        let Some(pid) = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %dir.display(), pid, "removing a dir left by a killed test");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// One kind of server.
pub(crate) trait Server: Send + Sync {
    /// Program name for messages.
    const NAME: &'static str;
    /// How long a start may take before it counts as failed.
    const START_TIMEOUT: Duration;
    /// How long a graceful stop may take before SIGKILL.
    const STOP_GRACE: Duration;

    /// The command line of an instance living in `dir` and listening on `port`.
    fn spec(&self, dir: &Path, port: u16) -> Spec;

    /// Succeeds once the server answers its protocol on `port`; the error says why not yet.
    fn probe(&self, port: u16) -> impl Future<Output = Result<(), String>> + Send;
}

/// A running (or stopped) instance of `S`.
pub(crate) struct Instance<S: Server> {
    /// Declared before `dir`: the server must be gone before its directory is removed.
    process: Option<Supervised>,
    dir: TempDir,
    port: u16,
    spec: Spec,
    server: S,
}

impl<S: Server> Instance<S> {
    /// Starts `server` in `dir` on a free port, retrying with another port when the chosen one was
    /// taken in the meantime (parallel tests all ask the kernel for free ports).
    pub(crate) async fn start(server: S, dir: TempDir) -> Result<Self> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let spec = server.spec(dir.path(), port);
            let log_offset = std::fs::metadata(&spec.log).map_or(0, |m| m.len());
            match launch(&server, &spec, port).await {
                Ok(process) => {
                    tracing::info!(server = S::NAME, port, elapsed = ?started.elapsed(), "started");
                    return Ok(Self {
                        process: Some(process),
                        dir,
                        port,
                        spec,
                        server,
                    });
                }
                Err(e) if attempt < PORT_ATTEMPTS && port_taken(&spec.log, log_offset) => {
                    tracing::warn!(server = S::NAME, port, error = %e, "port taken, trying another");
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.spec.log
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Supervised::pid)
    }

    /// Fails with `NotRunning` after `stop`/`kill` and before `start_again`.
    pub(crate) fn ensure_running(&self) -> Result<()> {
        match self.process {
            Some(_) => Ok(()),
            None => Err(Error::NotRunning(S::NAME)),
        }
    }

    pub(crate) async fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop(S::STOP_GRACE).await?;
        }
        Ok(())
    }

    pub(crate) async fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill().await?;
        }
        Ok(())
    }

    /// Sends `sig` (`STOP`, `CONT`, ...) to the running server.
    pub(crate) async fn signal(&mut self, sig: &str) -> Result<()> {
        match self.process.as_mut() {
            Some(process) => process.signal(sig).await,
            None => Err(Error::NotRunning(S::NAME)),
        }
    }

    pub(crate) async fn start_again(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        self.process = Some(launch(&self.server, &self.spec, self.port).await?);
        tracing::info!(server = S::NAME, port = self.port, elapsed = ?started.elapsed(), "started again");
        Ok(())
    }
}

impl<S: Server> std::fmt::Debug for Instance<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(S::NAME)
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl<S: Server> Drop for Instance<S> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testkit: {} on port {} (log {}), last lines:\n{}",
                S::NAME,
                self.port,
                self.spec.log.display(),
                log_tail(&self.spec.log, 20)
            );
        }
    }
}

/// Spawns the server and probes it until it is ready, it exits, or `S::START_TIMEOUT` passes.
async fn launch<S: Server>(server: &S, spec: &Spec, port: u16) -> Result<Supervised> {
    let mut process = Supervised::spawn(spec).await?;
    let deadline = Instant::now() + S::START_TIMEOUT;
    loop {
        let reason = match server.probe(port).await {
            Ok(()) => return Ok(process),
            Err(reason) => reason,
        };
        let exited = process.exit_status();
        if exited.is_some() || Instant::now() >= deadline {
            let reason = match exited {
                Some(status) => format!("{} exited with {status}", S::NAME),
                None => format!(
                    "not ready after {:?}; last error: {reason}",
                    S::START_TIMEOUT
                ),
            };
            return Err(Error::Start {
                name: S::NAME.into(),
                reason,
                log: spec.log.clone(),
                tail: log_tail(&spec.log, 30),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the attempt whose output starts at `offset` in the log failed on a taken port.
fn port_taken(log: &Path, offset: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    // mariadbd: "Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use";
    // nisshi and tansu (Rust std): "Address already in use (os error 98)" / "AddrInUse".
    text.contains("Address already in use") || text.contains("AddrInUse")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dirs of dead owners are swept; live owners' dirs and dirs without an owner file stay.
    #[test]
    fn sweep_removes_only_dirs_of_dead_owners() {
        let temp = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = temp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("data"), "x").unwrap();
            if let Some(owner) = owner {
                std::fs::write(dir.join(OWNER_FILE), owner).unwrap();
            }
            dir
        };
        // pid_max is at most 2^22, so this pid cannot exist.
        let dead = make("testkit-x-dead", Some("4194305".into()));
        let live = make("testkit-x-live", Some(std::process::id().to_string()));
        let unowned = make("testkit-x-new", None);
        let other = make("other-dead", Some("4194305".into()));
        sweep_dead_owners(temp.path(), "testkit-x-");
        assert!(!dead.exists());
        assert!(live.exists() && unowned.exists() && other.exists());
    }

    /// Only the latest attempt's output counts when deciding whether the port was taken.
    #[test]
    fn port_taken_reads_only_the_latest_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "Address already in use\n").unwrap();
        let offset = std::fs::metadata(&log).unwrap().len();
        assert!(port_taken(&log, 0));
        assert!(!port_taken(&log, offset));
        std::fs::write(&log, "Address already in use\nother failure\n").unwrap();
        assert!(!port_taken(&log, offset));
    }
}
