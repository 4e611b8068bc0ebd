//! FROM-scratch images for a single binary: the binary at `/app/<name>`, the shared libraries
//! `ldd` lists at the paths the loader looks for them, an empty `/data` owned by the unprivileged
//! user the container runs as, and for our services a Docker HEALTHCHECK that runs the binary's
//! own `--probe` mode (there is no shell or curl in the image).

use std::path::Path;

use super::context::Context;
use super::{BuildError, ldd};

/// Bumped whenever the layout or Dockerfile below changes, so old images count as stale.
const RECIPE_VERSION: &str = "scratch-v2";

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
    let io = |what: String| move |e: std::io::Error| BuildError::Io { what, source: e };
    // The root file system travels as one tar that `ADD` unpacks: one build step instead of a
    // COPY per directory, and the owners recorded in it are kept (COPY would make all root).
    let mut rootfs = Context::new();
    rootfs
        .add_file(&format!("app/{name}"), binary)
        .map_err(io(format!("read {}", binary.display())))?;
    for lib in ldd::libraries(binary)? {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_string();
        rootfs
            .add_file(&inside, &lib)
            .map_err(io(format!("read library {}", lib.display())))?;
    }
    rootfs.add_dir("tmp", 0o1777);
    rootfs.add_dir_owned("data", 0o755, RUN_AS);
    let tar = rootfs
        .to_tar()
        .map_err(io("write the root file system".to_string()))?;
    let mut context = Context::new();
    context.add_bytes("rootfs.tar", tar, 0o644);
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
         ADD rootfs.tar /\n\
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

    /// Our services get an exec-form probe health check; the broker's image has none.
    #[test]
    fn dockerfile_probe_only_when_asked() {
        let with = dockerfile("order-service", true);
        assert!(with.contains("FROM scratch"));
        assert!(with.contains("ENTRYPOINT [\"/app/order-service\"]"));
        assert!(with.contains("CMD [\"/app/order-service\", \"--probe\"]"));
        assert!(!dockerfile("nisshi", false).contains("HEALTHCHECK"));
    }

    /// The context holds the Dockerfile and a root file system tar with the binary, its
    /// libraries (loader included) and a `/data` owned by the run-as user; the same inputs give
    /// the same hash.
    #[test]
    fn context_of_a_real_binary() {
        let me = std::env::current_exe().unwrap();
        let a = prepare("probe-test", &me, false).unwrap();
        let outer = a.context.to_tar().unwrap();
        let mut archive = tar::Archive::new(outer.as_slice());
        let mut rootfs = Vec::new();
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if path == "rootfs.tar" {
                std::io::Read::read_to_end(&mut entry, &mut rootfs).unwrap();
            }
            names.push(path);
        }
        assert_eq!(names, vec!["Dockerfile", "rootfs.tar"]);
        let mut inner = tar::Archive::new(rootfs.as_slice());
        let entries: Vec<(String, u64)> = inner
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert!(
            entries.contains(&("app/probe-test".to_string(), 0)),
            "{entries:?}"
        );
        assert!(
            entries.contains(&("data/".to_string(), u64::from(RUN_AS))),
            "{entries:?}"
        );
        assert!(
            entries.iter().any(|(p, _)| p.contains("ld-linux")),
            "{entries:?}"
        );
        let b = prepare("probe-test", &me, false).unwrap();
        assert_eq!(a.hash, b.hash);
        let c = prepare("probe-test", &me, true).unwrap();
        assert_ne!(a.hash, c.hash);
    }
}
