//! A service binary as a child process on a free loopback port, started and waited for in one call.
//!
//! Tests and benchmarks of several crates start the same way: pick a free port, run the binary with
//! `--port <p> --bind 127.0.0.1` and their own flags, wait until a readiness URL answers 2xx, and
//! quote the process's log when it never does. [`Starter`] is that sequence written once; what
//! differs (flags, environment, readiness path, bound) is set on the builder.
//!
//! ```no_run
//! # async fn demo() -> Result<(), testkit::Error> {
//! let registry = testkit::Starter::workspace("discovery-server")?
//!     .args(["--admin-token", "registry-admin"])
//!     .start()
//!     .await?;
//! println!("{}", registry.url("/eureka/apps"));
//! # Ok(()) }
//! ```

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{ChildGuard, Error, Result};

/// How to start one service process; [`Starter::start`] runs it.
#[derive(Clone, Debug)]
#[must_use = "a Starter does nothing until start() is awaited"]
pub struct Starter {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    port: Option<u16>,
    ready_path: String,
    within: Duration,
}

impl Starter {
    /// Runs the program at `bin` with `RUST_LOG=warn`, ready when `/health/ready` answers within
    /// 20 s.
    pub fn new(bin: impl AsRef<Path>) -> Starter {
        Starter {
            bin: bin.as_ref().to_path_buf(),
            args: Vec::new(),
            env: vec![("RUST_LOG".into(), "warn".into())],
            port: None,
            ready_path: "/health/ready".into(),
            within: Duration::from_secs(20),
        }
    }

    /// The workspace's built binary `name` (see [`crate::bin_path`]).
    pub fn workspace(name: &str) -> Result<Starter> {
        Ok(Starter::new(crate::bin_path(name)?))
    }

    /// Adds command-line arguments (after `--port` and `--bind`).
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Starter {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds environment variables (a later value for the same name wins).
    pub fn envs(
        mut self,
        env: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
    ) -> Starter {
        self.env.extend(
            env.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// Listens on `port` instead of a fresh free one (a URL that must be known before the start).
    pub fn port(mut self, port: u16) -> Starter {
        self.port = Some(port);
        self
    }

    /// Ready when this path answers 2xx (default `/health/ready`).
    pub fn ready_path(mut self, path: &str) -> Starter {
        self.ready_path = path.to_string();
        self
    }

    /// How long it may take to become ready (default 20 s).
    pub fn within(mut self, within: Duration) -> Starter {
        self.within = within;
        self
    }

    /// Starts it on 127.0.0.1 and waits until it is ready; an error quotes its log's last lines.
    pub async fn start(self) -> Result<Started> {
        let port = match self.port {
            Some(port) => port,
            None => crate::free_port()?,
        };
        let port_arg = port.to_string();
        let args = [OsStr::new("--port"), OsStr::new(&port_arg)]
            .into_iter()
            .chain([OsStr::new("--bind"), OsStr::new("127.0.0.1")])
            .chain(self.args.iter().map(OsString::as_os_str));
        let process = crate::spawn_process(&self.bin, args, self.env.iter().cloned()).await?;
        let base = format!("http://127.0.0.1:{port}");
        let ready = format!("{base}{}", self.ready_path);
        if let Err(e) = crate::wait_for_http(&ready, self.within).await {
            return Err(Error::Start {
                name: self.bin.display().to_string(),
                reason: e.to_string(),
                log: process.log_path().to_path_buf(),
                tail: process.log_tail(30),
            });
        }
        Ok(Started {
            base,
            port,
            process,
        })
    }
}

/// A service process that answered its readiness check; killed when dropped.
#[derive(Debug)]
pub struct Started {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    pub process: ChildGuard,
}

impl Started {
    /// `base` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
