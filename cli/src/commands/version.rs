//! `platform version`: what this binary is and which Docker engine it would talk to. Docker
//! being down is reported, not an error: the command is how users check their setup.

use serde::Serialize;

use super::Global;
use crate::runtime::{EngineVersion, Runtime};
use crate::{Result, output};

/// The git commit recorded by build.rs, when the build had one.
pub const GIT_COMMIT: Option<&str> = option_env!("PLATFORM_GIT_COMMIT");

#[derive(Debug, Serialize)]
struct VersionView {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<&'static str>,
    docker: DockerView,
}

#[derive(Debug, Serialize)]
struct DockerView {
    host: String,
    reachable: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    engine: Option<EngineVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn run(g: &Global) -> Result<()> {
    let docker = match Runtime::connect().await {
        Ok(rt) => match rt.version().await {
            Ok(v) => DockerView {
                host: rt.host().to_string(),
                reachable: true,
                engine: Some(v),
                error: None,
            },
            Err(e) => DockerView {
                host: rt.host().to_string(),
                reachable: false,
                engine: None,
                error: Some(e.to_string()),
            },
        },
        Err(e) => DockerView {
            host: std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string()),
            reachable: false,
            engine: None,
            error: Some(e.to_string()),
        },
    };
    let view = VersionView {
        version: env!("CARGO_PKG_VERSION"),
        commit: GIT_COMMIT,
        docker,
    };
    if g.json {
        return output::json(&view);
    }
    match view.commit {
        Some(c) => crate::outln!("platform {} (commit {c})", view.version),
        None => crate::outln!("platform {}", view.version),
    }
    match (&view.docker.engine, &view.docker.error) {
        (Some(e), _) => crate::outln!(
            "docker: engine {} at {}, API {} (client uses {})",
            e.version,
            view.docker.host,
            e.api_version,
            e.client_api_version
        ),
        (None, Some(err)) => crate::outln!("docker: not reachable ({err})"),
        (None, None) => crate::outln!("docker: not reachable"),
    }
    Ok(())
}
