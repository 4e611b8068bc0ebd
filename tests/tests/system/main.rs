//! The whole system on the real Docker engine, driven through the release `platform` binary as a
//! user runs it (see the crate docs for where the binaries come from and how the tests stay
//! apart from a user's `dev` stack).
//!
//! - [`lifecycle`]: `up` (twice: it converges) → `smoke` → `scale order-service 3` → the gateway
//!   spreads orders over the three → `down --volumes` leaves nothing with the stack's label.
//! - [`scenarios`]: on one stack, every shipped scenario passes, a false expectation fails
//!   naming its assertion and figure, Ctrl-C heals, `platform load` reports every request.
//! - [`bad_input`]: unknown services, unscalable services, a bad stack file and a stack that is
//!   not running exit with the documented codes (0 ok, 1 failure, 2 usage) and create nothing.
//! - [`dashboard`]: the TUI in tmux: a key scales, the inject menu opens the breakers, heal
//!   closes them, the command log shows the CLI equivalents, the terminal is restored.
//! - [`faults`]: `inject` of every container kind, a tc kind and the application kinds takes
//!   effect and is reverted at its end by the supervisor (also when the injecting CLI was
//!   `kill -9`ed); `heal` reverts at once; bad fault input exits 2 and injects nothing.
//! - [`hostile`]: on one stack, hostile uploads, URLs, headers, tokens, bodies and ids, and users
//!   reaching for what is not theirs, each get their 4xx problem+json; password guessing locks
//!   the name; healthy instances stay in rotation and no container restarts or is OOM-killed.
//! - [`wait_for`]: every service binary a stack builds, run as a Kubernetes init container
//!   (`--wait-for HOST:PORT`), exits 0 once the port accepts and waits while it does not (no
//!   Docker: the built binaries themselves).
//!
//! Each `platform` command has a hard time limit; progress and timings go to stderr
//! (`cargo nextest run -p e2e --no-capture` shows them live).

mod bad_input;
mod dashboard;
mod faults;
mod hostile;
mod lifecycle;
mod scenarios;
mod wait_for;

use e2e::{Platform, docker};
use testkit::eventually;

/// The release binary and a Docker connection, after taking down stacks of killed earlier runs.
async fn setup() -> (Platform, bollard::Docker) {
    let platform = match Platform::locate() {
        Ok(p) => p,
        Err(e) => panic!("{e:#}"),
    };
    let docker = match docker::connect().await {
        Ok(d) => d,
        Err(e) => panic!("the end-to-end tests need Docker: {e:#}"),
    };
    if let Err(e) = e2e::stack::remove_orphans(&platform, &docker).await {
        eprintln!("warning: could not look for orphaned test stacks: {e:#}");
    }
    (platform, docker)
}
