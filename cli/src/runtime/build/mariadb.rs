//! The MariaDB image, built without any registry: a Debian root file system made with
//! `debootstrap` from Debian's packages, imported into Docker as a base image, plus a small
//! build on top that adds the entrypoint (`mariadb-entrypoint.sh`: initialise the data
//! directory, create one database and user per service from the environment).
//!
//! Both images are tagged by the hash of their recipe, so debootstrap (the slow part, about a
//! minute and a half with a warm package cache) runs only when the recipe changes; the
//! downloaded packages are kept in a cache directory across rebuilds too.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::context::{Context, hex};
use super::{BuildError, Progress, labels_for};
use crate::runtime::Runtime;

/// Debian release of the root file system.
pub const SUITE: &str = "bookworm";
/// Packages installed on top of debootstrap's minimal base.
pub const PACKAGES: &[&str] = &["mariadb-server", "mariadb-client"];
/// Paths emptied after debootstrap: package caches and docs nobody reads in a container, and
/// the data directory the package's postinst created (the entrypoint initialises its own on
/// the volume).
const PRUNE: &[&str] = &[
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/lib/mysql",
];
/// Bumped when the base recipe's steps change.
const BASE_VERSION: &str = "mariadb-base-v1";
/// Bumped when the top layer's Dockerfile changes shape.
const TOP_VERSION: &str = "mariadb-v1";

/// The entrypoint script baked into the image.
pub const ENTRYPOINT: &str = include_str!("mariadb-entrypoint.sh");

/// Repository names of the two images.
pub const BASE_REPO: &str = "platform/mariadb-base";
pub const REPO: &str = "platform/mariadb";

/// The hash of the base recipe (what debootstrap makes).
pub fn base_hash() -> String {
    let mut h = Sha256::new();
    for part in [BASE_VERSION, SUITE, "minbase"]
        .iter()
        .chain(PACKAGES)
        .chain(PRUNE)
    {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// The base image's tag.
pub fn base_tag() -> String {
    format!("{BASE_REPO}:{}", &base_hash()[..12])
}

/// The top layer's build context (Dockerfile and entrypoint) for a given base tag.
pub fn context(base: &str) -> Context {
    let mut ctx = Context::new();
    ctx.add_bytes("Dockerfile", dockerfile(base), 0o644);
    ctx.add_bytes("platform-entrypoint.sh", ENTRYPOINT, 0o755);
    ctx
}

/// The final image's content hash (covers the base recipe through the base tag).
pub fn hash() -> String {
    context(&base_tag()).content_hash(TOP_VERSION)
}

/// The final image's tag.
pub fn tag() -> String {
    format!("{REPO}:{}", &hash()[..12])
}

fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8\n\
         COPY platform-entrypoint.sh /usr/local/bin/platform-entrypoint.sh\n\
         VOLUME [\"/var/lib/mysql\"]\n\
         EXPOSE 3306\n\
         STOPSIGNAL SIGTERM\n\
         ENTRYPOINT [\"/usr/local/bin/platform-entrypoint.sh\"]\n\
         HEALTHCHECK --interval=1s --timeout=3s --start-period=1s --retries=120 \
         CMD [\"/usr/bin/mariadb-admin\", \"--protocol=tcp\", \"--host=127.0.0.1\", \"--port=3306\", \"--user=healthcheck\", \"--connect-timeout=2\", \"ping\"]\n"
    )
}

/// Makes the base image with debootstrap unless it exists. Needs root (debootstrap chroots).
pub async fn ensure_base(rt: &Runtime, progress: &dyn Progress) -> Result<String, BuildError> {
    let tag = base_tag();
    if rt.image_exists(&tag).await? {
        return Ok(tag);
    }
    check_root()?;
    let hash = base_hash();
    // Another process (a parallel test, a second terminal) may be making the same base: wait
    // for it rather than debootstrapping into the same directory, then look again.
    let _lock = lock(&hash[..12]).await?;
    if rt.image_exists(&tag).await? {
        return Ok(tag);
    }
    let dir = std::env::temp_dir().join(format!("platform-mariadb-root-{}", &hash[..12]));
    let result = async {
        debootstrap(&dir, progress).await?;
        prune(&dir).await?;
        import(rt, &dir, &hash, progress).await
    }
    .await;
    progress.status("removing the temporary root file system");
    let dir_clone = dir.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir_clone)).await;
    result.map(|()| tag)
}

