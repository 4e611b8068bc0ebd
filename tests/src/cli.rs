//! The `platform` binary as a user runs it: a child process in the repository root, with a hard
//! time limit per command (the child is killed when it is reached) and its output both echoed to
//! stderr as it comes (so `--no-capture` shows `up`'s build progress live) and kept for asserts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

use crate::binaries::Snapshot;

/// Variables of the user's shell that would change what the tests ask for (another stack,
/// gateway or user); they are removed from the child's environment.
const CLEARED_ENV: [&str; 5] = [
    "PLATFORM_STACK",
    "PLATFORM_GATEWAY_URL",
    "PLATFORM_USER",
    "PLATFORM_PASSWORD",
    "PLATFORM_ROOT",
];

/// Where `platform` looks for the binaries it images (`<dir>/release/<name>`).
const TARGET_DIR_ENV: &str = "CARGO_TARGET_DIR";

/// How to run the `platform` binary.
#[derive(Debug, Clone)]
pub struct Platform {
    bin: PathBuf,
    root: PathBuf,
    /// The frozen binaries `bin` and `platform up` use, shared by clones and removed with the
    /// last of them.
    snapshot: Arc<Snapshot>,
}

/// One finished `platform` command.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

impl Platform {
    /// The release binary ([`crate::binaries::platform`]) and the services' release binaries,
    /// frozen in a [`Snapshot`], run in the repository root; warns once per process about
    /// binaries older than their sources.
    pub fn locate() -> anyhow::Result<Self> {
        let platform = crate::binaries::platform()?;
        let root = testkit::workspace_root().to_path_buf();
        crate::binaries::warn_if_stale(&root);
        let services = crate::binaries::stack_binaries(&root.join("stacks/dev.toml"))?;
        let snapshot = Snapshot::take(&platform, &services)?;
        Ok(Self {
            bin: snapshot.platform(),
            root,
            snapshot: Arc::new(snapshot),
        })
    }

    /// The binary in use (the snapshot's copy).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The repository root (the child's working directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn describe(args: &[&str]) -> String {
        format!("platform {}", args.join(" "))
    }

    /// Runs `platform ARGS`, killing it after `limit`. Fails only when it cannot be started or
    /// does not finish in time; the exit code is the caller's to judge.
    pub async fn run(&self, args: &[&str], limit: Duration) -> anyhow::Result<Run> {
        let command = Self::describe(args);
        let started = Instant::now();
        let mut child = self
            .command(args, Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let prefix = format!("[{}]", args.first().copied().unwrap_or("platform"));
        let out = tokio::spawn(collect(child.stdout.take(), None));
        let err = tokio::spawn(collect(child.stderr.take(), Some(prefix)));
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.with_context(|| format!("wait for {command}"))?,
            Err(_) => {
                let _ = child.kill().await;
                let stderr = err.await.unwrap_or_default();
                bail!(
                    "`{command}` did not finish within {limit:?} and was killed; its last output:\n{}",
                    tail(&stderr, 30)
                );
            }
        };
        let stdout = out.await.unwrap_or_default();
        let stderr = err.await.unwrap_or_default();
        Ok(Run {
            command,
            code: status.code(),
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }

    /// Starts `platform ARGS` and returns the child with stdout piped (stderr inherited), for
    /// tests that must act while it runs (send it a signal). The caller bounds the wait; the
    /// child is killed when dropped.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<tokio::process::Child> {
        self.command(args, Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", Self::describe(args)))
    }

    /// `platform ARGS` in the repository root with the frozen binaries and the user's
    /// overriding variables removed; stdout piped, stderr as asked, killed when dropped.
    fn command(&self, args: &[&str], stderr: Stdio) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        for key in CLEARED_ENV {
            cmd.env_remove(key);
        }
        cmd.env(TARGET_DIR_ENV, self.snapshot.target_dir());
        cmd
    }

    /// `platform ARGS` as one `sh` command line with the same environment as [`Platform::run`]
    /// (the user's overriding variables removed, the frozen binaries), run in the repository
    /// root: for programs that take a command line, such as a tmux session.
    pub fn shell_line(&self, args: &[&str]) -> String {
        let mut words = vec![
            "cd".to_string(),
            quote(&self.root.to_string_lossy()),
            "&&".into(),
        ];
        words.push("exec".into());
        words.push("env".into());
        for key in CLEARED_ENV {
            words.extend(["-u".to_string(), key.to_string()]);
        }
        words.push(quote(&format!(
            "{TARGET_DIR_ENV}={}",
            self.snapshot.target_dir().display()
        )));
        words.push(quote(&self.bin.to_string_lossy()));
        words.extend(args.iter().map(|a| quote(a)));
        words.join(" ")
    }

    /// [`Platform::run`] for code that cannot await (a `Drop`): plain threads, same limit.
    pub fn run_blocking(&self, args: &[&str], limit: Duration) -> anyhow::Result<Run> {
        let command = Self::describe(args);
        let started = Instant::now();
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in CLEARED_ENV {
            cmd.env_remove(key);
        }
        cmd.env(TARGET_DIR_ENV, self.snapshot.target_dir());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_string(&mut text);
                }
                text
            })
        };
        let out = read(child.stdout.take().map(|p| Box::new(p) as _));
        let err = read(child.stderr.take().map(|p| Box::new(p) as _));
        let status = loop {
            if let Some(status) = child.try_wait().context("wait for platform")? {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{command}` did not finish within {limit:?} and was killed");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(Run {
            command,
            code: status.code(),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            elapsed: started.elapsed(),
        })
    }
}

/// Reads a pipe to the end; with a prefix, echoes each line to stderr as it arrives.
async fn collect(pipe: Option<impl AsyncRead + Unpin>, echo: Option<String>) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut lines = BufReader::new(pipe).lines();
    let mut text = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(prefix) = &echo {
            eprintln!("{prefix} {line}");
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// `text` as one `sh` word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Run {
    /// The run itself when it exited 0, else an error with its stderr.
    pub fn success(self) -> anyhow::Result<Self> {
        self.expect_code(0)
    }

    /// The run itself when it exited with `code`, else an error with its output.
    pub fn expect_code(self, code: i32) -> anyhow::Result<Self> {
        if self.code == Some(code) {
            return Ok(self);
        }
        bail!(
            "`{}` exited with {:?}, expected {code}; stderr:\n{}\nstdout:\n{}",
            self.command,
            self.code,
            tail(&self.stderr, 40),
            tail(&self.stdout, 20)
        )
    }

    /// Stdout as one JSON document (the `--json` output of read commands).
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "`{}` printed no JSON document:\n{}",
                self.command,
                tail(&self.stdout, 20)
            )
        })
    }

    /// Seconds taken, for timing lines.
    pub fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }
}
