//! Diagnostics for the CLI itself: `tracing` to stderr, quiet by default so command output stays
//! clean; `-v` (or `RUST_LOG`) shows what the CLI does, e.g. each Docker call.

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber once; `verbose` counts `-v` flags (1 = debug, 2+ = trace).
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "platform=debug,info",
        _ => "platform=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
