//! From the file as written ([`super::raw`]) to the model ([`super::model`]), collecting every
//! problem with its file, line and key instead of stopping at the first: unknown keys and bad
//! types (from serde), bad names and values, references to services that do not exist,
//! dependency cycles (with the cycle shown) and host port clashes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{Diagnostic, Severity, Source};
use super::env::{Reference, Template};
use super::model::{
    Check, Condition, Health, ImageSource, Mount, PublishedPort, Recipe, Resources, Restart,
    Service, Stack,
};
use super::order;
use super::raw::{RawBuild, RawHealth, RawResources, RawService, RawStack};

/// Most instances one service may ask for: a laptop-sized bound that catches typos.
pub const MAX_INSTANCES: i64 = 16;

/// The outcome of validating one file.
#[derive(Debug)]
pub struct Report {
    /// The model, when there are no errors.
    pub stack: Option<Stack>,
    /// Errors and warnings in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// True when nothing stops the stack from being used.
    pub fn is_valid(&self) -> bool {
        self.stack.is_some()
    }
}

/// Validates the text of stack file `file` (shown as `display` in diagnostics). Relative bind
/// mounts resolve against `file`'s directory.
pub fn validate(text: &str, file: &Path, display: &str) -> Report {
    let source = Source {
        file: display,
        text,
    };
    let raw: RawStack = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            return Report {
                stack: None,
                diagnostics: vec![source.toml_error(&err)],
            };
        }
    };
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let mut v = Validator {
        source,
        diagnostics: Vec::new(),
    };
    let stack = v.stack(raw, file, base_dir);
    let mut diagnostics = v.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Report {
        stack: if has_errors { None } else { Some(stack) },
        diagnostics,
    }
}

struct Validator<'a> {
    source: Source<'a>,
    diagnostics: Vec<Diagnostic>,
}

/// A published host port and where it was written, to name the first one in a clash.
struct PortClaim {
    service: String,
    host_ip: Option<String>,
    host_port: u16,
    span: Range<usize>,
}

