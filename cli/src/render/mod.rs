//! `platform render kubernetes`: a stack (the same validated [`Stack`] model `up` starts on
//! Docker) as Kubernetes manifests a cluster accepts as they are.
//!
//! Per service, in the order a cluster wants them: a ConfigMap and/or a Secret for the files it
//! mounts, a Secret for its secret environment, a Service for its ports, then a Deployment
//! (stateless) or a StatefulSet with one PersistentVolumeClaim template per named volume, and
//! for the exposed service (the gateway) a LoadBalancer Service or an Ingress.
//!
//! Every object is built as a JSON value whose maps sort their keys, and objects are listed in a
//! fixed order, so the same stack always renders byte for byte the same YAML.
//!
//! A stack feature with no Kubernetes form (a host directory mounted, a restart policy
//! Kubernetes cannot express, ...) is an [`Issue`]: an error naming the service and key, or with
//! `allow_lossy` a warning the command prints. A secret value of the stack in a `command` or an
//! `exec` health check has no safe form at all (it would stand in the pod spec as plain text):
//! always an error ([`RenderError::SecretInPodSpec`]), `allow_lossy` or not.

mod env;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde_json::{Value, json};

use crate::stack::{Mount, Service, Stack};

pub use env::{SecretScan, is_secret_name};

/// The labels' `part-of` and `managed-by` value.
pub const PART_OF: &str = "platform";

/// How the exposed service is reached from outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// Its Service gets `type: LoadBalancer`.
    LoadBalancer,
    /// An Ingress routes `/` to its Service.
    Ingress {
        /// The rule's host; `None` matches every host.
        host: Option<String>,
        /// `spec.ingressClassName`; `None` takes the cluster's default class.
        class: Option<String>,
    },
}

/// What to render and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// `metadata.namespace` of every object, with a Namespace object first; `None` leaves
    /// objects namespace-less (they go where `kubectl apply` points).
    pub namespace: Option<String>,
    /// Prepended to the image name of every locally built image (`REG/` or `REG/platform/`).
    pub image_prefix: String,
    /// The tag of every locally built image.
    pub image_tag: String,
    /// Replicas per service, overriding the stack's `instances`.
    pub scale: BTreeMap<String, u32>,
    /// The service reachable from outside the cluster (default: `api-gateway` when present).
    pub expose: Option<String>,
    /// How it is reached.
    pub exposure: Exposure,
    /// The image of the init containers that wait for dependencies when the service's own
    /// image has no wait mode (it needs `sh` and `nc`; our binaries wait with `--wait-for`).
    pub wait_image: String,
    /// The requested size of each PersistentVolumeClaim.
    pub volume_size: String,
    /// Render what has no Kubernetes form approximately, as warnings, instead of failing.
    pub allow_lossy: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: None,
            image_prefix: "platform/".to_string(),
            image_tag: env!("CARGO_PKG_VERSION").to_string(),
            scale: BTreeMap::new(),
            expose: None,
            exposure: Exposure::LoadBalancer,
            wait_image: DEFAULT_WAIT_IMAGE.to_string(),
            volume_size: "1Gi".to_string(),
            allow_lossy: false,
        }
    }
}

/// The init containers' image by default: our images are FROM scratch (no shell to wait with).
pub const DEFAULT_WAIT_IMAGE: &str = "busybox:1.37";

/// The service exposed by default when the stack has it.
pub const DEFAULT_EXPOSE: &str = "api-gateway";

/// Largest file a ConfigMap or Secret holds (Kubernetes stores objects up to 1 MiB).
const MAX_FILE_BYTES: u64 = 1000 * 1024;

/// One stack feature rendered approximately (or not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub service: String,
    /// The stack file key, e.g. `services.identity-provider.volumes`.
    pub key: String,
    /// What has no Kubernetes form and what the rendering does instead.
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service `{}`, key `{}`: {}",
            self.service, self.key, self.message
        )
    }
}

