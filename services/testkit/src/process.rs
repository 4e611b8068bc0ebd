//! Child processes that cannot outlive the test that started them.
//!
//! A test process can die without running destructors: nextest kills it at its timeout, a developer
//! presses Ctrl-C, a test aborts. Servers it started must die with it, or they keep ports, memory and
//! temp dirs forever. Without unsafe code (no `prctl(PR_SET_PDEATHSIG)`), the reliable signal that the
//! parent is gone is a pipe: the kernel closes the parent's write end when the parent dies, however
//! it dies. So every child runs under a tiny `sh` watchdog:
//!
//! ```text
//! test process ──pipe──▶ sh watchdog ──▶ program (its own stdin is /dev/null)
//!                         │  reads signal names ("TERM", "KILL", "STOP"...) from the pipe and sends
//!                         │  them to the program; at end-of-file (parent gone) sends KILL
//!                         └─ waits for the program and exits with its status
//! ```
//!
//! The watchdog is the program's parent, so the program's pid cannot be reused while the watchdog
//! may still signal it. The program's output goes to a log file, never to the test's own stdout
//! (nextest would otherwise wait for the pipe and report the test as leaky).

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{PipeWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStdout;

use crate::{Error, Result};

/// The watchdog script, run as `sh -c WATCHDOG testkit-watchdog LOG PROGRAM ARGS...`.
///
/// fd 3 keeps the control pipe for the reader subshell: a background job's stdin is /dev/null by
/// POSIX rules, so it must read from a saved descriptor. The program gets neither the pipe nor a
/// terminal. On stdout the parent reads first the program's pid, then one line per signal request:
/// the exit status of `kill`, so `signal` returns only once the signal is delivered. The reader
/// ignores SIGPIPE so that a vanished parent can never stop it before it reaches the final KILL.
const WATCHDOG: &str = r#"
log=$1
shift
exec 3<&0
"$@" </dev/null 3<&- >>"$log" 2>&1 &
pid=$!
echo "$pid"
(
  trap '' PIPE
  while read -r sig <&3; do
    kill -s "$sig" "$pid" 2>/dev/null
    echo "$?" 2>/dev/null
  done
  kill -s KILL "$pid" 2>/dev/null
) </dev/null &
reader=$!
exec 3<&- >>"$log"
wait "$pid"
status=$?
kill "$reader" 2>/dev/null
exit "$status"
"#;

/// How long a signal request may wait for the watchdog's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `Drop` waits for a killed process to be gone before giving up (it then relies on
/// `kill_on_drop` and the watchdog).
const DROP_WAIT: Duration = Duration::from_secs(10);

/// What to run: kept so the same command can be started again after a stop or kill.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// Short name for messages (`mariadbd`, `nisshi`, the binary's file name).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub current_dir: Option<PathBuf>,
    /// Log file for stdout and stderr; appended to across restarts.
    pub log: PathBuf,
}

/// One running (or exited) program under its watchdog.
pub(crate) struct Supervised {
    /// The watchdog `sh`; `kill_on_drop` is the last resort if `Drop` cannot stop it in time.
    child: tokio::process::Child,
    /// Write end of the control pipe. Closing it (dropping this) makes the watchdog kill the program.
    control: Option<PipeWriter>,
    /// The watchdog's stdout: the pid line, then one acknowledgement per signal request.
    acks: BufReader<ChildStdout>,
    /// The program's own pid (not the watchdog's), e.g. for reading `/proc/<pid>`.
    pid: u32,
    /// Exit status once observed, so it can be reported more than once.
    status: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `spec.program` under a watchdog and returns once its pid is known.
    pub(crate) async fn spawn(spec: &Spec) -> Result<Self> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(Error::io(format!("opening log {}", spec.log.display())))?;
        // A marker line makes restarts visible when reading the log after a failure.
        let command_line = std::iter::once(spec.program.as_os_str())
            .chain(spec.args.iter().map(OsString::as_os_str))
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(log, "=== testkit: starting {command_line}")
            .map_err(Error::io(format!("writing log {}", spec.log.display())))?;

