//! Where the release binaries the end-to-end tests use are, whether they are older than their
//! sources, and a snapshot of them for one test run. A stale binary is still used (rebuilding is
//! install.sh's job, not a test's), but the test says so on stderr, because it then tests
//! yesterday's code.
//!
//! **Snapshot.** `platform up` images the binaries in its target directory. The target directory
//! is shared: a `cargo build --release` in another terminal during a test would change a binary
//! between two `up`s, and the second would rightly replace that service's container. So a test
//! hard-links (or copies) the binaries it uses into a directory of its own under the target
//! directory and points `platform` at it with `CARGO_TARGET_DIR`, which the CLI reads for exactly
//! this (cargo replaces a binary by unlinking it, so the link keeps the old content). The images
//! are the same: they are tagged by content, not by path.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The environment variable that names another `platform` binary (e.g. an installed one).
pub const PLATFORM_BIN_ENV: &str = "PLATFORM_BIN";

/// The command that builds what the tests need, as the README and install.sh run it.
pub const BUILD_COMMAND: &str = "cargo build --workspace --release";

/// The release `platform` binary: `$PLATFORM_BIN`, else `<target>/release/platform`.
pub fn platform() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(PLATFORM_BIN_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{PLATFORM_BIN_ENV}={} is not a file (unset it to use the release build)",
                path.display()
            );
        }
        return Ok(path);
    }
    let path = release_dir().join("platform");
    if !path.is_file() {
        bail!(
            "the end-to-end tests run the release `platform` binary, and {} does not exist: \
             run `./install.sh` or `{BUILD_COMMAND}` first",
            path.display()
        );
    }
    Ok(path)
}

/// The release binaries one test run uses, frozen when it started (see the module docs).
#[derive(Debug)]
pub struct Snapshot {
    /// `<dir>/release/` holds the binaries; removed when dropped.
    dir: tempfile::TempDir,
}

impl Snapshot {
    /// Links or copies `platform` and `services` from `<target>/release` into a new directory
    /// under the target directory. Every one must exist: `platform up` would otherwise run
    /// cargo, and a test cannot build the workspace in release mode within its time.
    pub fn take(platform: &Path, services: &[String]) -> anyhow::Result<Self> {
        let target = testkit::target_dir();
        std::fs::create_dir_all(&target).with_context(|| format!("create {}", target.display()))?;
        remove_dead_snapshots(&target);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SNAPSHOT_PREFIX}{}-", std::process::id()))
            .tempdir_in(&target)
            .context("make the binary snapshot directory")?;
        let release = dir.path().join("release");
        std::fs::create_dir_all(&release)?;
        let mut missing = Vec::new();
        let sources = std::iter::once(("platform".to_string(), platform.to_path_buf()))
            .chain(services.iter().map(|s| (s.clone(), release_dir().join(s))));
        for (name, from) in sources {
            if !from.is_file() {
                missing.push(from.display().to_string());
                continue;
            }
            let to = release.join(&name);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)
                    .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
            }
        }
        if !missing.is_empty() {
            bail!(
                "the end-to-end tests need the release binaries, and these do not exist: {}; \
                 run `./install.sh` or `{BUILD_COMMAND}` first",
                missing.join(", ")
            );
        }
        Ok(Self { dir })
    }

    /// The directory to give `platform` as `CARGO_TARGET_DIR`.
    pub fn target_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The frozen `platform` binary.
    pub fn platform(&self) -> PathBuf {
        self.dir.path().join("release").join("platform")
    }
}

/// Snapshot directories are `<target>/e2e-binaries-<pid>-<random>`.
const SNAPSHOT_PREFIX: &str = "e2e-binaries-";

/// Removes snapshots of test processes that are gone (killed before their snapshot was dropped).
fn remove_dead_snapshots(target: &Path) {
    let Ok(entries) = std::fs::read_dir(target) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(SNAPSHOT_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `<target>/release`.
pub fn release_dir() -> PathBuf {
    testkit::target_dir().join("release")
}

/// The binaries `stacks/dev.toml` images (`build = { binary = "..." }`), read from the file so a
/// new service needs no change here.
pub fn stack_binaries(stack_file: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(stack_file)
        .with_context(|| format!("read {}", stack_file.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parse {}", stack_file.display()))?;
    let mut names: Vec<String> = doc
        .get("services")
        .and_then(|s| s.as_table())
        .into_iter()
        .flat_map(|services| services.values())
        .filter_map(|s| s.get("build")?.get("binary")?.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The release binaries (`platform` and the stack's services) that are missing or older than one
/// of their sources ([`testkit::stale_source`]: the files cargo's dep-info lists, else the newest
/// file of their crate, the kit or the events crate), each with the reason.
pub fn stale(root: &Path, services: &[String]) -> Vec<String> {
    let shared = [root.join("services/kit"), root.join("services/events")];
    let mut checks: Vec<(String, PathBuf)> = vec![("platform".to_string(), root.join("cli"))];
    checks.extend(
        services
            .iter()
            .map(|s| (s.clone(), root.join("services").join(s))),
    );
    let mut out = Vec::new();
    for (name, crate_dir) in checks {
        let binary = release_dir().join(&name);
        if !binary.is_file() {
            out.push(format!(
                "{name}: no release binary (`platform up` will run cargo)"
            ));
            continue;
        }
        if let Some(file) =
            testkit::stale_source(&binary, &[crate_dir.as_path(), &shared[0], &shared[1]])
        {
            out.push(format!(
                "{name}: {} is older than {}",
                binary.display(),
                file.display()
            ));
        }
    }
    out
}

/// Prints [`stale`]'s findings to stderr once per process.
pub fn warn_if_stale(root: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let services = stack_binaries(&root.join("stacks/dev.toml")).unwrap_or_default();
        let stale = stale(root, &services);
        if !stale.is_empty() {
            eprintln!(
                "warning: the end-to-end test uses release binaries older than their sources \
                 (`{BUILD_COMMAND}` refreshes them):"
            );
            for line in stale {
                eprintln!("  {line}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dev stack's binaries are read from the file: the six services and both stand-ins.
    #[test]
    fn reads_the_stack_binaries() {
        let names = stack_binaries(&testkit::workspace_root().join("stacks/dev.toml")).unwrap();
        for expected in [
            "api-gateway",
            "discovery-server",
            "identity-provider",
            "inventory-service",
            "notification-service",
            "order-service",
            "product-service",
            "trace-collector",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
        }
    }
}
