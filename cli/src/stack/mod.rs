//! Stack files (`stacks/*.toml`): where they are, the model, validation with diagnostics that
//! name file, line and key, and the dependency order `up` starts services in.
//!
//! A stack file looks like this (see `stacks/dev.toml` for a complete one):
//!
//! ```toml
//! [stack]
//! name = "dev"
//!
//! [services.order-service]
//! build = { binary = "order-service" }   # or image = "..." / build = { recipe = "mariadb" }
//! instances = 1
//! port = 8082
//! env = { PORT = "${self.port}", DATABASE_URL = "mysql://orders:orders@${mariadb}:3306/orders" }
//! depends_on = { discovery-server = "healthy", mariadb = "healthy" }
//! health = { probe = true, interval = "10s", start_interval = "500ms", start_period = "2m", retries = 3 }
//! volumes = ["orders-data:/data"]
//! resources = { memory = "128m", cpus = 0.5 }
//! ```

pub mod diagnostic;
pub mod env;
pub mod model;
pub mod order;
mod raw;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Severity};
pub use model::{
    Check, Condition, Health, ImageSource, Mount, Recipe, Restart, Service, Stack, network_name,
};
pub use validate::Report;

use crate::paths::Workspace;

/// Failures to find, read or validate a stack file.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// `--stack NAME` named no file.
    #[error("no stack `{name}`: {} does not exist", path.display())]
    NotFound {
        /// The name or path given.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `--stack` named a directory.
    #[error("`{}` is a directory, not a stack file", path.display())]
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The project root (with `stacks/`) could not be found.
    #[error("cannot find the project's stacks/ directory (looked in {})", searched.join(", "))]
    NoWorkspace {
        /// Directories searched.
        searched: Vec<String>,
    },
    /// The file exists but cannot be read.
    // The cause is in the message, not a `source`: printed once, not again by the error chain.
    #[error("cannot read stack file {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file has errors; each diagnostic names its line and key.
    #[error("stack file {file} is invalid:\n{}", diagnostic::render(diagnostics))]
    Invalid {
        /// The file as shown to the user.
        file: String,
        /// Errors and warnings.
        diagnostics: Vec<Diagnostic>,
    },
}

impl StackError {
    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            StackError::NotFound { .. } => Some(
                "`--stack` takes a name from stacks/ (dev, full) or a path to a .toml file"
                    .to_string(),
            ),
            StackError::NoWorkspace { .. } => Some(
                "run platform inside the project checkout, or set PLATFORM_ROOT to it".to_string(),
            ),
            StackError::Invalid { .. } => Some(
                "`platform stack validate` checks a stack file without starting anything"
                    .to_string(),
            ),
            StackError::IsDirectory { .. } => Some(
                "`--stack` takes a name from stacks/ (dev, full) or a path to a .toml file"
                    .to_string(),
            ),
            StackError::Read { .. } => None,
        }
    }
}

/// A stack file located on disk, with the name shown in diagnostics.
#[derive(Debug, Clone)]
pub struct StackFile {
    /// Absolute or workspace-relative path to read.
    pub path: PathBuf,
    /// How diagnostics name it (relative to the current directory when possible).
    pub display: String,
}

impl StackFile {
    /// Resolves `--stack`: a path when it contains `/` or ends in `.toml`, else
    /// `stacks/<name>.toml` in the workspace.
    pub fn resolve(name_or_path: &str) -> Result<Self, StackError> {
        let path = if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            PathBuf::from(name_or_path)
        } else {
            let ws = Workspace::locate().map_err(|searched| StackError::NoWorkspace {
                searched: searched.iter().map(|p| p.display().to_string()).collect(),
            })?;
            ws.stacks_dir().join(format!("{name_or_path}.toml"))
        };
        if path.is_dir() {
            return Err(StackError::IsDirectory { path });
        }
        if !path.is_file() {
            return Err(StackError::NotFound {
                name: name_or_path.to_string(),
                path,
            });
        }
        Ok(Self::at(path))
    }

    /// A stack file at a known path.
    pub fn at(path: PathBuf) -> Self {
        let display = std::env::current_dir()
            .ok()
            .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| path.clone())
            .display()
            .to_string();
        Self { path, display }
    }

    /// Reads and validates the file, returning every diagnostic.
    pub fn check(&self) -> Result<Report, StackError> {
        let text = std::fs::read_to_string(&self.path).map_err(|cause| StackError::Read {
            path: self.path.clone(),
            cause,
        })?;
        Ok(validate::validate(&text, &self.path, &self.display))
    }

    /// Reads and validates the file, failing on any error. Warnings go to stderr: they do not
    /// stop anything but the user should see them.
    pub fn load(&self) -> Result<Stack, StackError> {
        let report = self.check()?;
        match report.stack {
            Some(stack) => {
                for d in &report.diagnostics {
                    eprintln!("{d}");
                }
                Ok(stack)
            }
            None => Err(StackError::Invalid {
                file: self.display.clone(),
                diagnostics: report.diagnostics,
            }),
        }
    }
}

impl Stack {
    /// The dependency graph of the whole stack.
    pub fn graph(&self) -> order::Graph {
        self.services
            .iter()
            .map(|(n, s)| (n.clone(), s.depends_on.keys().cloned().collect()))
            .collect()
    }

    /// Start waves for the whole stack. Validation has ruled out cycles, so this cannot fail
    /// on a loaded stack; a cycle would show as one last wave holding the rest.
    pub fn waves(&self) -> Vec<Vec<String>> {
        order::waves(&self.graph()).unwrap_or_else(|cycle| vec![cycle])
    }

    /// Start waves for `selected` services and their dependencies.
    pub fn waves_for(&self, selected: &[String]) -> Vec<Vec<String>> {
        let keep = order::with_dependencies(&self.graph(), selected);
        self.waves()
            .into_iter()
            .map(|w| {
                w.into_iter()
                    .filter(|s| keep.contains(s))
                    .collect::<Vec<_>>()
            })
            .filter(|w| !w.is_empty())
            .collect()
    }

    /// The service called `name`, or an error listing the services.
    pub fn service(&self, name: &str) -> crate::Result<&Service> {
        self.services
            .get(name)
            .ok_or_else(|| crate::Error::UnknownService {
                name: name.to_string(),
                stack: self.name.clone(),
                known: self.service_names().join(", "),
            })
    }
}