/// Why a stack cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Stack features without a Kubernetes form, and `allow_lossy` not given.
    #[error("the stack has features with no Kubernetes form:\n{}", list(issues))]
    NoKubernetesForm { issues: Vec<Issue> },
    /// A secret value of the stack in a service's `command` or `exec` health check: it would
    /// stand in the pod spec as plain text. Never rendered, `allow_lossy` or not.
    #[error(
        "the stack puts secret values where Kubernetes shows them as plain text (--allow-lossy does not render these):\n{}",
        list(places)
    )]
    SecretInPodSpec { places: Vec<Issue> },
    /// `--scale` or `--expose` names a service the stack does not have.
    #[error("unknown service `{name}` in {option} (services: {known})")]
    UnknownService {
        name: String,
        option: &'static str,
        known: String,
    },
    /// `--scale` asks for more than one replica of a service that cannot have them.
    #[error("`{service}` cannot be scaled to {replicas}: {reason}")]
    NotScalable {
        service: String,
        replicas: u32,
        reason: String,
    },
    /// The exposed service has no port to expose.
    #[error("`{service}` cannot be exposed: it has no port")]
    NoPort { service: String },
    /// A file the stack mounts cannot be read into a ConfigMap or Secret.
    #[error("service `{service}`, key `{key}`: cannot read {}: {cause}", path.display())]
    ReadFile {
        service: String,
        key: String,
        path: PathBuf,
        cause: String,
    },
    /// An option value Kubernetes would reject.
    #[error("invalid {option} `{value}`: {why}")]
    BadOption {
        option: &'static str,
        value: String,
        why: String,
    },
}

impl RenderError {
    /// Every variant is bad input (the stack or the options): exit 2.
    pub fn exit_code(&self) -> u8 {
        2
    }

    /// A next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            RenderError::NoKubernetesForm { .. } => Some(
                "change the stack file, or render anyway with --allow-lossy (each becomes a warning)"
                    .to_string(),
            ),
            RenderError::UnknownService { .. } => {
                Some("`platform stack show` lists the services of the stack".to_string())
            }
            RenderError::NoPort { .. } => Some(
                "give it a `port` in the stack file, or name another service with --expose"
                    .to_string(),
            ),
            RenderError::NotScalable { .. } => Some(
                "stateful services and the ones others reach by name keep one replica".to_string(),
            ),
            _ => None,
        }
    }
}

fn list(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The whole object.
    pub value: Value,
}

impl Object {
    fn new(value: Value) -> Self {
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Self {
            kind,
            name,
            value: sorted(&value),
        }
    }

    /// Where `kubectl apply -f DIR` should meet it: a numeric prefix orders namespaces, config
    /// and secrets before the Services and workloads that use them.
    pub fn file_name(&self) -> String {
        let rank = match self.kind.as_str() {
            "Namespace" => 0,
            "ConfigMap" => 10,
            "Secret" => 20,
            "Service" => 30,
            "Deployment" | "StatefulSet" => 40,
            _ => 50,
        };
        format!("{rank:02}-{}-{}.yaml", self.kind.to_lowercase(), self.name)
    }

    /// The object as one YAML document.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.value).expect("JSON values always serialize to YAML")
    }
}

/// `value` with every object's keys in sorted order. serde_json keeps insertion order when
/// its `preserve_order` feature is on, which another crate of the workspace switches on in a
/// workspace build: the output must not depend on which crates were built together.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The rendered stack.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub objects: Vec<Object>,
    /// What was rendered approximately (only with `allow_lossy`; otherwise these are errors).
    pub warnings: Vec<Issue>,
}

impl Rendered {
    /// One multi-document YAML stream.
    pub fn to_yaml(&self) -> String {
        self.objects
            .iter()
            .map(|o| format!("---\n{}", o.to_yaml()))
            .collect()
    }
}

