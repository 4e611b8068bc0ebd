//! The one error type of the testkit.
//!
//! Test failures are read by people, so every variant carries what was being done and, for servers
//! that did not come up, the path and the last lines of the server's own log.

use std::path::PathBuf;
use std::time::Duration;

/// Why a testkit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program or file the testkit needs is not on this machine.
    #[error("{what} not found ({hint})")]
    NotFound {
        /// What was looked for, with the places searched.
        what: String,
        /// How to get it, usually "run ./install.sh".
        hint: String,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the testkit was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A server exited or never became ready.
    #[error("{name} did not start: {reason}\n--- last lines of {} ---\n{tail}", log.display())]
    Start {
        /// Which server (`mariadbd`, `nisshi`, a service binary).
        name: String,
        /// What went wrong (exit status, timeout, last connection error).
        reason: String,
        /// The server's log file, kept until the handle is dropped.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },

    /// Something did not happen within its time bound.
    #[error("timed out after {after:?} waiting for {what} (last outcome: {last})")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound that expired.
        after: Duration,
        /// The last error or answer seen while waiting.
        last: String,
    },

    /// A name given to the testkit cannot be used safely (database and user names go into SQL).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A built binary is older than one of its sources: a test would run old code.
    #[error("{} is older than its source {} (rebuild it: `{rebuild}`)", binary.display(), source_file.display())]
    Stale {
        /// The binary.
        binary: PathBuf,
        /// A source file changed after the binary was built (or removed since).
        source_file: PathBuf,
        /// The command that rebuilds the binary.
        rebuild: String,
    },

    /// The operation needs a running server, and it is stopped or killed.
    #[error("{0} is not running (call start_again first)")]
    NotRunning(&'static str),

    /// A statement against MariaDB failed.
    #[error("MariaDB: {context}: {source}")]
    Sql {
        /// What the testkit was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// An HTTP request a benchmark or stack helper depends on failed (token, stock, catalogue).
    #[error("HTTP: {context}: {reason}")]
    Http {
        /// What the testkit was doing.
        context: String,
        /// The client's error or the unexpected answer.
        reason: String,
    },

    /// An external program (a load generator) failed or printed what cannot be read.
    #[error("{program}: {reason}")]
    Program {
        /// The program and what it was asked to do.
        program: String,
        /// Its exit status and output, or what is missing in it.
        reason: String,
    },

    /// A request to the Kafka broker failed.
    #[error("Kafka: {context}: {source}")]
    Kafka {
        /// What the testkit was doing.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
