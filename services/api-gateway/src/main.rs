//! The api-gateway binary: configuration, routes, telemetry, then the
//! gateway until SIGTERM (see the crate docs).
#![forbid(unsafe_code)]

use api_gateway::{Config, SPEC};

/// mimalloc rather than glibc's malloc: a proxied request allocates about a
/// hundred small blocks, often freed on another worker thread than the one
/// that allocated them, and glibc's arenas spent a fifth of the gateway's
/// instructions per request on that (BENCHMARKS.md, gateway).
///
/// Memory: with mimalloc's default of committing its arenas eagerly, 8
/// concurrent 10 MB uploads (refused and drained) took the heap to about
/// 55 MiB, close to the container's 64 MiB; with
/// `MIMALLOC_ARENA_EAGER_COMMIT=0`, which the stacks set for the gateway,
/// about 20 MiB (glibc's malloc: 14 MiB). Measured by
/// `tests/api/limits.rs`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config: Config = kit::config::parse(&SPEC);
    kit::probe::exit_if_probe(&SPEC, &config.common);
    // Before anything starts: a bad routes file ends the start with the
    // file, line and key, and a non-zero exit status.
    let routes = api_gateway::load_routes(&config)?;
    let _telemetry = kit::telemetry::init(&SPEC, &config.common)?;
    kit::service::runtime()?.block_on(api_gateway::run(config, routes))
}