/// An exclusive lock on a file named after the base recipe, held until dropped.
async fn lock(short_hash: &str) -> Result<std::fs::File, BuildError> {
    let path = std::env::temp_dir().join(format!("platform-mariadb-base-{short_hash}.lock"));
    let io = |e: std::io::Error| BuildError::Io {
        what: format!("lock {}", path.display()),
        source: e,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)
}

fn check_root() -> Result<(), BuildError> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if uid != 0 {
        return Err(BuildError::NeedsRoot {
            step: "debootstrap (building the MariaDB base image)".to_string(),
        });
    }
    Ok(())
}

/// Where downloaded .deb files are kept between base builds.
fn package_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("platform").join("debootstrap")
}

async fn debootstrap(dir: &std::path::Path, progress: &dyn Progress) -> Result<(), BuildError> {
    if dir.exists() {
        // A half-made root from an interrupted build.
        let d = dir.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(d)).await;
    }
    let cache = package_cache();
    std::fs::create_dir_all(&cache).map_err(|e| BuildError::Io {
        what: format!("create {}", cache.display()),
        source: e,
    })?;
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(SUITE)
        .arg(dir);
    // The mirror defaults to debootstrap's own; a local mirror or proxy can be named here.
    if let Ok(mirror) = std::env::var("PLATFORM_DEBIAN_MIRROR") {
        cmd.arg(mirror);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    progress.status("debootstrap: starting");
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BuildError::ToolMissing {
                tool: "debootstrap".to_string(),
                package: "debootstrap".to_string(),
            }
        } else {
            BuildError::Io {
                what: "start debootstrap".to_string(),
                source: e,
            }
        }
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut tail: Vec<String> = Vec::new();
    let mut lines = futures::stream::select(
        lines_of(stdout.map(BufReader::new)),
        lines_of(stderr.map(BufReader::new)),
    );
    let (mut retrieved, mut unpacked, mut configured) = (0, 0, 0);
    while let Some(line) = lines.next().await {
        progress.output(&line);
        if let Some(what) = line.strip_prefix("I: ") {
            if what.starts_with("Retrieving ") {
                retrieved += 1;
            } else if what.starts_with("Unpacking ") || what.starts_with("Extracting ") {
                unpacked += 1;
            } else if what.starts_with("Configuring ") {
                configured += 1;
            }
            progress.status(&format!(
                "debootstrap: {retrieved} fetched, {unpacked} unpacked, {configured} configured — {what}"
            ));
        }
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    let status = child.wait().await.map_err(|e| BuildError::Io {
        what: "wait for debootstrap".to_string(),
        source: e,
    })?;
    if !status.success() {
        return Err(BuildError::Tool {
            tool: "debootstrap".to_string(),
            status: status.to_string(),
            output: tail.join("\n"),
        });
    }
    Ok(())
}

/// The lines a child process writes, as a stream that ends when the pipe closes.
pub(super) fn lines_of<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(
    reader: Option<R>,
) -> futures::stream::BoxStream<'static, String> {
    match reader {
        None => futures::stream::empty().boxed(),
        Some(r) => futures::stream::unfold(r.lines(), |mut lines| async move {
            match lines.next_line().await {
                Ok(Some(line)) => Some((line, lines)),
                _ => None,
            }
        })
        .boxed(),
    }
}

