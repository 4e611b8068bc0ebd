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

/// The path of a workspace binary built into `target/debug` or `target/release`, checked against
/// its sources.
///
/// Of the builds that are up to date with their sources ([`stale_source`]), the more recently built
/// one wins, so a test uses what the developer just compiled. When every build is older than a
/// source file, this fails with the command that rebuilds it: a `-p` test run of another package
/// does not rebuild this binary, and would otherwise test old code. The binary is not built here:
/// cargo cannot be run from inside a test without racing the build that started it.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let target = target_dir();
    let candidates = [
        (target.join("debug").join(name), ""),
        (target.join("release").join(name), " --release"),
    ];
    let mut built: Vec<(SystemTime, &PathBuf, &str)> = candidates
        .iter()
        .filter_map(|(path, profile)| Some((modified_file(path)?, path, *profile)))
        .collect();
    // Newest first.
    built.sort_by_key(|(modified, _, _)| std::cmp::Reverse(*modified));
    let crate_dirs = local_crate_dirs(name);
    let crate_dirs: Vec<&Path> = crate_dirs.iter().map(PathBuf::as_path).collect();
    let mut stale = None;
    for (_, path, profile) in &built {
        match stale_source(path, &crate_dirs) {
            None => return Ok((*path).clone()),
            Some(source_file) => {
                stale.get_or_insert(Error::Stale {
                    binary: (*path).clone(),
                    source_file,
                    rebuild: format!("cargo build --bin {name}{profile}"),
                });
            }
        }
    }
    Err(stale.unwrap_or_else(|| Error::NotFound {
        what: format!(
            "binary `{name}` in {} or {}",
            candidates[0].0.display(),
            candidates[1].0.display()
        ),
        hint: format!("build it first, e.g. `cargo build --bin {name}`"),
    }))
}

/// A source of `binary` that changed after it was built, or was removed since; `None` when the
/// binary is up to date (or missing: that is the caller's error).
///
/// The sources are the files cargo lists in the binary's dep-info file (`<binary>.d` beside it,
/// written by `cargo build`: every source file of the binary's crate and of each crate it depends
/// on, exactly what cargo rebuilds it for). Without one (a binary that a test build made, or one
/// copied elsewhere), the newest `Cargo.toml` or file under `src/` of `crate_dirs` counts
/// instead ([`bin_path`] passes the binary's crate and its workspace path dependencies).
pub fn stale_source(binary: &Path, crate_dirs: &[&Path]) -> Option<PathBuf> {
    let built = modified_file(binary)?;
    let sources: Vec<PathBuf> = match std::fs::read_to_string(binary.with_extension("d")) {
        // Relative entries (rustc's own dep-info) are relative to the workspace root.
        Ok(dep_info) => dep_info_sources(&dep_info)
            .into_iter()
            .map(|file| workspace_root().join(file))
            .collect(),
        Err(_) => crate_dirs
            .iter()
            .filter_map(|dir| newest_source(dir))
            .map(|(_, file)| file)
            .collect(),
    };
    sources
        .into_iter()
        // A listed directory (sqlx's `migrate!` tracks its migrations directory) counts by its
        // own modification time, as cargo counts it.
        .find(|file| {
            std::fs::metadata(file)
                .and_then(|m| m.modified())
                .map_or(true, |m| m > built)
        })
}

/// The directories of the workspace crate that builds the binary `bin` and of every workspace
/// crate it depends on through `path` dependencies (directly or through
/// `[workspace.dependencies]`), transitively; dev-dependencies do not count. Empty when the
/// manifests cannot be read or no member builds `bin`.
fn local_crate_dirs(bin: &str) -> Vec<PathBuf> {
    let root = workspace_root();
    let read = |dir: &Path| -> Option<toml::Table> {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .ok()?
            .parse()
            .ok()
    };
    let Some(workspace) = read(root) else {
        return Vec::new();
    };
    let ws = workspace.get("workspace").and_then(toml::Value::as_table);
    let shared = ws
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table);
    let members = ws
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str);
    let builds_bin = |dir: &Path, manifest: &toml::Table| {
        let package = manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str);
        let named = manifest
            .get("bin")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .any(|b| b.get("name").and_then(toml::Value::as_str) == Some(bin));
        named || (package == Some(bin) && dir.join("src/main.rs").is_file())
    };
    let Some(start) = members
        .map(|m| root.join(m))
        .find(|dir| read(dir).is_some_and(|m| builds_bin(dir, &m)))
    else {
        return Vec::new();
    };
    let mut dirs = vec![start.canonicalize().unwrap_or(start)];
    let mut next = 0;
    while let Some(dir) = dirs.get(next).cloned() {
        next += 1;
        let Some(manifest) = read(&dir) else { continue };
        for section in ["dependencies", "build-dependencies"] {
            let deps = manifest.get(section).and_then(toml::Value::as_table);
            for (name, spec) in deps.into_iter().flatten() {
                let path = match spec.get("path").and_then(toml::Value::as_str) {
                    Some(path) => Some(dir.join(path)),
                    None if spec.get("workspace").and_then(toml::Value::as_bool) == Some(true) => {
                        shared
                            .and_then(|s| s.get(name))
                            .and_then(|s| s.get("path"))
                            .and_then(toml::Value::as_str)
                            .map(|path| root.join(path))
                    }
                    None => None,
                };
                if let Some(path) = path.and_then(|p| p.canonicalize().ok())
                    && !dirs.contains(&path)
                {
                    dirs.push(path);
                }
            }
        }
    }
    dirs
}