        let (reader, writer) =
            std::io::pipe().map_err(Error::io("creating the watchdog control pipe"))?;
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("testkit-watchdog")
            .arg(&spec.log)
            .arg(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(reader))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Some(dir) = &spec.current_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .map_err(Error::io(format!("starting {} under /bin/sh", spec.name)))?;
        // The command still holds our copy of the pipe's read end; only the watchdog should.
        drop(command);

        let stdout = child.stdout.take().ok_or_else(|| Error::Io {
            context: "reading the watchdog's stdout".into(),
            source: std::io::Error::other("stdout was not captured"),
        })?;
        let mut acks = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), acks.read_line(&mut line)).await;
        let pid = match read {
            Ok(Ok(_)) => line.trim().parse::<u32>().ok(),
            _ => None,
        };
        let Some(pid) = pid else {
            return Err(Error::Start {
                name: spec.name.clone(),
                reason: format!("the watchdog did not report a pid (got {line:?})"),
                log: spec.log.clone(),
                tail: log_tail(&spec.log, 20),
            });
        };
        Ok(Self {
            child,
            control: Some(writer),
            acks,
            pid,
            status: None,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the program has exited (never blocks).
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Has the watchdog send signal `sig` (a name such as `TERM`, `KILL`, `STOP`, `CONT`) and returns
    /// once it is delivered.
    pub(crate) async fn signal(&mut self, sig: &str) -> Result<()> {
        self.request_signal(sig)?;
        let mut line = String::new();
        let context = || format!("sending {sig} to pid {}", self.pid);
        match tokio::time::timeout(ACK_TIMEOUT, self.acks.read_line(&mut line)).await {
            Ok(Ok(0)) => Err(Error::NotRunning("process")),
            Ok(Ok(_)) if line.trim() == "0" => Ok(()),
            Ok(Ok(_)) => Err(Error::Io {
                context: context(),
                source: std::io::Error::other(format!("kill exited with {}", line.trim())),
            }),
            Ok(Err(e)) => Err(Error::io(context())(e)),
            Err(_) => Err(Error::Timeout {
                what: context(),
                after: ACK_TIMEOUT,
                last: "no acknowledgement from the watchdog".into(),
            }),
        }
    }

    /// Writes a signal request without waiting for its acknowledgement (for `Drop`, which cannot
    /// await).
    fn request_signal(&mut self, sig: &str) -> Result<()> {
        if sig.is_empty()
            || !sig
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(Error::InvalidName {
                name: sig.to_string(),
                reason: "signal names are upper-case letters and digits, e.g. TERM or KILL",
            });
        }
        let control = self.control.as_mut().ok_or(Error::NotRunning("process"))?;
        control
            .write_all(format!("{sig}\n").as_bytes())
            .map_err(Error::io(format!("sending {sig} to pid {}", self.pid)))
    }

    /// Waits up to `timeout` for the program to exit.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Some(status);
        }
        if let Ok(Ok(status)) = tokio::time::timeout(timeout, self.child.wait()).await {
            self.status = Some(status);
        }
        self.status
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        // An error here means the watchdog already finished: the program is gone or going.
        let _ = self.signal("TERM").await;
        if let Some(status) = self.wait(grace).await {
            return Ok(status);
        }
        tracing::warn!(
            pid = self.pid,
            ?grace,
            "did not exit on SIGTERM, sending SIGKILL"
        );
        self.kill().await
    }

    /// SIGKILL, and wait until it is gone.
    pub(crate) async fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        let _ = self.signal("KILL").await;
        self.wait(DROP_WAIT).await.ok_or_else(|| Error::Timeout {
            what: format!("pid {} to exit after SIGKILL", self.pid),
            after: DROP_WAIT,
            last: "still running".into(),
        })
    }
}