/// What the checks across services (port clashes, cycles) need from the per-service pass.
#[derive(Default)]
struct CrossChecks {
    /// (service, dependency) → span of the dependency's key, to point at a cycle's first edge.
    depends: BTreeMap<(String, String), Range<usize>>,
    /// Every published port in file order.
    ports: Vec<PortClaim>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let d = self.source.diagnostic(Severity::Error, span, key, message);
        self.diagnostics.push(d);
    }

    fn warning(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let d = self
            .source
            .diagnostic(Severity::Warning, span, key, message);
        self.diagnostics.push(d);
    }

    fn stack(&mut self, raw: RawStack, file: &Path, base_dir: &Path) -> Stack {
        let header = raw.stack.into_inner();
        let name = header.name.get_ref().clone();
        if !is_name(&name) {
            self.error(
                header.name.span(),
                "stack.name",
                name_rule("stack name", &name),
            );
        }
        if raw.services.is_empty() {
            self.error(
                0..0,
                "services",
                "the stack has no services: add a [services.NAME] table",
            );
        }
        let names: BTreeSet<String> = raw.services.keys().map(|k| k.get_ref().clone()).collect();
        let mut cross = CrossChecks::default();
        let mut services = BTreeMap::new();
        let raw_ports: BTreeMap<String, Option<u16>> = raw
            .services
            .iter()
            .map(|(k, v)| {
                (
                    k.get_ref().clone(),
                    v.get_ref().port.as_ref().map(|p| *p.get_ref()),
                )
            })
            .collect();
        let raw_health: BTreeSet<String> = raw
            .services
            .iter()
            .filter(|(_, v)| v.get_ref().health.is_some())
            .map(|(k, _)| k.get_ref().clone())
            .collect();
        for (key, svc) in raw.services {
            let svc_name = key.get_ref().clone();
            if !is_name(&svc_name) {
                self.error(
                    key.span(),
                    format!("services.{svc_name}"),
                    name_rule("service name", &svc_name),
                );
            }
            let span = svc.span();
            let ctx = ServiceCtx {
                name: &svc_name,
                names: &names,
                ports: &raw_ports,
                with_health: &raw_health,
            };
            let service = self.service(&ctx, span, svc.into_inner(), base_dir, &mut cross);
            services.insert(svc_name, service);
        }
        self.port_clashes(&cross.ports);
        self.cycles(&services, &cross.depends);
        Stack {
            name,
            description: header.description,
            file: file.to_path_buf(),
            services,
        }
    }

    fn service(
        &mut self,
        ctx: &ServiceCtx<'_>,
        span: Range<usize>,
        raw: RawService,
        base_dir: &Path,
        cross: &mut CrossChecks,
    ) -> Service {
        let name = ctx.name;
        let key = |k: &str| format!("services.{name}.{k}");
        let source = self.image_source(name, span.clone(), raw.image, raw.build);
        let instances = match raw.instances {
            None => 1,
            Some(n) if (1..=MAX_INSTANCES).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.error(
                    n.span(),
                    key("instances"),
                    format!(
                        "instances must be between 1 and {MAX_INSTANCES}, not {}",
                        n.get_ref()
                    ),
                );
                1
            }
        };
        let port = raw.port.as_ref().map(|p| *p.get_ref());
        if let Some(p) = &raw.port
            && *p.get_ref() == 0
        {
            self.error(
                p.span(),
                key("port"),
                "port 0 is not a port a service can listen on",
            );
        }
        let mut ports = Vec::new();
        for p in &raw.ports {
            match parse_published(p.get_ref()) {
                Ok(published) => {
                    cross.ports.push(PortClaim {
                        service: name.to_string(),
                        host_ip: published.host_ip.clone(),
                        host_port: published.host_port,
                        span: p.span(),
                    });
                    ports.push(published);
                }
                Err(message) => self.error(p.span(), key("ports"), message),
            }
        }
        if instances > 1
            && let Some(p) = raw.ports.first()
        {
            self.error(
                p.span(),
                key("ports"),
                format!(
                    "a fixed host port cannot be published by {instances} instances: \
                     publish ports only on single-instance services (e.g. the gateway)"
                ),
            );
        }
        let mut env = BTreeMap::new();
        for (k, value) in raw.env {
            let env_key = format!("services.{name}.env.{}", k.get_ref());
            if !is_env_name(k.get_ref()) {
                self.error(
                    k.span(),
                    &env_key,
                    format!(
                        "`{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                        k.get_ref()
                    ),
                );
            }
            match Template::parse(value.get_ref()) {
                Ok(t) => {
                    self.references(ctx, &t, value.span(), &env_key);
                    env.insert(k.into_inner(), t);
                }
                Err(e) => {
                    // +1 skips the opening quote of the TOML string.
                    let at = value.span().start + 1 + e.offset;
                    self.error(at..at, &env_key, e.message);
                }
            }
        }
        let mut depends_on = BTreeMap::new();
        for (dep, cond) in raw.depends_on {
            let dep_name = dep.get_ref().clone();
            let dep_key = format!("services.{name}.depends_on.{dep_name}");
            let condition = match cond.get_ref().as_str() {
                "started" => Some(Condition::Started),
                "healthy" => Some(Condition::Healthy),
                other => {
                    self.error(
                        cond.span(),
                        &dep_key,
                        format!("unknown condition `{other}`: use `started` or `healthy`"),
                    );
                    None
                }
            };
            if !ctx.names.contains(&dep_name) {
                self.error(dep.span(), &dep_key, unknown_service(&dep_name, ctx.names));
                continue;
            }
            if condition == Some(Condition::Healthy) && !ctx.with_health.contains(&dep_name) {
                self.error(
                    cond.span(),
                    &dep_key,
                    format!(
                        "`{dep_name}` has no health probe, so `healthy` can never be reached: \
                         give it a `health` table or depend on it being `started`"
                    ),
                );
            }
            cross
                .depends
                .insert((name.to_string(), dep_name.clone()), dep.span());
            if let Some(c) = condition {
                depends_on.insert(dep_name, c);
            }
        }
        let is_binary = matches!(&source, ImageSource::Build(Recipe::Binary { .. }));
        let health = raw
            .health
            .and_then(|h| self.health(name, h.span(), h.into_inner(), port, is_binary));
        let volumes = raw
            .volumes
            .iter()
            .filter_map(|v| self.mount(name, v, base_dir))
            .collect();
        let resources = raw
            .resources
            .map(|r| self.resources(name, r.into_inner()))
            .unwrap_or_default();
        let restart = match &raw.restart {
            None => Restart::DEFAULT,
            Some(r) => Restart::parse(r.get_ref()).unwrap_or_else(|message| {
                self.error(r.span(), key("restart"), message);
                Restart::DEFAULT
            }),
        };
        Service {
            name: name.to_string(),
            description: raw.description,
            source,
            command: raw.command.unwrap_or_default(),
            instances,
            port,
            ports,
            env,
            depends_on,
            health,
            volumes,
            resources,
            restart,
        }
    }

    fn image_source(
        &mut self,
        name: &str,
        span: Range<usize>,
        image: Option<Spanned<String>>,
        build: Option<Spanned<RawBuild>>,
    ) -> ImageSource {
        let fallback = ImageSource::Image(String::new());
        match (image, build) {
            (Some(image), None) => {
                let r = image.get_ref();
                if r.is_empty() || r.chars().any(char::is_whitespace) {
                    self.error(
                        image.span(),
                        format!("services.{name}.image"),
                        format!("`{r}` is not an image reference"),
                    );
                }
                ImageSource::Image(image.into_inner())
            }
            (None, Some(build)) => {
                let build_span = build.span();
                let build = build.into_inner();
                let key = format!("services.{name}.build");
                match (build.binary, build.recipe) {
                    (Some(bin), None) => {
                        if !is_binary_name(bin.get_ref()) {
                            self.error(
                                bin.span(),
                                format!("{key}.binary"),
                                format!("`{}` is not a binary name", bin.get_ref()),
                            );
                        }
                        ImageSource::Build(Recipe::Binary {
                            name: bin.into_inner(),
                        })
                    }
                    (None, Some(recipe)) => match recipe.get_ref().as_str() {
                        name if crate::stack::model::BROKERS.contains(&name) => {
                            ImageSource::Build(Recipe::Broker {
                                name: name.to_string(),
                            })
                        }
                        "mariadb" => ImageSource::Build(Recipe::Mariadb),
                        other => {
                            self.error(
                                recipe.span(),
                                format!("{key}.recipe"),
                                format!(
                                    "unknown recipe `{other}`: recipes are `nisshi`, `tansu` and `mariadb`; \
                                     this workspace's binaries use `binary = \"NAME\"`"
                                ),
                            );
                            fallback
                        }
                    },
                    _ => {
                        self.error(
                            build_span,
                            key,
                            "`build` needs exactly one of `binary` or `recipe`",
                        );
                        fallback
                    }
                }
            }
            (Some(image), Some(_)) => {
                self.error(
                    image.span(),
                    format!("services.{name}.image"),
                    "give either `image` or `build`, not both",
                );
                fallback
            }
            (None, None) => {
                self.error(
                    span,
                    format!("services.{name}"),
                    "the service needs an `image` or a `build` recipe",
                );
                fallback
            }
        }
    }

    fn references(&mut self, ctx: &ServiceCtx<'_>, t: &Template, span: Range<usize>, key: &str) {
        for r in t.references() {
            match r {
                Reference::ServiceHost(s) | Reference::ServicePort(s) if !ctx.names.contains(s) => {
                    self.error(span.clone(), key, unknown_service(s, ctx.names));
                }
                Reference::ServicePort(s) if ctx.ports.get(s).copied().flatten().is_none() => {
                    self.error(
                        span.clone(),
                        key,
                        format!("`${{{s}.port}}`: service `{s}` has no `port`"),
                    );
                }
                Reference::SelfPort if ctx.ports.get(ctx.name).copied().flatten().is_none() => {
                    self.error(
                        span.clone(),
                        key,
                        format!("`${{self.port}}`: service `{}` has no `port`", ctx.name),
                    );
                }
                _ => {}
            }
        }
    }

    fn health(
        &mut self,
        name: &str,
        span: Range<usize>,
        raw: RawHealth,
        service_port: Option<u16>,
        is_binary: bool,
    ) -> Option<Health> {
        let key = |k: &str| {
            format!(
                "services.{name}.health{}{k}",
                if k.is_empty() { "" } else { "." }
            )
        };
        let kinds = [
            raw.probe.is_some(),
            raw.http.is_some(),
            raw.tcp.is_some(),
            raw.exec.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds != 1 {
            self.error(
                span,
                key(""),
                "a health probe needs exactly one of `probe = true`, `http = \"/path\"`, `tcp = PORT` or `exec = [..]`",
            );
            return None;
        }
        let check = if let Some(p) = raw.probe {
            if !*p.get_ref() {
                self.error(
                    p.span(),
                    key("probe"),
                    "`probe = false` is not a probe: remove the `health` table for no probe",
                );
                return None;
            }
            if !is_binary {
                self.error(
                    p.span(),
                    key("probe"),
                    "`probe = true` runs the binary's own `--probe` mode, which only this \
                     workspace's binaries have: use `http`, `tcp` or `exec`",
                );
                return None;
            }
            Check::Probe
        } else if let Some(path) = raw.http {
            if !path.get_ref().starts_with('/') {
                self.error(
                    path.span(),
                    key("http"),
                    "the HTTP path must start with `/`",
                );
            }
            let Some(port) = raw.port.as_ref().map(|p| *p.get_ref()).or(service_port) else {
                self.error(
                    path.span(),
                    key("http"),
                    "an HTTP probe needs a port: set the service's `port` or `health.port`",
                );
                return None;
            };
            Check::Http {
                path: path.into_inner(),
                port,
            }
        } else if let Some(port) = raw.tcp {
            if *port.get_ref() == 0 {
                self.error(port.span(), key("tcp"), "port 0 cannot be probed");
            }
            Check::Tcp {
                port: *port.get_ref(),
            }
        } else if let Some(cmd) = raw.exec {
            if cmd.get_ref().is_empty() {
                self.error(cmd.span(), key("exec"), "the probe command is empty");
            }
            Check::Exec {
                command: cmd.into_inner(),
            }
        } else {
            return None;
        };
        let mut duration = |v: Option<Spanned<String>>, k: &str, default: Duration| match v {
            None => default,
            Some(s) => match humantime::parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.error(
                        s.span(),
                        key(k),
                        format!(
                            "`{}` is not a duration ({e}); write e.g. `2s` or `500ms`",
                            s.get_ref()
                        ),
                    );
                    default
                }
            },
        };
        let interval = duration(raw.interval, "interval", Duration::from_secs(1));
        let timeout = duration(raw.timeout, "timeout", Duration::from_secs(2));
        let start_period = duration(raw.start_period, "start_period", Duration::ZERO);
        // Probes run this often while the container is starting (until its first success, within
        // `start_period`), then every `interval`: quick readiness at start, cheap checks after.
        let start_interval = duration(raw.start_interval, "start_interval", interval);
        let retries = match raw.retries {
            None => 60,
            Some(r) if (1..=1000).contains(r.get_ref()) => *r.get_ref() as u32,
            Some(r) => {
                self.error(
                    r.span(),
                    key("retries"),
                    "retries must be between 1 and 1000",
                );
                60
            }
        };
        let docker = match (raw.docker, &check) {
            (None, Check::Probe | Check::Exec { .. }) => true,
            (Some(d), Check::Probe | Check::Exec { .. }) => d.into_inner(),
            (Some(d), Check::Http { .. } | Check::Tcp { .. }) if *d.get_ref() => {
                self.error(
                    d.span(),
                    key("docker"),
                    "Docker cannot run `http` or `tcp` checks: platform runs them from outside \
                     the container; remove `docker`",
                );
                false
            }
            (_, Check::Http { .. } | Check::Tcp { .. }) => false,
        };
        Some(Health {
            check,
            interval,
            timeout,
            retries,
            start_period,
            start_interval,
            docker,
        })
    }

    fn mount(&mut self, name: &str, raw: &Spanned<String>, base_dir: &Path) -> Option<Mount> {
        let key = format!("services.{name}.volumes");
        match parse_mount(raw.get_ref(), base_dir) {
            Ok(mount) => {
                if let Mount::Bind { source, .. } = &mount
                    && !source.exists()
                {
                    self.warning(
                        raw.span(),
                        &key,
                        format!(
                            "bind mount source {} does not exist (yet); the service cannot start without it",
                            source.display()
                        ),
                    );
                }
                Some(mount)
            }
            Err(message) => {
                self.error(raw.span(), key, message);
                None
            }
        }
    }

    fn resources(&mut self, name: &str, raw: RawResources) -> Resources {
        let mut out = Resources::default();
        if let Some(m) = raw.memory {
            match parse_memory(m.get_ref()) {
                Ok(bytes) => out.memory_bytes = Some(bytes),
                Err(message) => self.error(
                    m.span(),
                    format!("services.{name}.resources.memory"),
                    message,
                ),
            }
        }
        if let Some(c) = raw.cpus {
            let cpus = *c.get_ref();
            if cpus > 0.0 && cpus <= 64.0 {
                out.cpus = Some(cpus);
            } else {
                self.error(
                    c.span(),
                    format!("services.{name}.resources.cpus"),
                    format!("cpus must be more than 0 and at most 64, not {cpus}"),
                );
            }
        }
        out
    }

    fn port_clashes(&mut self, claims: &[PortClaim]) {
        for (i, later) in claims.iter().enumerate() {
            let Some(first) = claims[..i].iter().find(|c| {
                c.host_port == later.host_port
                    && (c.host_ip.is_none()
                        || later.host_ip.is_none()
                        || c.host_ip == later.host_ip)
            }) else {
                continue;
            };
            let who = if first.service == later.service {
                "this service".to_string()
            } else {
                format!("`{}`", first.service)
            };
            let (first_line, _) = self.source.line_col(first.span.start);
            self.error(
                later.span.clone(),
                format!("services.{}.ports", later.service),
                format!(
                    "host port {} is already published by {who} (line {first_line})",
                    later.host_port
                ),
            );
        }
    }

    fn cycles(
        &mut self,
        services: &BTreeMap<String, Service>,
        spans: &BTreeMap<(String, String), Range<usize>>,
    ) {
        let graph: order::Graph = services
            .iter()
            .map(|(n, s)| (n.clone(), s.depends_on.keys().cloned().collect()))
            .collect();
        if let Err(cycle) = order::waves(&graph)
            && cycle.len() >= 2
        {
            let span = spans
                .get(&(cycle[0].clone(), cycle[1].clone()))
                .cloned()
                .unwrap_or(0..0);
            self.error(
                span,
                format!("services.{}.depends_on.{}", cycle[0], cycle[1]),
                format!("dependency cycle: {}", cycle.join(" → ")),
            );
        }
    }
}

