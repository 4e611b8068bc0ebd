//! What reading the running system can fail with, each with the next step to try: the stack is
//! not running, a service has no running instance, the host has no route to it, or a service
//! answered something unexpected.

use std::time::Duration;

/// Failures of [`super::Observer`] and its readers.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// No container of the stack is running.
    #[error("stack `{stack}` is not running (no running containers)")]
    NotRunning { stack: String },
    /// The service has no running container.
    #[error("service `{service}` has no running container in stack `{stack}`")]
    NoInstance { service: String, stack: String },
    /// The stack does not say where something is (e.g. no service sets `REGISTRY_URL`).
    #[error("stack `{stack}` does not say where {what} is: no service sets {env}")]
    NotConfigured {
        stack: String,
        what: &'static str,
        env: &'static str,
    },
    /// The host cannot reach a container's port by the chosen route.
    #[error("cannot reach {container} port {port} from this host: {reason}")]
    NoRoute {
        container: String,
        port: u16,
        reason: String,
    },
    /// An HTTP request did not get an answer.
    #[error("{what}: no answer from {url}: {message}")]
    Unreachable {
        what: String,
        url: String,
        message: String,
    },
    /// An HTTP request got an answer we did not want.
    #[error("{what}: {url} answered {status}: {body}")]
    Status {
        what: String,
        url: String,
        status: u16,
        body: String,
    },
    /// An answer that does not have the expected shape.
    #[error("{what}: cannot read the answer of {url}: {message}")]
    Decode {
        what: String,
        url: String,
        message: String,
    },
    /// The identity provider refused to issue a token (RFC 6749 error).
    #[error("the identity provider at {url} refused the token request: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TokenRefused {
        url: String,
        error: String,
        description: Option<String>,
    },
    /// Waited in vain.
    #[error("{what}: not done after {after:?}{}", last.as_deref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    Timeout {
        what: String,
        after: Duration,
        last: Option<String>,
    },
    /// A setting (environment variable or option) has a value that cannot be used.
    #[error("{0}")]
    Setting(String),
    /// Docker failed while listing or reading containers.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

impl ObserveError {
    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            ObserveError::NotRunning { stack } => Some(format!(
                "start it with `platform up{}`",
                if stack == "dev" {
                    String::new()
                } else {
                    format!(" --stack {stack}")
                }
            )),
            ObserveError::NoInstance { service, .. } => Some(format!(
                "`platform status` shows what runs; `platform up {service}` starts it"
            )),
            ObserveError::NotConfigured { .. } => {
                Some("`platform stack show` prints each service's environment".to_string())
            }
            ObserveError::NoRoute { .. } => Some(
                "on Docker Desktop (macOS, Windows) or with a remote DOCKER_HOST the host cannot route \
                 to container addresses: publish the port in the stack (`ports = [\"HOST:CONTAINER\"]`); \
                 PLATFORM_REACH=address|published chooses the route"
                    .to_string(),
            ),
            ObserveError::Unreachable { .. } | ObserveError::Timeout { .. } => Some(
                "`platform status` shows the containers and the registry; `platform logs SERVICE` their output"
                    .to_string(),
            ),
            ObserveError::TokenRefused { .. } => Some(
                "the dev realm (keycloak/realm.json) has users admin/admin and alice/alice, \
                 client platform-cli (password grant) and platform-service (client credentials)"
                    .to_string(),
            ),
            ObserveError::Runtime(e) => e.hint(),
            ObserveError::Status { .. } | ObserveError::Decode { .. } | ObserveError::Setting(_) => {
                None
            }
        }
    }
}
