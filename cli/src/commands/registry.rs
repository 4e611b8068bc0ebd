//! `platform registry ls`: what a running discovery-server holds, read through its Eureka REST
//! API (`GET /eureka/apps`) with the kit's registry client and model, so the CLI and the
//! services agree on the JSON shape.
//!
//! Which registry: `--url` (or `PLATFORM_REGISTRY_URL`), else the stack's running
//! discovery-server container (its address on the stack network), else `http://localhost:8761`.
//! Reads are open; credentials in the URL's userinfo are never shown.
//!
//! `platform registry info`: the registry's own figures (`GET /admin/registry`: configuration,
//! counts, renewals measured against expected, self-preservation, totals) from each running
//! discovery-server of the stack, with an admin JWT from the stack's identity provider, as
//! every service's `/admin` wants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use registry_client::credentials::redact;
use registry_client::http::RegistryHttp;
use registry_client::model::Applications;
use serde::Serialize;

use super::Global;
use crate::observe::Observer;
use crate::observe::admin::{Admin, InstanceRead};
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Error, Result, output};

/// Where the registry is when nothing says otherwise.
pub const DEFAULT_URL: &str = "http://localhost:8761";
/// The service name of the registry in our stacks.
const REGISTRY_SERVICE: &str = "discovery-server";

/// `platform registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// List the applications and instances the registry holds.
    Ls {
        /// The registry's base URL (default: the stack's discovery-server, else localhost:8761).
        #[arg(long, env = "PLATFORM_REGISTRY_URL")]
        url: Option<String>,
    },
    /// The registry's own figures (`/admin/registry`, with an admin token): configuration,
    /// counts, renewals measured and expected, self-preservation, totals.
    Info,
}

pub async fn run(g: &Global, cmd: RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Ls { url } => {
            let url = match url {
                Some(u) => u,
                None => stack_registry_url(g)
                    .await
                    .unwrap_or_else(|| DEFAULT_URL.to_string()),
            };
            let apps = fetch(&url).await?;
            let view = RegistryView::new(&shown(&url), &apps, now_ms());
            if g.json {
                output::json(&view)
            } else {
                crate::out!("{}", view.to_text());
                Ok(())
            }
        }
        RegistryCommand::Info => info(g).await,
    }
}

/// `url` as it may be shown: without the password of its userinfo.
fn shown(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_string(), |u| redact(&u))
}

/// `platform registry info`.
async fn info(g: &Global) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let rt = Runtime::connect().await?;
    let obs = Observer::new(rt, stack).await?;
    obs.require_running()?;
    let admin = Admin::connect(&obs).await?;
    let reads: Vec<InstanceRead<serde_json::Value>> = admin
        .read_all(
            REGISTRY_SERVICE,
            "/admin/registry",
            "read the registry's figures",
        )
        .await;
    if reads.is_empty() {
        return Err(crate::observe::ObserveError::Setting(format!(
            "no {REGISTRY_SERVICE} container of the stack is running"
        ))
        .into());
    }
    let failed = reads.iter().filter(|r| r.error.is_some()).count();
    if g.json {
        output::json(&reads)?;
    } else {
        for r in &reads {
            crate::out!("{}", info_text(r));
        }
    }
    if failed == reads.len() {
        let first = reads
            .iter()
            .find_map(|r| r.error.clone())
            .unwrap_or_default();
        return Err(crate::observe::ObserveError::Setting(first).into());
    }
    Ok(())
}

