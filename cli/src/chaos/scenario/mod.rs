//! Resilience scenarios: TOML files under `stacks/scenarios/` that say what normal looks like
//! (the steady state), what to do (load, inject, heal, wait, scale, wait until) and what must
//! hold meanwhile and after (assertions that read the live system), in the spirit of the Chaos
//! Toolkit's experiments and Chaos Monkey's assaults.
//!
//! - [`parse`]: the file format and its validation (file, line and key for every error; a bad
//!   file stops everything before anything is injected).
//! - [`model`]: the validated scenario.
//! - [`run`]: the runner (steady state, steps, cleanup that heals, steady state again).
//! - [`probe`]: the readers behind the checks.
//! - [`fault_steps`]: `inject` and `heal` through the fault library.
//! - [`report`]: timeline, results with measured figures, JSON and JUnit.

pub mod fault_steps;
pub mod model;
pub mod parse;
pub mod probe;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};

pub use model::Scenario;
pub use report::ScenarioReport;

use crate::stack::{Diagnostic, Stack};

/// What finding, reading or validating scenario files can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file named on the command line does not exist.
    #[error("no scenario file {}", path.display())]
    NotFound { path: PathBuf },
    /// A file cannot be read.
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Files have errors; nothing was run.
    #[error(
        "invalid scenario files, nothing was run:\n{}",
        crate::stack::diagnostic::render(diagnostics)
    )]
    Invalid { diagnostics: Vec<Diagnostic> },
    /// Two files use the same scenario name.
    #[error("scenario name `{name}` is used by {first} and {second}")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
    /// The reports could not be written.
    #[error("cannot write {what} {}: {message}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl ScenarioError {
    /// 2 for files that are missing or invalid (usage), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ScenarioError::NotFound { .. }
            | ScenarioError::Invalid { .. }
            | ScenarioError::DuplicateName { .. } => 2,
            ScenarioError::Read { .. } | ScenarioError::Write { .. } => 1,
        }
    }

    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            ScenarioError::NotFound { .. } => {
                Some("`platform scenario ls` lists the scenarios in stacks/scenarios/".to_string())
            }
            ScenarioError::Invalid { .. } => Some(
                "the format is described in stacks/scenarios/README.md; `platform scenario ls` checks every file"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// The scenario files in `dir` (`*.toml`), sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// How a file is shown: relative to the current directory when it is below it.
pub fn display(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Validates one file's text against `stack`.
pub fn check_text(text: &str, display: &str, stack: &Stack) -> parse::Parsed {
    let services: Vec<String> = stack.services.keys().cloned().collect();
    let fault_check = |words: &[String]| fault_steps::check_words(stack, words);
    let ctx = parse::Context {
        services,
        fault_check: &fault_check,
    };
    parse::parse(text, display, &ctx)
}

/// Reads and validates every file; any error in any file fails them all (nothing runs).
pub fn load_all(paths: &[PathBuf], stack: &Stack) -> Result<Vec<Scenario>, ScenarioError> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut diagnostics = Vec::new();
    for path in paths {
        if !path.is_file() {
            return Err(ScenarioError::NotFound { path: path.clone() });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        let parsed = check_text(&text, &display(path), stack);
        diagnostics.extend(parsed.diagnostics);
        if let Some(s) = parsed.scenario {
            if let Some(first) = scenarios.iter().find(|o| o.name == s.name) {
                return Err(ScenarioError::DuplicateName {
                    name: s.name.clone(),
                    first: first.file.clone(),
                    second: s.file.clone(),
                });
            }
            scenarios.push(s);
        }
    }
    if diagnostics
        .iter()
        .any(|d| d.severity == crate::stack::Severity::Error)
    {
        return Err(ScenarioError::Invalid { diagnostics });
    }
    Ok(scenarios)
}

#[cfg(test)]
mod tests;