impl Drop for Supervised {
    /// Kills the program and waits (briefly, blocking) until it is gone, so the caller can delete its
    /// directory right afterwards. A throwaway server needs no graceful shutdown.
    fn drop(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        let _ = self.request_signal("KILL");
        // Closing the pipe is the watchdog's other kill trigger, should the line not get through.
        self.control = None;
        let deadline = Instant::now() + DROP_WAIT;
        while self.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The last `lines` lines of a log file ("" when it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    /// Enough for any sensible number of lines without reading a huge log whole.
    const MAX_BYTES: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_BYTES {
        let _ = file.seek(SeekFrom::Start(len - MAX_BYTES));
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A service binary started by a test, killed when the guard is dropped.
///
/// Its stdout and stderr go to a log file (see [`ChildGuard::log_path`]); when the test panics, the
/// guard keeps that file, prints its path and its last lines, so the failure can be understood.
pub struct ChildGuard {
    /// Declared first so it is dropped (process killed) before the log directory is removed.
    process: Supervised,
    spec: Spec,
    /// The temp dir holding the log when `spawn_process` created one; `None` when the caller gave a dir.
    log_dir: Option<TempDir>,
}

/// Starts `bin` with `args` and extra environment `env` (added to this process's environment),
/// logging its output to a file in a fresh temp dir.
///
/// ```no_run
/// # async fn demo() -> Result<(), testkit::Error> {
/// let bin = testkit::bin_path("discovery-server")?;
/// let port = testkit::free_port()?.to_string();
/// let mut registry = testkit::spawn_process(bin, ["--port", &port], [("RUST_LOG", "info")]).await?;
/// testkit::wait_for_http(&format!("http://127.0.0.1:{port}/health/ready"), std::time::Duration::from_secs(10)).await?;
/// registry.kill().await?; // like kill -9
/// # Ok(()) }
/// ```
pub async fn spawn_process(
    bin: impl AsRef<Path>,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    env: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
) -> Result<ChildGuard> {
    let name = program_name(bin.as_ref());
    let dir = tempfile::Builder::new()
        .prefix(&format!("testkit-{name}-"))
        .tempdir()
        .map_err(Error::io("creating a temp dir for a process log"))?;
    let log = dir.path().join(format!("{name}.log"));
    start_guard(bin.as_ref(), args, env, log, Some(dir)).await
}

/// Like [`spawn_process`], but logs into `dir` (which the caller owns and removes), as
/// `<binary>.log`, or `<binary>-2.log` and so on when several instances share the dir.
pub async fn spawn_process_in(
    dir: impl AsRef<Path>,
    bin: impl AsRef<Path>,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    env: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
) -> Result<ChildGuard> {
    let name = program_name(bin.as_ref());
    let dir = dir.as_ref();
    let log = (1..)
        .map(|n| match n {
            1 => dir.join(format!("{name}.log")),
            n => dir.join(format!("{name}-{n}.log")),
        })
        .find_map(|path| {
            // create_new claims the name atomically, so parallel spawns never share a log.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => Some(Ok(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                Err(e) => Some(Err(
                    Error::io(format!("creating log in {}", dir.display()))(e),
                )),
            }
        })
        .unwrap_or_else(|| unreachable!("the range 1.. is endless"))?;
    start_guard(bin.as_ref(), args, env, log, None).await
}

fn program_name(bin: &Path) -> String {
    bin.file_name()
        .map(crate::paths::sanitize)
        .unwrap_or_else(|| "process".into())
}

async fn start_guard(
    bin: &Path,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    env: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
    log: PathBuf,
    log_dir: Option<TempDir>,
) -> Result<ChildGuard> {
    if !bin.is_file() {
        return Err(Error::NotFound {
            what: format!("program {}", bin.display()),
            hint: "build it first or pass the right path (see testkit::bin_path)".into(),
        });
    }
    let spec = Spec {
        name: program_name(bin),
        program: bin.to_path_buf(),
        args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
        env: env
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect(),
        current_dir: None,
        log,
    };
    let process = Supervised::spawn(&spec).await?;
    Ok(ChildGuard {
        process,
        spec,
        log_dir,
    })
}

impl ChildGuard {
    /// The program's pid (not its watchdog's).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The file that receives the program's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// The last `lines` lines of the program's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.spec.log, lines)
    }

