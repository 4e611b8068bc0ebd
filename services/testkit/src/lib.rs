//! Test support for the whole workspace: real dependencies, started for one test and thrown away.
//!
//! Integration tests of every service run against a real MariaDB server and a real Kafka-API broker
//! (nisshi, or tansu for comparisons), never against mocks and never against a system database. This crate starts such servers on
//! loopback, each with its own free port and temporary directory, so any number of tests can run in
//! parallel processes (cargo-nextest runs one process per test).
//!
//! - [`MariaDb`]: a throwaway `mariadbd` (Debian's MariaDB 10.11) with database-per-service accounts.
//! - [`Broker`]: a throwaway Kafka-API broker (nisshi 0.6.0, or tansu 0.6.0: [`BrokerKind`]) with SQLite
//!   storage that survives restarts, and pause/resume.
//! - [`spawn_process`] / [`ChildGuard`]: real service binaries as child processes, for crash tests.
//! - [`Starter`] / [`Started`]: a service binary on a free port, started and waited for in one call.
//! - [`body_text`], [`body_json`], [`problem`], [`count_rows`]: an answer's body, a problem+json
//!   answer and a table's row count, read as every service's tests read them.
//! - [`free_port`], [`workspace_root`], [`bin_path`], [`wait_for_http`]: the small helpers around them.
//! - [`skip`], [`python_venv`]: a test that cannot run here says so in a line `.ci/run` lists; the
//!   Python compatibility suites fail instead under `CI=true`.
//! - [`eventually`], [`poll_until`]: wait on a condition (never a sleep, never a timed assertion).
//! - [`order_stream`]: orders posted in loops while a test breaks something.
//! - [`hostile`]: request bodies shaped to hurt a parser (`[{},{},…]`, deep nesting).
//! - [`benchmarks::write_section`]: a benchmark's figures into its section of BENCHMARKS.md;
//!   [`benchmarks::wrk`]: order load from wrk, its figures and its own CPU time.
//! - [`loopback`]: the whole platform as release processes on loopback (MariaDB, broker,
//!   registry, identity provider, trace-collector, the services and the gateway), for benchmarks.
//! - `InProcess` (feature `kit`): a kit service run inside the test process on a free port, stopped
//!   as SIGTERM would; `registry()` (feature `registry`): the real discovery-server that way.
//!
//! Every child process is started through a tiny `sh` watchdog that kills it when the test process goes
//! away, even by `SIGKILL` (the watchdog notices its control pipe close), so a timed-out or crashed
//! test never leaves servers behind; the data dirs such a test leaves are removed by the next start.
//! Server logs go to files in their temporary directories; start failures quote the last lines of
//! that log, and a panicking test prints them.
//!
//! The MariaDB template data dir lives in `target/testkit/` and is created on first use (about a
//! second); `cargo clean` removes it and the next test recreates it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), testkit::Error> {
//! let db = testkit::MariaDb::start().await?;
//! let orders = db.create_database("orders").await?;
//! let kafka = testkit::Broker::start().await?;
//! kafka.create_topic("order-placed", 3).await?;
//! println!("{} {}", orders.url, kafka.bootstrap_servers());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod benchmarks;
mod broker;
mod checks;
mod error;
pub mod hostile;
pub mod loopback;
mod mariadb;
mod net;
mod orders;
mod paths;
mod process;
pub mod python_clients;
mod server;
#[cfg(feature = "kit")]
mod service;
mod skip;
mod starter;
mod wait;

pub use broker::{BROKER_ENV, Broker, BrokerKind};
pub use checks::{body_json, body_text, count_rows, problem};
pub use error::Error;
pub use mariadb::{DbAccess, MariaDb};
pub use net::{free_port, wait_for_http};
pub use orders::{Streamed, order_stream};
pub use paths::{bin_path, newest_source, stale_source, target_dir, workspace_root};
pub use process::{ChildGuard, spawn_process, spawn_process_in};
#[cfg(feature = "kit")]
pub use service::InProcess;
#[cfg(feature = "registry")]
pub use service::registry;
pub use skip::{SKIP_MARKER, VENV_ENV, is_ci, python_venv, skip, skip_line, venv_dir};
pub use starter::{Started, Starter};
pub use wait::{MAX_POLL, Outcome, eventually, poll_until};

/// Result type of every fallible testkit call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// Handles and the futures of their methods are `Send`, so tests can move them into spawned tasks.
    #[test]
    fn handles_and_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let start = crate::MariaDb::start();
        assert_send(&start);
        let start = crate::Broker::start();
        assert_send(&start);
        let spawn = crate::spawn_process("/bin/true", ["x"], [("K", "V")]);
        assert_send(&spawn);
        fn assert_send_type<T: Send + Sync>() {}
        assert_send_type::<crate::MariaDb>();
        assert_send_type::<crate::Broker>();
        assert_send_type::<crate::ChildGuard>();
    }
}