/// Renders `stack` for Kubernetes.
pub fn kubernetes(stack: &Stack, options: &Options) -> Result<Rendered, RenderError> {
    check_options(stack, options)?;
    let expose = exposed(stack, options)?;
    let scan = SecretScan::of(stack);
    let contexts: Vec<Context<'_>> = stack
        .services
        .values()
        .map(|service| Context {
            stack,
            service,
            options,
            scan: &scan,
            exposed: expose == Some(service.name.as_str()),
        })
        .collect();
    let mut secrets = Vec::new();
    for ctx in &contexts {
        workload::secrets_in_commands(ctx, &mut secrets);
    }
    if !secrets.is_empty() {
        return Err(RenderError::SecretInPodSpec { places: secrets });
    }
    let mut issues = Vec::new();
    let mut first = Vec::new();
    let mut config = Vec::new();
    let mut services = Vec::new();
    let mut workloads = Vec::new();
    let mut ingresses = Vec::new();
    if let Some(ns) = &options.namespace {
        first.push(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": ns, "labels": { "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": PART_OF } },
        }));
    }
    for ctx in &contexts {
        let files = ctx.files(&mut issues)?;
        let pod = workload::Pod::build(ctx, &files, &mut issues);
        config.extend(files.objects(ctx));
        config.extend(pod.secret(ctx));
        services.extend(workload::service(ctx));
        workloads.push(pod.workload(ctx));
        if ctx.exposed
            && let Exposure::Ingress { host, class } = &options.exposure
        {
            ingresses.push(workload::ingress(ctx, host.as_deref(), class.as_deref()));
        }
    }
    if !issues.is_empty() && !options.allow_lossy {
        return Err(RenderError::NoKubernetesForm { issues });
    }
    let objects = first
        .into_iter()
        .chain(config)
        .chain(services)
        .chain(workloads)
        .chain(ingresses)
        .map(Object::new)
        .collect();
    Ok(Rendered {
        objects,
        warnings: issues,
    })
}

/// Checks the options against the stack before anything is rendered.
fn check_options(stack: &Stack, options: &Options) -> Result<(), RenderError> {
    let lookup = |name: &str, option: &'static str| {
        stack
            .services
            .get(name)
            .ok_or_else(|| RenderError::UnknownService {
                name: name.to_string(),
                option,
                known: stack.service_names().join(", "),
            })
    };
    for (name, &replicas) in &options.scale {
        let service = lookup(name, "--scale")?;
        if replicas > 1
            && let Some(reason) = crate::commands::scale::shares_state(stack, service)
        {
            return Err(RenderError::NotScalable {
                service: name.clone(),
                replicas,
                reason,
            });
        }
    }
    if let Some(name) = &options.expose {
        lookup(name, "--expose")?;
    }
    if let Some(ns) = &options.namespace {
        dns_label("--namespace", ns)?;
    }
    /// A Kubernetes quantity (`1Gi`, `500Mi`, `1.5G`), compiled once.
    static QUANTITY: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
            .expect("static regex")
    });
    if !QUANTITY.is_match(&options.volume_size) {
        return Err(RenderError::BadOption {
            option: "--volume-size",
            value: options.volume_size.clone(),
            why: "write a Kubernetes quantity such as 1Gi or 500Mi".to_string(),
        });
    }
    Ok(())
}

/// The service reachable from outside the cluster: `--expose`'s, else [`DEFAULT_EXPOSE`] when
/// the stack has it, else none. Either way it must have a port (the LoadBalancer Service or the
/// Ingress points at it).
fn exposed<'a>(stack: &Stack, options: &'a Options) -> Result<Option<&'a str>, RenderError> {
    let name = match &options.expose {
        Some(name) => name.as_str(),
        None if stack.services.contains_key(DEFAULT_EXPOSE) => DEFAULT_EXPOSE,
        None => return Ok(None),
    };
    match stack.services.get(name) {
        Some(service) if service.port.is_none() => Err(RenderError::NoPort {
            service: name.to_string(),
        }),
        _ => Ok(Some(name)),
    }
}

/// Checks an RFC 1123 label (namespace names).
fn dns_label(option: &'static str, value: &str) -> Result<(), RenderError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(RenderError::BadOption {
            option,
            value: value.to_string(),
            why: "use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"
                .to_string(),
        })
    }
}

/// What every object of one service is built from.
pub(crate) struct Context<'a> {
    pub stack: &'a Stack,
    pub service: &'a Service,
    pub options: &'a Options,
    pub scan: &'a SecretScan,
    /// Whether this is the service reachable from outside.
    pub exposed: bool,
}

