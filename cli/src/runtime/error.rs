//! Docker failures, typed so commands can say what to do: the engine is unreachable, a thing
//! is missing, a container is not ours, or Docker refused a request.

/// What the Docker facade can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No engine answered at `host`.
    #[error("Docker is not reachable at {host}: {message}")]
    Unreachable {
        /// The `DOCKER_HOST` (or default socket) tried.
        host: String,
        /// The underlying failure.
        message: String,
    },
    /// The engine answered but is too old for the API this CLI needs.
    #[error("Docker at {host} speaks API {api}, older than the {minimum} this CLI needs")]
    TooOld {
        host: String,
        api: String,
        minimum: String,
    },
    /// A container, image, network or volume that should exist does not.
    #[error("{kind} `{name}` does not exist")]
    NotFound {
        /// "container", "image", "network" or "volume".
        kind: &'static str,
        name: String,
    },
    /// The object exists but lacks our labels: the CLI never touches what it did not create.
    #[error(
        "{kind} `{name}` was not created by platform (no `platform.stack` label); leaving it alone"
    )]
    NotOurs { kind: &'static str, name: String },
    /// A name or port is taken by something else.
    #[error("{what}: {message}")]
    Conflict { what: String, message: String },
    /// Any other refusal or failure from the engine.
    #[error("Docker failed to {action}: {source}")]
    Docker {
        /// What we asked for, e.g. "create container platform-dev-nisshi-1".
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// A command run with exec inside a container failed to run.
    #[error("command in {container} failed: {message}")]
    Exec { container: String, message: String },
}

impl RuntimeError {
    /// Wraps a bollard error, classifying 404 and 409 answers.
    pub fn docker(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        let action = action.into();
        match &source {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            } => RuntimeError::Conflict {
                what: action,
                message: message.clone(),
            },
            // A taken host port surfaces as a 500 from `start`, not as a 409.
            bollard::errors::Error::DockerResponseServerError { message, .. }
                if is_port_taken(message) =>
            {
                RuntimeError::Conflict {
                    what: action,
                    message: message.clone(),
                }
            }
            _ => RuntimeError::Docker { action, source },
        }
    }

    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            RuntimeError::Unreachable { host, .. } if host.starts_with("unix://") => Some(format!(
                "is the daemon running? try `sudo systemctl start docker` (or `sudo dockerd &`), \
                 and check that you may use {}",
                host.trim_start_matches("unix://")
            )),
            RuntimeError::Unreachable { .. } => {
                Some("is the daemon running and DOCKER_HOST right?".to_string())
            }
            RuntimeError::TooOld { .. } => Some("upgrade Docker Engine to 20.10 or newer".into()),
            RuntimeError::Conflict { message, .. } if is_port_taken(message) => {
                Some("another process or container holds that host port: free it or change `ports` in the stack".into())
            }
            RuntimeError::NotOurs { .. } => Some(
                "rename or remove that object yourself if it is in the way; platform will not".into(),
            ),
            _ => None,
        }
    }
}

/// True when Docker says a published host port is in use (by a container or another process).
fn is_port_taken(message: &str) -> bool {
    message.contains("port is already allocated") || message.contains("address already in use")
}

/// True when bollard reports HTTP 404 (a missing object), which callers often treat as "done".
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
