//! A service's environment as a container's `env`: `${...}` references filled in for a cluster
//! (other services by their Service name, this pod's address and name through the downward
//! API), and secret values moved into a Secret that `env` names with `secretKeyRef`.
//!
//! What is secret: a variable whose name says so ([`is_secret_name`]), a URL with a password
//! (`mysql://user:pass@host/db`), and any value or mounted file that contains one of those
//! secrets (MariaDB's `MARIADB_DATABASES` lists the passwords other services' URLs carry; the
//! realm export holds the client secret order-service is given). So a secret never appears in
//! a ConfigMap or as a literal `value`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Context, Issue};
use crate::stack::env::{Reference, port_of};
use crate::stack::{Service, Stack};

/// Substrings of an environment variable's name that mark its value as secret.
const SECRET_NAME_PARTS: [&str; 8] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "CREDENTIAL",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
];

/// Shorter secrets are not searched for inside other values (they would match by chance).
const MIN_FRAGMENT: usize = 4;

/// Whether a variable called `name` holds a secret (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, ...).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|p| upper.contains(p))
}

/// The password of a URL with credentials (`scheme://user:password@host/...`).
fn url_password(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    url.password().filter(|p| !p.is_empty()).map(str::to_string)
}

/// The secrets of a whole stack, found before any object is rendered.
#[derive(Debug, Clone, Default)]
pub struct SecretScan {
    /// Every secret value and URL password of the stack.
    fragments: BTreeSet<String>,
}

impl SecretScan {
    /// Collects the secrets of every service's environment.
    pub fn of(stack: &Stack) -> Self {
        let mut fragments = BTreeSet::new();
        for service in stack.services.values() {
            for (name, template) in &service.env {
                let value = template.render(stack, &service.name, 1);
                if is_secret_name(name) {
                    fragments.insert(value.clone());
                }
                fragments.extend(url_password(&value));
            }
        }
        fragments.retain(|f| f.len() >= MIN_FRAGMENT);
        Self { fragments }
    }

    /// Whether `text` contains a secret of the stack as a whole word (not inside a longer run
    /// of letters and digits: the password `admin` is not in `mysqladmin`).
    pub fn contains_secret(&self, text: &str) -> bool {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        self.fragments.iter().any(|f| {
            text.match_indices(f.as_str()).any(|(at, _)| {
                !word(text[..at].chars().next_back()) && !word(text[at + f.len()..].chars().next())
            })
        })
    }

    /// Whether the variable `name` with `value` must come from a Secret.
    pub fn is_secret(&self, name: &str, value: &str) -> bool {
        is_secret_name(name) || url_password(value).is_some() || self.contains_secret(value)
    }

    /// The secrets themselves (for tests that look for leaks).
    pub fn fragments(&self) -> impl Iterator<Item = &str> {
        self.fragments.iter().map(String::as_str)
    }
}

/// Downward-API variables a value may need, defined before every other variable because
/// Kubernetes expands `$(NAME)` only for variables defined earlier.
const POD_IP: &str = "K8S_POD_IP";
const POD_NAME: &str = "K8S_POD_NAME";
const POD_INDEX: &str = "K8S_POD_INDEX";

/// A container's `env` and the Secret values it refers to.
#[derive(Debug, Default)]
pub(crate) struct PodEnv {
    pub entries: Vec<Value>,
    /// Variable name to value, for the service's env Secret.
    pub secret: BTreeMap<String, String>,
}

/// The name of a service's Secret of environment values.
pub(crate) fn secret_name(service: &str) -> String {
    format!("{service}-env")
}

/// The environment of `ctx`'s service for a pod of a StatefulSet (`stateful`) or Deployment.
pub(crate) fn pod_env(ctx: &Context<'_>, stateful: bool, issues: &mut Vec<Issue>) -> PodEnv {
    let service = ctx.service;
    let mut downward = BTreeSet::new();
    let mut out = PodEnv::default();
    let mut entries = Vec::new();
    for (name, template) in &service.env {
        let key = format!("services.{}.env.{name}", service.name);
        let mut per_pod = false;
        let mut reference = |r: &Reference| {
            let (var, text) = resolve(ctx.stack, service, stateful, r);
            if let Some(var) = var {
                per_pod = true;
                downward.insert(var);
            }
            text
        };
        // Literal text keeps `$(` from being read as a variable reference.
        let literal = template.render_with(|t| t.replace("$(", "$$("), &mut reference);
        let plain = template.render_with(str::to_string, &mut reference);
        if !stateful && template.references().any(|r| *r == Reference::SelfIndex) {
            issues.push(Issue {
                service: service.name.clone(),
                key: key.clone(),
                message: "`${self.index}` has no form in a Deployment (its pods have no index); rendered as the pod's name".to_string(),
            });
        }
        let docker_value = template.render(ctx.stack, &service.name, 1);
        if ctx.scan.is_secret(name, &docker_value) {
            if per_pod {
                issues.push(Issue {
                    service: service.name.clone(),
                    key: key.clone(),
                    message: "a secret value cannot use per-pod references (`${self.host}`, `${self.id}`, `${self.index}`): Kubernetes expands them only in literal values; the Secret holds them unexpanded".to_string(),
                });
            }
            out.secret.insert(name.clone(), plain);
            entries.push(json!({
                "name": name,
                "valueFrom": { "secretKeyRef": { "name": secret_name(&service.name), "key": name } },
            }));
        } else {
            entries.push(json!({ "name": name, "value": literal }));
        }
    }
    for var in downward {
        let path = match var {
            POD_IP => "status.podIP".to_string(),
            POD_NAME => "metadata.name".to_string(),
            _ => "metadata.labels['apps.kubernetes.io/pod-index']".to_string(),
        };
        out.entries
            .push(json!({ "name": var, "valueFrom": { "fieldRef": { "fieldPath": path } } }));
    }
    out.entries.extend(entries);
    out
}

/// A reference's value in a pod: the downward variable it needs, if any, and its text.
fn resolve(
    stack: &Stack,
    service: &Service,
    stateful: bool,
    r: &Reference,
) -> (Option<&'static str>, String) {
    let var = |v: &'static str| (Some(v), format!("$({v})"));
    match r {
        // The Service of that name: pods of the namespace resolve it, and it is the name the
        // service calls itself by (`${self.service}`), so token issuers still match.
        Reference::ServiceHost(name) => (None, name.clone()),
        Reference::ServicePort(name) => (None, port_of(stack, name)),
        // The registry gets the pod's own address, as in Docker it gets the container's.
        Reference::SelfHost => var(POD_IP),
        Reference::SelfId => var(POD_NAME),
        Reference::SelfIndex if stateful => var(POD_INDEX),
        Reference::SelfIndex => var(POD_NAME),
        Reference::SelfPort => (None, port_of(stack, &service.name)),
        Reference::SelfService => (None, service.name.clone()),
        Reference::StackName => (None, stack.name.clone()),
    }
}
