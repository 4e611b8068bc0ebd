//! The services panel's data: every service of the stack with its instances, each a container
//! joined to its registry entry (the CLI does the join, the same one `platform status` prints),
//! with Docker's resource figures and the drift between Docker and the registry.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

/// The stack's services as the collectors last saw them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServicesSnapshot {
    /// In the stack file's order of names.
    pub services: Vec<ServiceEntry>,
    /// Whether the registry was read for this snapshot (drift is only known then).
    pub registry_read: bool,
}

/// One service of the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub name: String,
    /// Whether the stack has it register with the registry.
    pub registers: bool,
    /// Why `platform scale` refuses it, when it does (stateful, fixed address, ...).
    pub not_scalable: Option<String>,
    /// Its containers, by instance number.
    pub instances: Vec<InstanceEntry>,
    /// Registry entries of this service that match no running container.
    pub orphans: Vec<Registration>,
}

/// One container of a service, with its registry entry.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceEntry {
    /// 1-based, as `platform.instance` labels it.
    pub number: u32,
    pub container: String,
    /// Docker's state: `running`, `exited`, `paused`, ...
    pub state: String,
    /// Docker's health check status (`healthy`, `starting`, `unhealthy`), when there is one.
    pub health: Option<String>,
    /// Address on the stack network and the service's port.
    pub address: Option<String>,
    /// Restarts by Docker's restart policy, when known.
    pub restarts: Option<i64>,
    /// Whether the kernel OOM-killed its last run.
    pub oom_killed: bool,
    pub registration: Option<Registration>,
    /// The drift sentence, when Docker and the registry disagree about it.
    pub drift: Option<String>,
}

/// A registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub instance_id: String,
    /// The effective status: `UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`.
    pub status: String,
    /// When the lease was last renewed.
    pub renewed: Option<DateTime<Utc>>,
    /// The drift sentence for an orphan ("registered but no container").
    pub drift: Option<String>,
}

/// Docker's resource figures of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContainerStats {
    /// 100 = one core.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
}

impl InstanceEntry {
    /// `order-service-2`.
    pub fn label(&self, service: &str) -> String {
        format!("{service}-{}", self.number)
    }

    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

impl ServiceEntry {
    /// Running instances.
    pub fn running(&self) -> usize {
        self.instances.iter().filter(|i| i.is_running()).count()
    }

    /// Instances the registry lists as UP.
    pub fn up(&self) -> usize {
        self.instances
            .iter()
            .filter_map(|i| i.registration.as_ref())
            .chain(self.orphans.iter())
            .filter(|r| r.status == "UP")
            .count()
    }

    /// Whether anything about it drifted.
    pub fn drifted(&self) -> bool {
        !self.orphans.is_empty() || self.instances.iter().any(|i| i.drift.is_some())
    }
}

impl ServicesSnapshot {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every registry entry by instance id with its status, for change detection.
    pub fn registrations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for s in &self.services {
            for r in s
                .instances
                .iter()
                .filter_map(|i| i.registration.as_ref())
                .chain(s.orphans.iter())
            {
                out.insert(r.instance_id.clone(), r.status.clone());
            }
        }
        out
    }

    /// Every drift sentence.
    pub fn drift(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for s in &self.services {
            out.extend(s.instances.iter().filter_map(|i| i.drift.as_deref()));
            out.extend(s.orphans.iter().filter_map(|o| o.drift.as_deref()));
        }
        out
    }
}

/// Registry changes between two snapshots, as timeline sentences.
pub fn registry_changes(before: &ServicesSnapshot, after: &ServicesSnapshot) -> Vec<String> {
    if !before.registry_read || !after.registry_read {
        return Vec::new();
    }
    let (old, new) = (before.registrations(), after.registrations());
    let mut out = Vec::new();
    for (id, status) in &new {
        match old.get(id) {
            None => out.push(format!("registered {id} ({status})")),
            Some(was) if was != status => out.push(format!("{id}: {was} → {status}")),
            Some(_) => {}
        }
    }
    for id in old.keys().filter(|id| !new.contains_key(*id)) {
        out.push(format!("deregistered {id}"));
    }
    out
}

/// Resource figures by container name.
pub type StatsByContainer = HashMap<String, ContainerStats>;

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, status: &str) -> Registration {
        Registration {
            instance_id: id.into(),
            status: status.into(),
            renewed: None,
            drift: None,
        }
    }

    fn snapshot(regs: &[(&str, &str)]) -> ServicesSnapshot {
        ServicesSnapshot {
            registry_read: true,
            services: vec![ServiceEntry {
                name: "order-service".into(),
                registers: true,
                not_scalable: None,
                instances: Vec::new(),
                orphans: regs.iter().map(|(i, s)| reg(i, s)).collect(),
            }],
        }
    }

    /// New, changed and gone registry entries each make one sentence; an unread registry
    /// makes none (an outage is not a mass deregistration).
    #[test]
    fn registry_changes_are_sentences() {
        let a = snapshot(&[("o-1", "UP"), ("o-2", "STARTING")]);
        let b = snapshot(&[("o-2", "UP"), ("o-3", "UP")]);
        assert_eq!(
            registry_changes(&a, &b),
            vec![
                "o-2: STARTING → UP".to_string(),
                "registered o-3 (UP)".to_string(),
                "deregistered o-1".to_string()
            ]
        );
        let unread = ServicesSnapshot::default();
        assert!(registry_changes(&a, &unread).is_empty());
    }
}
