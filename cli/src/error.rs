//! The library's one error type. Each variant carries what a user needs to act on it, and
//! [`Error::hint`] adds the next step to try; `main` prints both and picks the exit code.

use crate::runtime::RuntimeError;
use crate::runtime::build::BuildError;
use crate::stack::StackError;

/// Result alias for the CLI library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stack file could not be found, read or validated.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// Docker refused, failed or could not be reached.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A local image build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A service named on the command line is not in the stack.
    #[error("unknown service `{name}` in stack `{stack}` (services: {known})")]
    UnknownService {
        /// The name as given.
        name: String,
        /// The stack searched.
        stack: String,
        /// The stack's services, comma separated.
        known: String,
    },
    /// A container did not become ready.
    #[error(transparent)]
    Health(#[from] crate::commands::health::HealthError),
    /// A service names a prebuilt image that is not on this machine; platform never pulls.
    #[error(
        "image {image} of service `{service}` is not on this machine, and platform never pulls images"
    )]
    ImageMissing { image: String, service: String },
    /// A file the stack needs is missing.
    #[error("{what} does not exist: {}", path.display())]
    MissingFile {
        path: std::path::PathBuf,
        what: String,
    },
    /// The discovery server could not be read.
    #[error("cannot read the registry at {url}: {message}")]
    Registry {
        /// The registry's base URL.
        url: String,
        /// What went wrong, as the HTTP client or the server said it.
        message: String,
    },
    /// Reading the running system failed.
    #[error(transparent)]
    Observe(#[from] crate::observe::ObserveError),
    /// `platform scale` refused or did not finish.
    #[error(transparent)]
    Scale(#[from] crate::commands::scale::ScaleError),
    /// `platform load` could not prepare or run.
    #[error(transparent)]
    Load(#[from] crate::chaos::load::LoadError),
    /// A scenario file is invalid or a scenario could not run.
    #[error(transparent)]
    Scenario(#[from] crate::chaos::scenario::ScenarioError),
    /// A fault could not be injected, healed or listed.
    #[error(transparent)]
    Fault(#[from] crate::chaos::faults::FaultError),
    /// The stack cannot be rendered for Kubernetes as asked.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Writing to stdout failed (e.g. a closed pipe) or JSON could not be produced.
    #[error("cannot write output: {0}")]
    Output(String),
    /// Ctrl-C stopped the command after it cleaned up (exit 130, as shells expect).
    #[error("interrupted")]
    Interrupted,
    /// The failure was already printed in the requested format (e.g. `--json` diagnostics);
    /// `main` only sets the exit code.
    #[error("failed (details above)")]
    Reported,
    /// Bad input (e.g. an invalid stack file) whose diagnostics were already printed: exit 2.
    #[error("invalid input (details above)")]
    ReportedInvalid,
}

impl Error {
    /// The exit code: 2 for bad input (arguments naming things that do not exist, invalid files),
    /// 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::UnknownService { .. } => 2,
            // A stack file that is missing, a directory, unreadable or invalid is bad input.
            Error::Stack(StackError::NoWorkspace { .. }) => 1,
            Error::Stack(_) | Error::ReportedInvalid => 2,
            Error::Scale(e) => e.exit_code(),
            Error::Load(e) => e.exit_code(),
            Error::Interrupted => 130,
            Error::Scenario(e) => e.exit_code(),
            Error::Fault(e) => e.exit_code(),
            Error::Render(e) => e.exit_code(),
            _ => 1,
        }
    }

    /// True when the details are already on the screen and `main` should print nothing more.
    pub fn already_reported(&self) -> bool {
        matches!(self, Error::Reported | Error::ReportedInvalid)
    }

    /// A next step for the user, when there is an obvious one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Runtime(e) => e.hint(),
            Error::Build(e) => e.hint(),
            Error::Stack(e) => e.hint(),
            Error::UnknownService { .. } => {
                Some("`platform stack show` lists the services of the stack".to_string())
            }
            Error::Registry { .. } => Some(
                "is the stack up? `platform registry ls --url http://HOST:8761` reads another registry"
                    .to_string(),
            ),
            Error::Health(crate::commands::health::HealthError::Runtime(e)) => e.hint(),
            Error::Health(_) => Some(
                "its last output is above; `--keep-on-failure` leaves the containers for `docker logs`"
                    .to_string(),
            ),
            Error::MissingFile { .. } => None,
            Error::Observe(e) => e.hint(),
            Error::Scale(e) => e.hint(),
            Error::Load(e) => e.hint(),
            Error::Scenario(e) => e.hint(),
            Error::Fault(e) => e.hint(),
            Error::Render(e) => e.hint(),
            Error::ImageMissing { .. } => Some(
                "this stack uses official images from a registry; offline, use the dev stack (`--stack dev`), \
                 or load the image with `docker load` first"
                    .to_string(),
            ),
            Error::Output(_) | Error::Reported | Error::ReportedInvalid | Error::Interrupted => {
                None
            }
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Output(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Output(e.to_string())
    }
}