/// What a service's checks need to know about the other services.
struct ServiceCtx<'a> {
    name: &'a str,
    names: &'a BTreeSet<String>,
    ports: &'a BTreeMap<String, Option<u16>>,
    with_health: &'a BTreeSet<String>,
}

fn unknown_service(name: &str, names: &BTreeSet<String>) -> String {
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    format!("unknown service `{name}` (services: {})", known.join(", "))
}

fn name_rule(what: &str, name: &str) -> String {
    format!(
        "`{name}` is not a valid {what}: use 1 to 40 lowercase letters, digits and `-`, \
         starting with a letter or digit"
    )
}

/// Names that are also valid DNS labels and Docker names.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_binary_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `HOST:CONTAINER` or `IP:HOST:CONTAINER`.
fn parse_published(s: &str) -> Result<PublishedPort, String> {
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "`{s}` is not a published port: write `HOST:CONTAINER` (e.g. `8080:8080`) or `IP:HOST:CONTAINER`, ports 1-65535"
            )),
            Ok(n) => Ok(n),
        }
    };
    match parts.as_slice() {
        [container, host] => Ok(PublishedPort {
            host_ip: None,
            host_port: port(host)?,
            container_port: port(container)?,
        }),
        [container, host, ip] => {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("`{ip}` in `{s}` is not an IP address"));
            }
            Ok(PublishedPort {
                host_ip: Some(ip.to_string()),
                host_port: port(host)?,
                container_port: port(container)?,
            })
        }
        _ => Err(format!(
            "`{s}` is not a published port: write `HOST:CONTAINER` (e.g. `8080:8080`)"
        )),
    }
}