/// One registry's figures as a few lines.
pub fn info_text(r: &InstanceRead<serde_json::Value>) -> String {
    let Some(v) = &r.value else {
        return format!(
            "{}: {}\n",
            r.instance,
            r.error.as_deref().unwrap_or("no answer")
        );
    };
    let n = |p: &str| {
        v.pointer(p)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let measured = v
        .pointer("/renewals/measured")
        .and_then(serde_json::Value::as_u64);
    let expected = v
        .pointer("/renewals/expected")
        .and_then(serde_json::Value::as_f64);
    let renewals = match (measured, expected) {
        (Some(m), Some(e)) => format!("{m} measured / {e:.0} expected per window"),
        _ => "not evaluated yet".to_string(),
    };
    let preserving = v
        .pointer("/selfPreservation/active")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    format!(
        "{}: version {}, {} applications, {} instances, up {:.0}s\n  \
         renewals: {renewals}; self-preservation {}\n  \
         totals: {} registrations, {} renewals, {} cancellations, {} evictions, {} status updates\n",
        r.instance,
        n("/version"),
        n("/applications"),
        n("/instances"),
        n("/uptimeMs") as f64 / 1000.0,
        if preserving {
            "ACTIVE (evictions stopped)"
        } else {
            "off"
        },
        n("/totals/registrations"),
        n("/totals/renewals"),
        n("/totals/cancellations"),
        n("/totals/evictions"),
        n("/totals/statusUpdates"),
    )
}

/// The address of the stack's running registry container, if there is one.
async fn stack_registry_url(g: &Global) -> Option<String> {
    let stack = StackFile::resolve(&g.stack).ok()?.load().ok()?;
    let port = stack.services.get(REGISTRY_SERVICE)?.port?;
    let rt = Runtime::connect().await.ok()?;
    let containers = rt
        .list_containers(Some(&stack.name), Some(REGISTRY_SERVICE))
        .await
        .ok()?;
    let running = containers.iter().find(|c| c.state == "running")?;
    let ip = running.addresses.get(&stack.network_name())?;
    Some(format!("http://{ip}:{port}"))
}

/// Reads `GET {url}/eureka/apps`.
pub async fn fetch(url: &str) -> Result<Applications> {
    let registry_error = |message: String| Error::Registry {
        url: shown(url),
        message,
    };
    let base = url::Url::parse(url).map_err(|e| registry_error(e.to_string()))?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| registry_error(e.to_string()))?;
    RegistryHttp::new(base, http)
        .applications()
        .await
        .map_err(|e| registry_error(e.to_string()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The JSON of `registry ls`: one flat entry per instance, sorted by app and id.
#[derive(Debug, Serialize)]
pub struct RegistryView {
    pub registry: String,
    pub apps_hashcode: String,
    pub versions_delta: u64,
    pub instances: Vec<InstanceView>,
}

/// One registered instance.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub app: String,
    pub instance_id: String,
    pub status: String,
    pub host_name: String,
    pub ip_addr: String,
    pub port: u16,
    pub url: String,
    pub renewal_interval_secs: u32,
    pub lease_duration_secs: u32,
    /// Milliseconds since the last renewal, when the registry reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_renewal_ms_ago: Option<u64>,
}

impl RegistryView {
    /// Flattens the registry's applications; `now_ms` turns timestamps into ages.
    pub fn new(url: &str, apps: &Applications, now_ms: u64) -> Self {
        let mut instances: Vec<InstanceView> = apps
            .instances()
            .map(|i| InstanceView {
                app: i.app.clone(),
                instance_id: if i.instance_id.is_empty() {
                    i.host_name.clone()
                } else {
                    i.instance_id.clone()
                },
                status: i.effective_status().to_string(),
                host_name: i.host_name.clone(),
                ip_addr: i.ip_addr.clone(),
                port: i.port.port,
                url: i.base_url(),
                renewal_interval_secs: i.lease_info.renewal_interval_in_secs,
                lease_duration_secs: i.lease_info.duration_in_secs,
                last_renewal_ms_ago: (i.lease_info.last_renewal_timestamp > 0)
                    .then(|| now_ms.saturating_sub(i.lease_info.last_renewal_timestamp)),
            })
            .collect();
        instances.sort_by(|a, b| (&a.app, &a.instance_id).cmp(&(&b.app, &b.instance_id)));
        Self {
            registry: url.to_string(),
            apps_hashcode: apps.apps_hashcode.clone(),
            versions_delta: apps.versions_delta,
            instances,
        }
    }

    /// The human rendering: a table, or a line saying the registry is empty.
    pub fn to_text(&self) -> String {
        if self.instances.is_empty() {
            return format!("registry {}: no instances registered\n", self.registry);
        }
        let mut rows = vec![vec![
            "APP".to_string(),
            "INSTANCE".to_string(),
            "STATUS".to_string(),
            "URL".to_string(),
            "RENEWED".to_string(),
        ]];
        for i in &self.instances {
            rows.push(vec![
                i.app.clone(),
                i.instance_id.clone(),
                i.status.clone(),
                i.url.clone(),
                i.last_renewal_ms_ago
                    .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".to_string()),
            ]);
        }
        let apps: std::collections::BTreeSet<&str> =
            self.instances.iter().map(|i| i.app.as_str()).collect();
        format!(
            "registry {}: {} applications, {} instances\n\n{}",
            self.registry,
            apps.len(),
            self.instances.len(),
            output::table(&rows)
        )
    }
}