    /// Whether the program is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.exit_status().is_none()
    }

    /// Its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`, `HUP`...) and returns once it is
    /// delivered. `STOP`/`CONT` freeze and resume it: a hung service, for timeout and breaker tests.
    pub async fn signal(&mut self, sig: &str) -> Result<()> {
        self.process.signal(sig).await
    }

    /// Kills it with SIGKILL, like `kill -9`, and waits until it is gone.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.process.kill().await
    }

    /// Sends SIGTERM (graceful shutdown), and SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.process.stop(grace).await
    }

    /// Waits up to `timeout` for it to exit on its own.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.process
            .wait(timeout)
            .await
            .ok_or_else(|| Error::Timeout {
                what: format!("{} (pid {}) to exit", self.spec.name, self.pid()),
                after: timeout,
                last: "still running".into(),
            })
    }

    /// Starts the same command again (same arguments, environment and log file), killing the
    /// previous run first if it still runs. For crash-and-restart tests.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill().await?;
        self.process = Supervised::spawn(&self.spec).await?;
        Ok(())
    }
}

impl std::fmt::Debug for ChildGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildGuard")
            .field("program", &self.spec.program)
            .field("pid", &self.pid())
            .field("log", &self.spec.log)
            .finish()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the log for the person reading the failure: the temp dir would delete it.
            if let Some(dir) = self.log_dir.take() {
                let _ = dir.keep();
            }
            eprintln!(
                "testkit: {} (pid {}) log kept at {}; last lines:\n{}",
                self.spec.name,
                self.pid(),
                self.spec.log.display(),
                self.log_tail(30)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_spec(dir: &Path, script: &str) -> Spec {
        Spec {
            name: "sh".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("TESTKIT_GREETING".into(), "hello".into())],
            current_dir: Some(dir.to_path_buf()),
            log: dir.join("sh.log"),
        }
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; its state letter is Z.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    /// Output, environment and working directory reach the program; its exit status comes back.
    #[tokio::test]
    async fn runs_program_with_env_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let spec = sh_spec(dir.path(), "echo \"$TESTKIT_GREETING from $(pwd)\"; exit 3");
        let mut p = Supervised::spawn(&spec).await.unwrap();
        let status = p.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.code(), Some(3));
        let log = std::fs::read_to_string(&spec.log).unwrap();
        assert!(log.contains("=== testkit: starting /bin/sh"), "{log}");
        assert!(
            log.contains(&format!("hello from {}", dir.path().display())),
            "{log}"
        );
    }

    /// TERM reaches the program itself (not only the watchdog) and stop() reports its status.
    #[tokio::test]
    async fn stop_sends_term_to_program() {
        let dir = tempfile::tempdir().unwrap();
        let spec = sh_spec(
            dir.path(),
            "trap 'echo got-term; exit 7' TERM; while :; do sleep 0.05; done",
        );
        let mut p = Supervised::spawn(&spec).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = p.stop(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.code(), Some(7));
        assert!(log_tail(&spec.log, 5).contains("got-term"));
    }

    /// Dropping the handle kills the program at once.
    #[tokio::test]
    async fn drop_kills_program() {
        let dir = tempfile::tempdir().unwrap();
        let p = Supervised::spawn(&sh_spec(dir.path(), "exec sleep 600"))
            .await
            .unwrap();
        let pid = p.pid();
        assert!(alive(pid));
        drop(p);
        assert!(!alive(pid), "pid {pid} survived the drop");
    }

    /// When the parent dies without running destructors, the pipe closes and the watchdog kills the
    /// program. Simulated by leaking the handle's child (no kill_on_drop) and closing the pipe.
    #[tokio::test]
    async fn closed_pipe_kills_program() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Supervised::spawn(&sh_spec(dir.path(), "exec sleep 600"))
            .await
            .unwrap();
        let pid = p.pid();
        p.control = None;
        let status = p.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.code(), Some(128 + 9));
        assert!(!alive(pid));
    }

    /// Signal names are checked before they reach the shell.
    #[tokio::test]
    async fn rejects_bad_signal_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Supervised::spawn(&sh_spec(dir.path(), "exec sleep 600"))
            .await
            .unwrap();
        assert!(matches!(
            p.signal("TERM; rm -rf /").await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(p.signal("").await, Err(Error::InvalidName { .. })));
        // A real but unknown-to-kill name is refused by kill and reported, not ignored.
        assert!(matches!(p.signal("NOSUCHSIG").await, Err(Error::Io { .. })));
        p.signal("STOP").await.unwrap();
        p.signal("CONT").await.unwrap();
    }

    /// The tail helper returns the last lines only.
    #[test]
    fn tail_returns_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