async fn prune(dir: &std::path::Path) -> Result<(), BuildError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(), BuildError> {
        for rel in PRUNE {
            let path = dir.join(rel);
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let r = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| BuildError::Io {
                    what: format!("prune {}", p.display()),
                    source: e,
                })?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| BuildError::Io {
        what: "prune the root file system".to_string(),
        source: std::io::Error::other(e),
    })?
}

/// Streams the root directory as a tar (GNU tar keeps owners, modes, links and devices
/// exactly) into Docker's import endpoint (`POST /images/create?fromSrc=-`).
async fn import(
    rt: &Runtime,
    dir: &std::path::Path,
    hash: &str,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    progress.status("importing the root file system into Docker");
    let mut child = Command::new("tar")
        .arg("--numeric-owner")
        .arg("--exclude=./proc/*")
        .arg("--exclude=./sys/*")
        .arg("--exclude=./dev/*")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg("-")
        .arg(".")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BuildError::Io {
            what: "start tar".to_string(),
            source: e,
        })?;
    let Some(stdout) = child.stdout.take() else {
        return Err(BuildError::Io {
            what: "read tar output".to_string(),
            source: std::io::Error::other("no stdout"),
        });
    };
    // Bytes handed to Docker so far: the body stream counts, the progress ticker reads.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(stdout, 1 << 20).inspect(move |chunk| {
        if let Ok(c) = chunk {
            counter.fetch_add(c.len() as u64, Ordering::Relaxed);
        }
    });
    let short = &hash[..12];
    let mut changes: Vec<String> = labels_for("mariadb-base", hash, "mariadb-base")
        .into_iter()
        .map(|(k, v)| format!("LABEL {k}={v}"))
        .collect();
    changes.sort();
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(BASE_REPO)
        .tag(short)
        .changes(changes)
        .build();
    let docker = rt.docker().clone().with_timeout(Duration::from_secs(3600));
    let mut stream = docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            item = stream.next() => match item {
                None => break,
                Some(Ok(info)) => {
                    if let Some(status) = info.status {
                        progress.output(&status);
                    }
                }
                Some(Err(e)) => {
                    return Err(BuildError::Engine {
                        image: format!("{BASE_REPO}:{short}"),
                        message: e.to_string(),
                    });
                }
            },
            _ = ticker.tick() => {
                let mb = sent.load(Ordering::Relaxed) / (1 << 20);
                progress.status(&format!("importing the root file system into Docker: {mb} MiB sent"));
            }
        }
    }
    let status = child.wait().await.map_err(|e| BuildError::Io {
        what: "wait for tar".to_string(),
        source: e,
    })?;
    if !status.success() {
        return Err(BuildError::Tool {
            tool: "tar".to_string(),
            status: status.to_string(),
            output: String::new(),
        });
    }
    let tag = format!("{BASE_REPO}:{short}");
    if !rt.image_exists(&tag).await? {
        return Err(BuildError::Engine {
            image: tag,
            message: "the import finished but the image is missing".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tags are stable for a given recipe and the final one depends on the base.
    #[test]
    fn tags_follow_the_recipe() {
        assert_eq!(base_tag(), base_tag());
        assert!(base_tag().starts_with("platform/mariadb-base:"));
        assert!(tag().starts_with("platform/mariadb:"));
        let a = context("platform/mariadb-base:aaaa").content_hash(TOP_VERSION);
        let b = context("platform/mariadb-base:bbbb").content_hash(TOP_VERSION);
        assert_ne!(a, b);
    }

    /// The Dockerfile uses exec forms only and names the entrypoint it copies.
    #[test]
    fn dockerfile_shape() {
        let d = dockerfile("base:1");
        assert!(d.starts_with("FROM base:1\n"));
        assert!(d.contains("ENTRYPOINT [\"/usr/local/bin/platform-entrypoint.sh\"]"));
        assert!(d.contains("HEALTHCHECK") && d.contains("CMD [\"/usr/bin/mariadb-admin\""));
        assert!(d.contains("VOLUME [\"/var/lib/mysql\"]"));
    }
}