/// The files a make-style dep-info file (`target: dep dep ...`, spaces in paths escaped) lists.
fn dep_info_sources(dep_info: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in dep_info.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ' ' => {
                    if !current.is_empty() {
                        out.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                c => current.push(c),
            }
        }
        if !current.is_empty() {
            out.push(PathBuf::from(current));
        }
    }
    out
}

/// The newest `Cargo.toml` or file under `src/` of a crate.
pub fn newest_source(crate_dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut consider = |path: PathBuf| {
        if let Some(m) = modified_file(&path)
            && newest.as_ref().is_none_or(|(n, _)| m > *n)
        {
            newest = Some((m, path));
        }
    };
    consider(crate_dir.join("Cargo.toml"));
    let mut dirs = vec![crate_dir.join("src")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                consider(path);
            }
        }
    }
    newest
}

/// When the file at `path` was last modified; `None` when it is not a file.
fn modified_file(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.modified().unwrap_or(SystemTime::UNIX_EPOCH))
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

    /// Sets a file's modification time `secs` seconds after `base`.
    fn touch(path: &Path, base: SystemTime, secs: u64) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(base + std::time::Duration::from_secs(secs))
            .unwrap();
    }

    /// A binary older than one of the files its dep-info lists, or whose listed source is gone, is
    /// stale, naming that file; one newer than all of them is not.
    #[test]
    fn stale_source_reads_dep_info() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, src, spaced) = (
            dir.path().join("svc"),
            dir.path().join("main.rs"),
            dir.path().join("a dir/lib.rs"),
        );
        std::fs::create_dir_all(spaced.parent().unwrap()).unwrap();
        for f in [&bin, &src, &spaced] {
            std::fs::write(f, "").unwrap();
        }
        let escaped = spaced.display().to_string().replace(' ', "\\ ");
        std::fs::write(
            dir.path().join("svc.d"),
            format!(
                "{}: {} {escaped}\n\n# env-dep:X=1\n",
                bin.display(),
                src.display()
            ),
        )
        .unwrap();
        let base = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        touch(&src, base, 0);
        touch(&spaced, base, 1);
        touch(&bin, base, 2);
        assert_eq!(stale_source(&bin, &[]), None);
        touch(&spaced, base, 3);
        assert_eq!(stale_source(&bin, &[]), Some(spaced.clone()));
        touch(&spaced, base, 1);
        std::fs::remove_file(&src).unwrap();
        assert_eq!(stale_source(&bin, &[]), Some(src));
    }

    /// Without dep-info, the newest file of the given crate directories counts.
    #[test]
    fn stale_source_without_dep_info_uses_crate_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let krate = dir.path().join("krate");
        std::fs::create_dir_all(krate.join("src/deep")).unwrap();
        let (bin, lib) = (dir.path().join("bin"), krate.join("src/deep/lib.rs"));
        std::fs::write(&bin, "").unwrap();
        std::fs::write(&lib, "").unwrap();
        std::fs::write(krate.join("Cargo.toml"), "").unwrap();
        let base = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        touch(&krate.join("Cargo.toml"), base, 0);
        touch(&lib, base, 1);
        touch(&bin, base, 2);
        assert_eq!(stale_source(&bin, &[&krate]), None);
        touch(&lib, base, 3);
        assert_eq!(stale_source(&bin, &[&krate]), Some(lib.clone()));
        assert_eq!(newest_source(&krate).unwrap().1, lib);
        assert!(newest_source(&dir.path().join("nothing")).is_none());
        assert_eq!(stale_source(&dir.path().join("no-binary"), &[&krate]), None);
    }

    /// This test binary's own build is up to date with its sources (cargo just built it), and the
    /// error for a stale one carries the rebuild command.
    #[test]
    fn stale_error_names_the_rebuild_command() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(stale_source(&exe, &[]), None, "{}", exe.display());
        let err = Error::Stale {
            binary: "target/debug/svc".into(),
            source_file: "services/svc/src/main.rs".into(),
            rebuild: "cargo build --bin svc".into(),
        };
        assert_eq!(
            err.to_string(),
            "target/debug/svc is older than its source services/svc/src/main.rs \
             (rebuild it: `cargo build --bin svc`)"
        );
    }

    /// A workspace binary's crate dirs are its own crate and its path dependencies, transitively,
    /// without dev-dependencies.
    #[test]
    fn local_crate_dirs_follow_path_dependencies() {
        let root = workspace_root().canonicalize().unwrap();
        let dirs = local_crate_dirs("order-service");
        let rel: Vec<_> = dirs
            .iter()
            .map(|d| d.strip_prefix(&root).unwrap())
            .collect();
        assert!(rel[0].ends_with("services/order-service"), "{rel:?}");
        for dep in ["services/kit", "services/events", "crates/circuit-breaker"] {
            assert!(rel.iter().any(|d| d.ends_with(dep)), "{dep}: {rel:?}");
        }
        // testkit is a dev-dependency only.
        assert!(
            !rel.iter().any(|d| d.ends_with("services/testkit")),
            "{rel:?}"
        );
        assert_eq!(local_crate_dirs("platform")[0], root.join("cli"));
        assert!(local_crate_dirs("no-such-binary").is_empty());
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
