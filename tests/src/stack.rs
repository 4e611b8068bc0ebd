//! A throwaway copy of the dev stack: `stacks/dev.toml` under a stack name of the test's own,
//! with the gateway published on a free loopback port instead of 8080 and the realm file's bind
//! mount made absolute (the copy lives in a temporary directory). Everything else, images,
//! health checks and environment, is the dev stack's.
//!
//! [`TestStack`] is the cleanup guard: dropping it runs `platform down --volumes` on the copy
//! (by label when the file cannot be used), pass or fail. [`remove_orphans`] takes down stacks
//! of earlier test processes that were killed before their guard ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::Platform;

/// Stack names of end-to-end tests start with this, then the test process's pid.
pub const PREFIX: &str = "e2e-";

/// How long `platform down` may take in the guard (ten containers, 10 s SIGTERM grace each
/// wave at worst).
pub const DOWN_LIMIT: Duration = Duration::from_secs(180);

/// A stack name of this process: `e2e-<pid>-<tag>`, unique per call.
pub fn unique_name(tag: &str) -> String {
    /// Numbers stacks made by one process, so two tests of one binary never share a name.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{PREFIX}{}-{tag}{n}", std::process::id());
    // Stack names are at most 40 characters (platform's rule); keep the unique part.
    name.chars().take(40).collect()
}

/// The pid in an end-to-end stack name, when it is one.
pub fn pid_of(stack: &str) -> Option<u32> {
    stack.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// A copy of the dev stack that is taken down when dropped.
#[derive(Debug)]
pub struct TestStack {
    /// The `[stack] name` of the copy.
    pub name: String,
    /// The copy's path, passed as `--stack`.
    pub file: PathBuf,
    /// The loopback port the gateway is published on.
    pub gateway_port: u16,
    /// The loopback port the broker (`kafka`) is published on.
    pub broker_port: u16,
    /// Service name → its `port` (inside the stack network), from the file.
    ports: BTreeMap<String, u16>,
    /// Every service of the file.
    services: Vec<String>,
    /// The named volumes the file's services mount (`name:/path`, not host paths).
    volumes: Vec<String>,
    platform: Platform,
    /// Whether the guard still has to take the stack down.
    armed: bool,
    /// Holds the copy; removed after the guard's `down`.
    _dir: tempfile::TempDir,
}

impl TestStack {
    /// Writes the dev stack as stack `e2e-<pid>-<tag><n>`.
    pub fn dev_copy(platform: &Platform, tag: &str) -> anyhow::Result<Self> {
        Self::dev_copy_with(platform, tag, &[])
    }

    /// [`TestStack::dev_copy`] with more edits of the copy: each `from` (which must occur exactly
    /// once in the copy, after its own edits) is replaced by `to`.
    pub fn dev_copy_with(
        platform: &Platform,
        tag: &str,
        edits: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let root = platform.root();
        let source = root.join("stacks/dev.toml");
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("read {}", source.display()))?;
        let name = unique_name(tag);
        let gateway_port = testkit::free_port()?;
        let broker_port = testkit::free_port()?;
        let realm = root.join("keycloak/realm.json");
        let text = rewrite(
            &text,
            &[
                ("name = \"dev\"", format!("name = \"{name}\"")),
                (
                    "\"127.0.0.1:8080:8080\"",
                    format!("\"127.0.0.1:{gateway_port}:8080\""),
                ),
                (
                    "\"127.0.0.1:19092:9092\"",
                    format!("\"127.0.0.1:{broker_port}:9092\""),
                ),
                (
                    "\"../keycloak/realm.json:",
                    format!("\"{}:", realm.display()),
                ),
            ],
        )?;
        let text = rewrite(&text, edits)?;
        let (services, ports) = services_and_ports(&text)?;
        let volumes = named_volumes(&text)?;
        let dir = tempfile::Builder::new()
            .prefix("platform-e2e-")
            .tempdir()
            .context("make a temporary directory")?;
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
        Ok(Self {
            name,
            file,
            gateway_port,
            broker_port,
            ports,
            services,
            volumes,
            platform: platform.clone(),
            armed: true,
            _dir: dir,
        })
    }

    /// The `--stack` argument naming the copy.
    pub fn arg(&self) -> &str {
        self.file.to_str().unwrap_or_default()
    }

    /// Where the host reaches the gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// The port `service` listens on inside the stack network.
    pub fn port_of(&self, service: &str) -> anyhow::Result<u16> {
        self.ports
            .get(service)
            .copied()
            .with_context(|| format!("the dev stack gives `{service}` no port"))
    }

    /// The services of the stack, sorted.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// The named volumes of the stack (as written in the file, without the stack prefix), sorted.
    pub fn volumes(&self) -> &[String] {
        &self.volumes
    }

    /// Tells the guard the stack is already down (the test took it down and checked).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let by_file = ["down", "--volumes", "--stack", self.arg()];
        let by_label = ["down", "--volumes", "--stack", self.name.as_str()];
        for args in [&by_file[..], &by_label[..]] {
            match self.platform.run_blocking(args, DOWN_LIMIT) {
                Ok(run) if run.code == Some(0) => {
                    eprintln!("cleanup: {}", run.stdout.trim());
                    return;
                }
                Ok(run) => eprintln!(
                    "cleanup: `{}` exited with {:?}: {}",
                    run.command,
                    run.code,
                    crate::cli::tail(&run.stderr, 10)
                ),
                Err(e) => eprintln!("cleanup: {e:#}"),
            }
        }
        eprintln!(
            "cleanup: stack {} may be left; `platform down --volumes --stack {}` removes it",
            self.name, self.name
        );
    }
}

