//! Where the project's files are: the repository root (which holds `stacks/`, the cargo target
//! directory and `.tools/`), found once so every command resolves paths the same way.

use std::path::{Path, PathBuf};

/// The project checkout the CLI works on.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// A workspace rooted at `root` (tests use temporary roots).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Finds the root: `$PLATFORM_ROOT`, else the nearest ancestor of the current directory that
    /// holds `stacks/`, else the checkout this binary was compiled from (a `cargo run` from
    /// anywhere). Returns the directories searched when nothing fits.
    pub fn locate() -> Result<Self, Vec<PathBuf>> {
        if let Some(root) = std::env::var_os("PLATFORM_ROOT") {
            return Ok(Self::at(root));
        }
        let mut searched = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            for dir in cwd.ancestors() {
                if dir.join("stacks").is_dir() {
                    return Ok(Self::at(dir));
                }
                searched.push(dir.to_path_buf());
            }
        }
        let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if compiled.join("stacks").is_dir() {
            return Ok(Self::at(compiled.canonicalize().unwrap_or(compiled)));
        }
        searched.push(compiled);
        Err(searched)
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `stacks/`, where `--stack NAME` looks for `NAME.toml`.
    pub fn stacks_dir(&self) -> PathBuf {
        self.root.join("stacks")
    }

    /// Cargo's target directory (`$CARGO_TARGET_DIR` or `target/`).
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }

    /// Where install.sh puts tools it installs for the project (the broker: nisshi, tansu).
    pub fn tools_bin_dir(&self) -> PathBuf {
        self.root.join(".tools").join("bin")
    }
}
