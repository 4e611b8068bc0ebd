//! A program in a real terminal: a detached tmux session on a server of its own (`tmux -L`),
//! driven with `send-keys` and read with `capture-pane`, as a user at a terminal would. The
//! server is killed when the [`Session`] is dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// One tmux server with one session running one command.
#[derive(Debug)]
pub struct Session {
    socket: String,
    name: String,
}

impl Session {
    /// Starts `command` (an `sh` command line) in a `width`×`height` terminal. The pane stays
    /// after the command exits, so its last screen and exit status can still be read.
    pub fn start(tag: &str, width: u16, height: u16, command: &str) -> anyhow::Result<Self> {
        let session = Self {
            socket: format!("platform-e2e-{}-{tag}", std::process::id()),
            name: tag.to_string(),
        };
        let (w, h) = (width.to_string(), height.to_string());
        // A server of our own starts with no configuration of the user's (-f /dev/null).
        session.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            tag,
            "-x",
            &w,
            "-y",
            &h,
            "sh",
            "-c",
            command,
        ])?;
        session.tmux(&["set-option", "-t", tag, "remain-on-exit", "on"])?;
        session.tmux(&["set-option", "-t", tag, "status", "off"])?;
        Ok(session)
    }

    fn tmux(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("run tmux (Debian package tmux; install.sh installs it)")?;
        if !out.status.success() {
            bail!(
                "tmux {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `keys` as tmux key names (`Enter`, `Escape`, `C-c`, or literal text with
    /// [`Session::type_text`]).
    pub fn keys(&self, keys: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["send-keys", "-t", self.name.as_str()];
        args.extend_from_slice(keys);
        self.tmux(&args).map(drop)
    }

    /// Types `text` literally, one key per character.
    pub fn type_text(&self, text: &str) -> anyhow::Result<()> {
        self.tmux(&["send-keys", "-t", &self.name, "-l", text])
            .map(drop)
    }

    /// The visible screen as text.
    pub fn screen(&self) -> anyhow::Result<String> {
        self.tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// A tmux format of the pane (`#{pane_dead}`, `#{alternate_on}`, `#{cursor_flag}`, ...).
    pub fn pane(&self, format: &str) -> anyhow::Result<String> {
        self.tmux(&["display-message", "-p", "-t", &self.name, format])
            .map(|s| s.trim().to_string())
    }

    /// Waits until the screen satisfies `ready` (polled every 250 ms); fails after `limit`
    /// with `what` and the last screen.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let screen = self.screen()?;
            if ready(&screen) {
                return Ok(screen);
            }
            if started.elapsed() > limit {
                bail!("{what}: not on screen within {limit:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the command has exited; returns its exit status (128 + the signal when a
    /// signal ended it).
    pub fn wait_exit(&self, limit: Duration) -> anyhow::Result<i32> {
        let started = Instant::now();
        loop {
            // tmux may mark the pane dead a moment before it has the exit status.
            if self.pane("#{pane_dead}")? == "1" {
                let status = self.pane("#{pane_dead_status}")?;
                if let Ok(code) = status.parse() {
                    return Ok(code);
                }
                let signal = self.pane("#{pane_dead_signal}")?;
                if let Ok(signal) = signal.parse::<i32>() {
                    return Ok(128 + signal);
                }
            }
            if started.elapsed() > limit {
                bail!(
                    "the program did not exit within {limit:?} ({}); the screen:\n{}",
                    self.holders()?,
                    self.screen()?
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The processes that still hold the pane's terminal open, for messages.
    fn holders(&self) -> anyhow::Result<String> {
        let tty = self.pane("#{pane_tty}")?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let holds = fds
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == tty));
            if holds {
                let cmd = std::fs::read_to_string(entry.path().join("cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                out.push(format!("{pid} {}", cmd.trim()));
            }
        }
        Ok(format!("{tty} held by: {}", out.join("; ")))
    }

    /// The pid of the program in the pane.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let pid = self.pane("#{pane_pid}")?;
        pid.parse().with_context(|| format!("pane_pid `{pid}`"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The screen line that contains `needle`, if any.
pub fn line_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(needle))
}