/// Replaces each `from` (which must occur exactly once) by `to`.
fn rewrite(text: &str, edits: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = text.to_string();
    for (from, to) in edits {
        let n = text.matches(from).count();
        if n != 1 {
            bail!("stacks/dev.toml changed: `{from}` occurs {n} times, the e2e copy expects once");
        }
        text = text.replacen(from, to, 1);
    }
    Ok(text)
}

/// The service names of a stack file, and `services.<name>.port` of those that have one.
fn services_and_ports(text: &str) -> anyhow::Result<(Vec<String>, BTreeMap<String, u16>)> {
    let doc: toml::Table = text.parse().context("parse the stack copy")?;
    let services = doc
        .get("services")
        .and_then(|s| s.as_table())
        .context("the stack copy has no [services]")?;
    let ports = services
        .iter()
        .filter_map(|(name, s)| {
            let port = u16::try_from(s.get("port")?.as_integer()?).ok()?;
            Some((name.clone(), port))
        })
        .collect();
    let mut names: Vec<String> = services.keys().cloned().collect();
    names.sort();
    Ok((names, ports))
}

/// The named volumes a stack file's services mount: entries `name:/target[:ro]` whose source is
/// a name, not a path.
fn named_volumes(text: &str) -> anyhow::Result<Vec<String>> {
    let doc: toml::Table = text.parse().context("parse the stack copy")?;
    let mut names: Vec<String> = doc
        .get("services")
        .and_then(|s| s.as_table())
        .into_iter()
        .flat_map(|services| services.values())
        .filter_map(|s| s.get("volumes")?.as_array())
        .flatten()
        .filter_map(|v| v.as_str()?.split(':').next())
        .filter(|source| !source.contains('/') && !source.starts_with('.'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Takes down end-to-end stacks whose test process is gone (killed by a timeout before its guard
/// ran). Only stacks named `e2e-<pid>-...` with no process `<pid>` are touched. Returns their
/// names.
pub async fn remove_orphans(
    platform: &Platform,
    docker: &bollard::Docker,
) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for stack in crate::docker::stack_names(docker).await? {
        let Some(pid) = pid_of(&stack) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let run = platform
            .run(&["down", "--volumes", "--stack", &stack], DOWN_LIMIT)
            .await?;
        if run.code == Some(0) {
            eprintln!("removed the orphaned test stack {stack}");
            removed.push(stack);
        } else {
            eprintln!(
                "could not remove the orphaned test stack {stack}: {}",
                crate::cli::tail(&run.stderr, 5)
            );
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names carry the pid, stay valid stack names and differ per call.
    #[test]
    fn names() {
        let a = unique_name("life");
        let b = unique_name("life");
        assert_ne!(a, b);
        assert_eq!(pid_of(&a), Some(std::process::id()));
        assert!(a.len() <= 40);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(pid_of("dev"), None);
        assert_eq!(pid_of("e2e-x-1"), None);
    }

    /// The copy renames the stack, moves the gateway to the loopback port and makes the realm
    /// path absolute; a dev.toml that no longer has what the copy edits is an error.
    #[test]
    fn rewrites_the_dev_stack() {
        let root = testkit::workspace_root();
        let text = std::fs::read_to_string(root.join("stacks/dev.toml")).unwrap();
        let out = rewrite(
            &text,
            &[
                ("name = \"dev\"", "name = \"e2e-1-x\"".to_string()),
                (
                    "\"127.0.0.1:8080:8080\"",
                    "\"127.0.0.1:18080:8080\"".to_string(),
                ),
            ],
        )
        .unwrap();
        assert!(out.contains("name = \"e2e-1-x\""));
        assert!(out.contains("\"127.0.0.1:18080:8080\""));
        let (services, ports) = services_and_ports(&out).unwrap();
        assert_eq!(services.len(), 10);
        assert_eq!(ports["api-gateway"], 8080);
        assert_eq!(ports["order-service"], 8082);
        assert_eq!(
            named_volumes(&out).unwrap(),
            ["kafka-data", "mariadb-data", "product-data"]
        );
        assert!(rewrite("x", &[("y", "z".to_string())]).is_err());
    }
}
