//! `platform stack validate|show`: check a stack file and show what `up` would start, in
//! which order, with which environment.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde::Serialize;

use super::Global;
use crate::stack::{Check, Condition, Diagnostic, ImageSource, Mount, Severity, Stack, StackFile};
use crate::{Error, Result, output};

/// `platform stack ...`.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Check the stack file: unknown keys, bad values, unknown services, cycles, port clashes.
    Validate,
    /// Show the stack's services, start order and resolved environment.
    Show,
}

pub fn run(g: &Global, cmd: StackCommand) -> Result<()> {
    let file = StackFile::resolve(&g.stack)?;
    match cmd {
        StackCommand::Validate => validate(g, &file),
        StackCommand::Show => {
            let stack = file.load()?;
            let view = StackView::new(&stack, &file.display);
            if g.json {
                output::json(&view)
            } else {
                crate::out!("{}", view.to_text());
                Ok(())
            }
        }
    }
}

/// The JSON of `stack validate`.
#[derive(Debug, Serialize)]
pub struct ValidateView {
    pub file: String,
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl ValidateView {
    /// Splits a report's diagnostics by severity.
    pub fn new(file: &str, valid: bool, diagnostics: Vec<Diagnostic>) -> Self {
        let (errors, warnings) = diagnostics
            .into_iter()
            .partition(|d| d.severity == Severity::Error);
        Self {
            file: file.to_string(),
            valid,
            errors,
            warnings,
        }
    }
}

fn validate(g: &Global, file: &StackFile) -> Result<()> {
    let report = file.check()?;
    let valid = report.is_valid();
    let services = report.stack.as_ref().map(|s| s.services.len());
    let waves = report.stack.as_ref().map(|s| s.waves().len());
    let view = ValidateView::new(&file.display, valid, report.diagnostics);
    if g.json {
        output::json(&view)?;
    } else {
        for d in view.errors.iter().chain(&view.warnings) {
            eprintln!("{d}");
        }
        match (services, waves) {
            (Some(s), Some(w)) => crate::outln!(
                "{}: valid ({s} services in {w} start waves{})",
                view.file,
                if view.warnings.is_empty() {
                    String::new()
                } else {
                    format!(", {} warnings", view.warnings.len())
                }
            ),
            _ => eprintln!("{}: invalid ({} errors)", view.file, view.errors.len()),
        }
    }
    if valid {
        Ok(())
    } else {
        Err(Error::ReportedInvalid)
    }
}

/// The JSON of `stack show`: the model plus what it implies (names, order, resolved env).
#[derive(Debug, Serialize)]
pub struct StackView {
    pub name: String,
    pub file: String,
    pub network: String,
    /// Services grouped in the order `up` starts them.
    pub waves: Vec<Vec<String>>,
    pub services: BTreeMap<String, ServiceView>,
}

/// One service in `stack show`.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    #[serde(flatten)]
    pub service: crate::stack::Service,
    /// Container names, one per instance.
    pub containers: Vec<String>,
    /// Docker volume names for the service's named volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub docker_volumes: Vec<String>,
    /// The environment of instance 1 with references resolved.
    pub resolved_env: BTreeMap<String, String>,
}

impl StackView {
    /// The view of a validated stack; `file` is how to name the file.
    pub fn new(stack: &Stack, file: &str) -> Self {
        let services = stack
            .services
            .iter()
            .map(|(name, s)| {
                let view = ServiceView {
                    containers: (1..=s.instances)
                        .map(|i| stack.container_name(name, i))
                        .collect(),
                    docker_volumes: s
                        .volumes
                        .iter()
                        .filter_map(|m| match m {
                            Mount::Volume { name, .. } => Some(stack.volume_name(name)),
                            Mount::Bind { .. } => None,
                        })
                        .collect(),
                    resolved_env: s
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.render(stack, name, 1)))
                        .collect(),
                    service: s.clone(),
                };
                (name.clone(), view)
            })
            .collect();
        Self {
            name: stack.name.clone(),
            file: file.to_string(),
            network: stack.network_name(),
            waves: stack.waves(),
            services,
        }
    }

    /// The human rendering: a table of services, then the start waves.
    pub fn to_text(&self) -> String {
        let mut rows = vec![vec![
            "SERVICE".to_string(),
            "IMAGE".to_string(),
            "N".to_string(),
            "PORT".to_string(),
            "PUBLISHED".to_string(),
            "HEALTH".to_string(),
            "RESTART".to_string(),
            "DEPENDS ON".to_string(),
        ]];
        for (name, v) in &self.services {
            let s = &v.service;
            rows.push(vec![
                name.clone(),
                match &s.source {
                    ImageSource::Image(i) => i.clone(),
                    ImageSource::Build(r) => format!("build: {}", r.image_name()),
                },
                s.instances.to_string(),
                s.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                if s.ports.is_empty() {
                    "-".into()
                } else {
                    s.ports
                        .iter()
                        .map(|p| match &p.host_ip {
                            Some(ip) => format!("{ip}:{}->{}", p.host_port, p.container_port),
                            None => format!("{}->{}", p.host_port, p.container_port),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                },
                match s.health.as_ref().map(|h| (&h.check, h.docker)) {
                    None => "-".into(),
                    Some((Check::Probe, true)) => "probe".into(),
                    Some((Check::Probe, false)) => "probe (from outside)".into(),
                    Some((Check::Http { path, port }, _)) => format!("http :{port}{path}"),
                    Some((Check::Tcp { port }, _)) => format!("tcp :{port}"),
                    Some((Check::Exec { command }, docker)) => format!(
                        "exec {}{}",
                        command.first().cloned().unwrap_or_default(),
                        if docker { "" } else { " (from outside)" }
                    ),
                },
                s.restart.to_string(),
                if s.depends_on.is_empty() {
                    "-".into()
                } else {
                    s.depends_on
                        .iter()
                        .map(|(d, c)| match c {
                            Condition::Healthy => format!("{d} (healthy)"),
                            Condition::Started => format!("{d} (started)"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]);
        }
        let mut text = format!(
            "stack {} ({}), network {}\n\n",
            self.name, self.file, self.network
        );
        text.push_str(&output::table(&rows));
        text.push_str("\nstart order:\n");
        for (i, wave) in self.waves.iter().enumerate() {
            text.push_str(&format!("  {}. {}\n", i + 1, wave.join(", ")));
        }
        text
    }
}