/// `NAME:/target[:ro|:rw]` (a stack volume) or `PATH:/target[:ro|:rw]` where PATH starts with
/// `/`, `./` or `../` (a bind mount, relative to the stack file).
fn parse_mount(s: &str, base_dir: &Path) -> Result<Mount, String> {
    let usage = || {
        format!(
            "`{s}` is not a mount: write `VOLUME:/path` or `./host/path:/path`, optionally ending in `:ro`"
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (src, target, read_only) = match parts.as_slice() {
        [src, target] => (*src, *target, false),
        [src, target, "ro"] => (*src, *target, true),
        [src, target, "rw"] => (*src, *target, false),
        _ => return Err(usage()),
    };
    if !target.starts_with('/') {
        return Err(format!("mount target `{target}` must be an absolute path"));
    }
    if src.starts_with('/') || src.starts_with("./") || src.starts_with("../") {
        Ok(Mount::Bind {
            source: normalize(&base_dir.join(src)),
            target: target.to_string(),
            read_only,
        })
    } else if is_name(src) {
        Ok(Mount::Volume {
            name: src.to_string(),
            target: target.to_string(),
            read_only,
        })
    } else if src.is_empty() {
        Err(usage())
    } else {
        Err(format!(
            "`{src}` is neither a volume name (lowercase letters, digits, `-`) nor a path starting with `/`, `./` or `../`"
        ))
    }
}

/// Removes `.` and `..` components without touching the file system, so messages show
/// `/repo/keycloak/realm.json` rather than `/repo/stacks/../keycloak/realm.json`.
fn normalize(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `512m`, `1g`, `64mb`, `256MiB`, or plain bytes; at least 6 MiB (Docker's minimum).
fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let bad = || format!("`{s}` is not a memory size: write e.g. `128m` or `1g`");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes < 6 << 20 {
        return Err(format!("`{s}` is below Docker's minimum of 6m"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
