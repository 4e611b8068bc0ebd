//! The selectable rows of each view, after its `/` filter: the one definition both the key
//! handling (what is selected, what an action aims at) and the panels (what is drawn) use, so
//! the highlighted row is always the one acted on.

use circuit_breaker::Snapshot;

use crate::model::Model;
use crate::model::faults::FaultView;
use crate::model::logs::{LogFilter, LogLine};
use crate::model::services::{InstanceEntry, Registration, ServiceEntry};
use crate::model::timeline::Event;
use crate::model::traces::TraceView;

/// A row of the services view.
#[derive(Debug, Clone, Copy)]
pub enum ServiceRow<'a> {
    Service(&'a ServiceEntry),
    Instance(&'a ServiceEntry, &'a InstanceEntry),
    /// A registry entry without a running container.
    Orphan(&'a ServiceEntry, &'a Registration),
}

impl<'a> ServiceRow<'a> {
    /// The service the row belongs to.
    pub fn service(&self) -> &'a ServiceEntry {
        match self {
            ServiceRow::Service(s) | ServiceRow::Instance(s, _) | ServiceRow::Orphan(s, _) => s,
        }
    }
}

fn matches(filter: &str, fields: &[&str]) -> bool {
    let f = filter.to_lowercase();
    f.split_whitespace()
        .all(|w| fields.iter().any(|x| x.to_lowercase().contains(w)))
}

/// Services and their instances (each service followed by its instances and orphans). A
/// filter that matches a service keeps all its rows; one that matches an instance keeps the
/// service's header and that instance.
pub fn services<'a>(model: &'a Model, filter: &str) -> Vec<ServiceRow<'a>> {
    let mut rows = Vec::new();
    for s in &model.services.services {
        let whole = filter.is_empty() || matches(filter, &[&s.name]);
        let instances: Vec<&InstanceEntry> = s
            .instances
            .iter()
            .filter(|i| {
                whole
                    || matches(
                        filter,
                        &[
                            &i.label(&s.name),
                            &i.container,
                            &i.state,
                            i.registration.as_ref().map_or("", |r| r.status.as_str()),
                        ],
                    )
            })
            .collect();
        let orphans: Vec<&Registration> = s
            .orphans
            .iter()
            .filter(|o| whole || matches(filter, &[&o.instance_id, &o.status]))
            .collect();
        if !whole && instances.is_empty() && orphans.is_empty() {
            continue;
        }
        rows.push(ServiceRow::Service(s));
        rows.extend(instances.into_iter().map(|i| ServiceRow::Instance(s, i)));
        rows.extend(orphans.into_iter().map(|o| ServiceRow::Orphan(s, o)));
    }
    rows
}

/// A row of the breakers view: one breaker of one instance, or an instance that could not be
/// read (and has no earlier snapshot).
#[derive(Debug, Clone, Copy)]
pub struct BreakerRow<'a> {
    pub instance: &'a str,
    pub breaker: Option<&'a Snapshot>,
    pub error: Option<&'a str>,
}

/// Every instance's breakers.
pub fn breakers<'a>(model: &'a Model, filter: &str) -> Vec<BreakerRow<'a>> {
    let mut rows = Vec::new();
    for (instance, state) in &model.breakers.by_instance {
        if state.breakers.is_empty() {
            if filter.is_empty() || matches(filter, &[instance]) {
                rows.push(BreakerRow {
                    instance,
                    breaker: None,
                    error: state.error.as_deref(),
                });
            }
            continue;
        }
        for b in &state.breakers {
            if filter.is_empty() || matches(filter, &[instance, &b.name, b.state.as_str()]) {
                rows.push(BreakerRow {
                    instance,
                    breaker: Some(b),
                    error: state.error.as_deref(),
                });
            }
        }
    }
    rows
}

/// Recent traces matching the filter (id prefix, service, span name, or `error`).
pub fn traces<'a>(model: &'a Model, filter: &str) -> Vec<&'a TraceView> {
    model
        .traces
        .list
        .iter()
        .filter(|t| {
            filter.is_empty()
                || filter.split_whitespace().all(|w| {
                    let w = w.to_lowercase();
                    t.id.starts_with(&w)
                        || (w == "error" && t.error())
                        || t.spans.iter().any(|s| {
                            s.service.to_lowercase().contains(&w)
                                || s.name.to_lowercase().contains(&w)
                        })
                })
        })
        .collect()
}

/// Active faults matching the filter.
pub fn faults<'a>(model: &'a Model, filter: &str) -> Vec<&'a FaultView> {
    model
        .faults
        .iter()
        .filter(|f| filter.is_empty() || matches(filter, &[&f.id, &f.kind, &f.instance]))
        .collect()
}

/// Timeline events matching the filter, newest first.
pub fn events<'a>(model: &'a Model, filter: &str) -> Vec<&'a Event> {
    model
        .timeline
        .iter()
        .rev()
        .filter(|e| filter.is_empty() || matches(filter, &[e.kind.tag(), &e.text]))
        .collect()
}

/// Log lines passing the filter, oldest first.
pub fn logs<'a>(model: &'a Model, filter: &str) -> Vec<&'a LogLine> {
    let f = LogFilter::parse(filter);
    model.logs.lines().filter(|l| f.keeps(l)).collect()
}
