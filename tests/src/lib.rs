//! End-to-end support for the whole system on Docker, driven through the `platform` binary as a
//! user runs it. The test (`tests/system/`) and the benchmark (`benches/platform.rs`) share it.
//!
//! **Which binaries.** The tests run the *release* `platform` (`target/release/platform`, or
//! `$PLATFORM_BIN`), and `platform up` images the release service binaries next to it. They are
//! not built here: a test cannot run cargo without racing the build that started it, and a
//! release build of the workspace takes minutes. `install.sh` builds them
//! (`cargo build --workspace --release`), and `.ci/run` runs `install.sh` before the README's test
//! command, so on a new machine `./install.sh && cargo nextest run --workspace --profile ci`
//! works. A missing binary fails the test with that command; a binary older than its sources is
//! used, with a warning naming it. Each test freezes the binaries it starts with (hard links in
//! a directory of its own, given to `platform` as `CARGO_TARGET_DIR`), so a release build in
//! another terminal cannot change a service between two steps (see [`binaries`]).
//!
//! **Isolation.** Every test works on its own copy of `stacks/dev.toml` under a stack name of its
//! own (`e2e-<pid>-<tag>`), so its network, volumes and containers (`platform-<stack>-...`) never
//! meet a user's `dev` stack or another test's; the gateway is published on a free loopback port
//! instead of 8080. Only objects labelled `platform.stack=<that name>` are looked at or removed.
//!
//! **Cleanup.** [`stack::TestStack`] runs `platform down --volumes` on its stack when dropped,
//! pass or fail; a test process killed before that (nextest's timeout) leaves a stack whose pid
//! is gone, which the next run takes down ([`stack::remove_orphans`]).
//!
//! - [`cli`]: the `platform` binary with a hard timeout per command, output echoed live.
//! - [`binaries`]: where the binaries are, whether they are older than their sources, and the
//!   per-test snapshot of them.
//! - [`stack`]: the throwaway dev stack copy and its guard.
//! - [`docker`]: Docker's own view of what carries a stack's labels, and container memory.
//! - [`shop`]: HTTP to the running stack (stock, orders, the gateway's upstreams, metrics).
//! - [`measure`]: CPU time of a shell command and its children, for the benchmarks.
//! - [`tmux`]: a program in a real terminal (the dashboard), keys in, screen out.

#![forbid(unsafe_code)]

pub mod binaries;
pub mod cli;
pub mod docker;
pub mod measure;
pub mod shop;
pub mod stack;
pub mod tmux;

pub use cli::{Platform, Run};
pub use stack::TestStack;
