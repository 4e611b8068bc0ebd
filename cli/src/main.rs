//! The `platform` binary: parses the command line, runs the command from the library, and turns
//! failures into a clear message, a hint and an exit code (0 ok, 1 failure, 2 usage).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use platform::commands::Cli;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2; `--help`/`--version` exit with 0.
    let cli = Cli::parse();
    platform::telemetry::init(cli.global.verbose, cli.log_file().as_deref());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(platform::commands::run(cli))
    }));
    // The command is done (or panicked): a blocking task still running (a name lookup of a
    // backend that went away, a collector's blocking read) must not hold the exit; dropping the
    // runtime would wait for it without bound.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(result) => result?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
    Ok(())
}

/// Prints the error chain and, when the library knows one, a hint on how to fix it.
fn report(err: &anyhow::Error) -> ExitCode {
    let typed = err.downcast_ref::<platform::Error>();
    if !typed.is_some_and(platform::Error::already_reported) {
        eprintln!("error: {err:#}");
        if let Some(hint) = typed.and_then(platform::Error::hint) {
            eprintln!("hint: {hint}");
        }
    }
    ExitCode::from(typed.map_or(1, platform::Error::exit_code))
}