impl Context<'_> {
    /// The `app.kubernetes.io/*` labels of this service's objects.
    pub fn labels(&self) -> Value {
        let mut labels = self.selector();
        labels["app.kubernetes.io/component"] = json!(workload::component(self.service));
        labels["app.kubernetes.io/part-of"] = json!(PART_OF);
        labels["app.kubernetes.io/managed-by"] = json!(PART_OF);
        labels
    }

    /// The labels that select this service's pods.
    pub fn selector(&self) -> Value {
        json!({
            "app.kubernetes.io/name": self.service.name,
            "app.kubernetes.io/instance": self.stack.name,
        })
    }

    /// `metadata` for an object of this service called `name`.
    pub fn metadata(&self, name: &str) -> Value {
        let mut m = json!({ "name": name, "labels": self.labels() });
        if let Some(ns) = &self.options.namespace {
            m["namespace"] = json!(ns);
        }
        m
    }

    /// The bind-mounted files, read into ConfigMap or Secret keys.
    fn files(&self, issues: &mut Vec<Issue>) -> Result<Files, RenderError> {
        let key = format!("services.{}.volumes", self.service.name);
        let mut files = Files::default();
        for mount in &self.service.volumes {
            let Mount::Bind {
                source,
                target,
                read_only,
            } = mount
            else {
                continue;
            };
            let shown = format!("{}:{target}", source.display());
            if source.is_dir() {
                issues.push(Issue {
                    service: self.service.name.clone(),
                    key: key.clone(),
                    message: format!(
                        "`{shown}` mounts a host directory, which has no Kubernetes form (a hostPath ties the pod to one node's disk); left out"
                    ),
                });
                continue;
            }
            let data = read_file(self, &key, source)?;
            if !read_only {
                issues.push(Issue {
                    service: self.service.name.clone(),
                    key: key.clone(),
                    message: format!(
                        "`{shown}` is a writable host file; Kubernetes mounts files from a ConfigMap or Secret read-only (add `:ro`); rendered read-only"
                    ),
                });
            }
            let secret = self.scan.contains_secret(&String::from_utf8_lossy(&data));
            files.add(source, target, data, secret);
        }
        Ok(files)
    }
}

fn read_file(ctx: &Context<'_>, key: &str, path: &Path) -> Result<Vec<u8>, RenderError> {
    let err = |cause: String| RenderError::ReadFile {
        service: ctx.service.name.clone(),
        key: key.to_string(),
        path: path.to_path_buf(),
        cause,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(err(format!(
            "it has {size} bytes; a ConfigMap or Secret holds at most {MAX_FILE_BYTES}"
        )));
    }
    std::fs::read(path).map_err(|e| err(e.to_string()))
}

/// The files one service mounts, keyed as in its ConfigMap (plain files) or Secret (files that
/// contain a secret value of the stack, such as the realm export with its client secrets).
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// (key, mount target, content, secret)
    pub entries: Vec<(String, String, Vec<u8>, bool)>,
}

impl Files {
    fn add(&mut self, source: &Path, target: &str, data: Vec<u8>, secret: bool) {
        let base: String = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_string())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut key = base.clone();
        let mut n = 2;
        while self.entries.iter().any(|(k, ..)| *k == key) {
            key = format!("{n}-{base}");
            n += 1;
        }
        self.entries.push((key, target.to_string(), data, secret));
    }

    /// The ConfigMap and Secret holding them.
    fn objects(&self, ctx: &Context<'_>) -> Vec<Value> {
        let mut out = Vec::new();
        for secret in [false, true] {
            let mut text = serde_json::Map::new();
            let mut binary = serde_json::Map::new();
            for (key, _, data, _) in self.entries.iter().filter(|e| e.3 == secret) {
                match std::str::from_utf8(data) {
                    Ok(s) => text.insert(key.clone(), json!(s)),
                    Err(_) => binary.insert(key.clone(), json!(base64_of(data))),
                };
            }
            if text.is_empty() && binary.is_empty() {
                continue;
            }
            let name = files_name(&ctx.service.name);
            let mut object = if secret {
                json!({ "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": ctx.metadata(&name) })
            } else {
                json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": ctx.metadata(&name) })
            };
            // A Secret takes text as `stringData` and bytes as base64 `data`; a ConfigMap text as
            // `data` and bytes as `binaryData`.
            let (text_key, binary_key) = if secret {
                ("stringData", "data")
            } else {
                ("data", "binaryData")
            };
            if !text.is_empty() {
                object[text_key] = Value::Object(text);
            }
            if !binary.is_empty() {
                object[binary_key] = Value::Object(binary);
            }
            out.push(object);
        }
        out
    }
}

/// The name of a service's ConfigMap and Secret of mounted files.
pub(crate) fn files_name(service: &str) -> String {
    format!("{service}-files")
}

fn base64_of(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests;
