//! FROM-scratch images for a single binary: the binary at `/app/<name>`, the shared libraries
//! `ldd` lists at the paths the loader looks for them, an empty `/data` owned by the unprivileged
//! user the container runs as, and for our services a Docker HEALTHCHECK that runs the binary's
//! own `--probe` mode (there is no shell or curl in the image).

use std::path::Path;

use super::context::Context;
use super::{BuildError, ldd};

/// Bumped whenever the layout or Dockerfile below changes, so old images count as stale.
const RECIPE_VERSION: &str = "scratch-v1";

/// The uid/gid services run as (distroless' "nonroot"); `/data` belongs to it so a fresh named
/// volume mounted there is writable.
pub const RUN_AS: u32 = 65532;

/// A prepared context for a binary image.
#[derive(Debug, Clone)]
pub struct ScratchImage {
    /// The image name (binary name).
    pub name: String,
    /// Dockerfile, binary and libraries.
    pub context: Context,
    /// Content hash of the context.
    pub hash: String,
}

/// Collects `binary` and its libraries into a build context. `probe` adds a HEALTHCHECK that
/// runs `<binary> --probe`.
pub fn prepare(name: &str, binary: &Path, probe: bool) -> Result<ScratchImage, BuildError> {
    let io = |e: std::io::Error| BuildError::Io {
        what: format!("read {}", binary.display()),
        source: e,
    };
    let mut context = Context::new();
    context
        .add_file(&format!("rootfs/app/{name}"), binary)
        .map_err(io)?;
    for lib in ldd::libraries(binary)? {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_string();
        context
            .add_file(&format!("rootfs/{inside}"), &lib)
            .map_err(|e| BuildError::Io {
                what: format!("read library {}", lib.display()),
                source: e,
            })?;
    }
    context.add_dir("rootfs/tmp", 0o1777);
    context.add_dir("data", 0o755);
    context.add_bytes("Dockerfile", dockerfile(name, probe), 0o644);
    let hash = context.content_hash(RECIPE_VERSION);
    Ok(ScratchImage {
        name: name.to_string(),
        context,
        hash,
    })
}

/// The generated Dockerfile. Exec-form ENTRYPOINT and HEALTHCHECK: there is no shell.
pub fn dockerfile(name: &str, probe: bool) -> String {
    let mut d = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown={RUN_AS}:{RUN_AS} data/ /data/\n\
         USER {RUN_AS}:{RUN_AS}\n\
         WORKDIR /data\n\
         ENTRYPOINT [\"/app/{name}\"]\n"
    );
    if probe {
        d.push_str(&format!(
            "HEALTHCHECK --interval=2s --timeout=2s --start-period=1s --retries=30 \
             CMD [\"/app/{name}\", \"--probe\"]\n"
        ));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our services get an exec-form probe health check; tansu's image has none.
    #[test]
    fn dockerfile_probe_only_when_asked() {
        let with = dockerfile("order-service", true);
        assert!(with.contains("FROM scratch"));
        assert!(with.contains("ENTRYPOINT [\"/app/order-service\"]"));
        assert!(with.contains("CMD [\"/app/order-service\", \"--probe\"]"));
        assert!(!dockerfile("tansu", false).contains("HEALTHCHECK"));
    }

    /// The context holds the binary, its libraries (loader included) and the Dockerfile, and
    /// the same inputs give the same hash.
    #[test]
    fn context_of_a_real_binary() {
        let me = std::env::current_exe().unwrap();
        let a = prepare("probe-test", &me, false).unwrap();
        let tar = a.context.to_tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            paths.contains(&"rootfs/app/probe-test".to_string()),
            "{paths:?}"
        );
        assert!(paths.iter().any(|p| p.contains("ld-linux")), "{paths:?}");
        assert!(paths.contains(&"Dockerfile".to_string()));
        let b = prepare("probe-test", &me, false).unwrap();
        assert_eq!(a.hash, b.hash);
        let c = prepare("probe-test", &me, true).unwrap();
        assert_ne!(a.hash, c.hash);
    }
}
