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
    /// Starts `command` (an `sh` command line, run in a subshell) in a `width`×`height`
    /// terminal; the shell then prints `EXITED <status>` and stays, so the terminal and the
    /// status can be read afterwards ([`Session::wait_exit`]).
    pub fn start(tag: &str, width: u16, height: u16, command: &str) -> anyhow::Result<Self> {
        let command = format!("( {command} ); echo \"{EXITED}$?\"; sleep 600");
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
            &command,
        ])?;
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

    /// Waits until the command has exited; returns its exit status. The command runs in a
    /// shell that stays ([`Session::start`]) and prints `EXITED <status>` after it, so the
    /// terminal is read as a user gets it back, and the status does not depend on tmux noticing
    /// the exit (it can mark a pane dead before it has the status).
    pub fn wait_exit(&self, limit: Duration) -> anyhow::Result<i32> {
        let screen = self.wait_for("the program's exit", limit, |s| {
            s.lines().any(|l| l.starts_with(EXITED))
        })?;
        let status = screen
            .lines()
            .find_map(|l| l.strip_prefix(EXITED))
            .unwrap_or_default()
            .trim();
        status
            .parse()
            .with_context(|| format!("exit status `{status}`"))
    }

    /// The pid of the program in the pane, while it runs.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let shell = self.pane("#{pane_pid}")?;
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .with_context(|| format!("the children of the pane's shell {shell}"))?;
        let pid = children.split_whitespace().next().unwrap_or_default();
        pid.parse()
            .with_context(|| format!("the pane's program: `{children}`"))
    }
}

/// What the pane's shell prints after the program, before its exit status.
const EXITED: &str = "EXITED ";

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
