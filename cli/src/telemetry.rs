//! Diagnostics for the CLI itself: `tracing` to stderr, quiet by default so command output stays
//! clean; `-v` (or `RUST_LOG`) shows what the CLI does, e.g. each Docker call. While the
//! dashboard owns the screen, the same goes to a file instead (stderr would draw over it).

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; `verbose` counts `-v` flags (1 = debug, 2+ = trace). With
/// `file`, lines go there (truncated first); when it cannot be created, to stderr.
pub fn init(verbose: u8, file: Option<&Path>) {
    let default = match verbose {
        0 => "warn",
        1 => "platform=debug,info",
        _ => "platform=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second init (tests) is harmless: keep the first subscriber.
    match file.map(std::fs::File::create) {
        Some(Ok(f)) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(Mutex::new(f))
                .try_init();
        }
        Some(Err(e)) => {
            eprintln!("warning: cannot write the log file: {e}; logging to stderr");
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
}
