//! Where things are: the workspace, its target directory, built binaries and external programs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::{Error, Result};

/// The workspace root (the directory whose `Cargo.toml` has `[workspace]`).
///
/// Found from this crate's manifest directory at compile time, so it is right whatever the current
/// directory of the test process is (cargo runs integration tests in the package directory).
pub fn workspace_root() -> &'static Path {
    /// Computed once: it cannot change while the process runs.
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest_dir
            .ancestors()
            .find(|dir| {
                std::fs::read_to_string(dir.join("Cargo.toml"))
                    .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
            })
            .unwrap_or(manifest_dir)
            .to_path_buf()
    })
}

/// The cargo target directory: `$CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The path of a workspace binary built into `target/debug` or `target/release`.
///
/// When both exist, the more recently built one wins, so a test uses what the developer just
/// compiled. The binary is not built here: cargo cannot be run from inside a test without racing
/// the build that started it. Build it first (`cargo build -p <package>`).
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let target = target_dir();
    let candidates = [
        target.join("debug").join(name),
        target.join("release").join(name),
    ];
    candidates
        .iter()
        .filter_map(|path| {
            let modified = std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())?
                .modified()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Some((modified, path))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, path)| path.clone())
        .ok_or_else(|| Error::NotFound {
            what: format!(
                "binary `{name}` in {} or {}",
                candidates[0].display(),
                candidates[1].display()
            ),
            hint: format!("build it first, e.g. `cargo build --bin {name}`"),
        })
}

/// Finds `name` in the directories of `$PATH`, like `command -v`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Finds an external program: first the environment variable `env_var`, then `fixed` locations,
/// then `$PATH`. The variable wins even when it points nowhere, so a typo fails loudly instead of
/// silently using another build.
pub(crate) fn find_program(
    name: &str,
    env_var: &str,
    fixed: &[PathBuf],
    hint: &str,
) -> Result<PathBuf> {
    if let Some(value) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::NotFound {
                what: format!("{name} at {env_var}={}", path.display()),
                hint: format!("point {env_var} at an executable or unset it"),
            })
        };
    }
    fixed
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .or_else(|| find_in_path(name))
        .ok_or_else(|| Error::NotFound {
            what: format!(
                "{name} (looked at ${env_var}, {}, $PATH)",
                fixed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: hint.to_string(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs as root (mariadbd refuses to run as root without `--user=root`, and
/// warns when `--user` is given by anyone else). Read from `/proc/self`, which belongs to the
/// effective user, to stay free of unsafe libc calls.
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A file-name-safe form of `s` (versions such as `10.11.19-MariaDB-0+deb12u1` become directory names).
pub(crate) fn sanitize(s: &OsStr) -> String {
    s.to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace root is the directory holding the workspace manifest, not this crate's.
    #[test]
    fn workspace_root_has_workspace_manifest() {
        let root = workspace_root();
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(toml.contains("[workspace]"));
        assert!(root.join("services/testkit/Cargo.toml").is_file());
    }

    /// A missing binary is reported with a hint, not as a bare I/O error.
    #[test]
    fn bin_path_reports_missing_binary() {
        let err = bin_path("no-such-binary-for-testkit").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("cargo build"));
    }

    /// `$PATH` lookup finds a standard program and ignores unknown ones.
    #[test]
    fn path_lookup() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-for-testkit").is_none());
    }

    /// Versions become safe directory names.
    #[test]
    fn sanitize_keeps_safe_chars() {
        assert_eq!(
            sanitize(OsStr::new("10.11.19-MariaDB-0+deb12u1")),
            "10.11.19-MariaDB-0_deb12u1"
        );
    }
}
