//! The in-memory registry: leases, the status rules, the version counter
//! and the change log that deltas and the watch endpoint answer from.
//!
//! One `RwLock` guards the whole state. Renewals, by far the most frequent
//! call (10,000 instances renewing every 5 s is 2,000 a second), take only
//! the read lock: a lease's last-renewal time is an atomic. Everything that
//! changes what clients see (register, cancel, status, metadata, eviction)
//! takes the write lock, bumps the version, appends to the change log and
//! publishes the new version to watchers, all before releasing the lock, so
//! versions reach watchers in order.
//!
//! Status handling follows Eureka's `AbstractInstanceRegistry`: the served
//! `status` is computed with Eureka's override rules (an instance reporting
//! DOWN/STARTING is believed, else an override wins, else an existing UP or
//! OUT_OF_SERVICE lease keeps its status, else what the instance reports),
//! removing an override leaves the status UNKNOWN so that the next renewal
//! answers 404 and the client registers again with its own status, and a
//! renewal whose `lastDirtyTimestamp` is newer than ours answers 404 too.
//!
//! Versions start at the registry's start time in microseconds, so a
//! restarted registry never reuses the version numbers of the one before:
//! a watcher that remembers an old version always gets a reset, never a
//! wrong incremental answer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kit::clock::Clock;
use kit::registry::model::{
    ActionType, Application, Applications, Change, InstanceInfo, InstanceStatus, WatchResponse,
    apps_hashcode,
};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::RegistryArgs;
use crate::preservation::{
    Evaluation, Expectation, PreservationPolicy, RenewalMeter, expected_renewals,
};

/// The registry's tuning, in milliseconds where it is time.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryOptions {
    pub max_instances: u64,
    pub change_log_capacity: u64,
    pub delta_retention_ms: u64,
    pub renewal_window_ms: u64,
    pub preservation: PreservationPolicy,
}

impl From<&RegistryArgs> for RegistryOptions {
    fn from(a: &RegistryArgs) -> Self {
        RegistryOptions {
            max_instances: a.max_instances,
            change_log_capacity: a.change_log_capacity,
            delta_retention_ms: a.delta_retention.as_millis() as u64,
            renewal_window_ms: a.renewal_window.as_millis() as u64,
            preservation: PreservationPolicy {
                enabled: a.self_preservation,
                threshold: a.renewal_percent_threshold,
                min_instances: a.self_preservation_min_instances,
            },
        }
    }
}

/// Why a registry operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("application {0} is not registered")]
    UnknownApp(String),
    #[error("instance {app}/{id} is not registered")]
    UnknownInstance { app: String, id: String },
    #[error("the registry is full: it holds its maximum of {max} instances")]
    Full { max: u64 },
}

/// Outcome of a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Not registered (or its status was reset by removing an override): 404, register again.
    Unknown,
    /// Renewed, but the client's `lastDirtyTimestamp` is newer than ours: 404 so it registers its new data.
    Resync,
}

/// The lease timestamps Eureka reports in `leaseInfo` (ms since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseTimes {
    pub registration: u64,
    pub last_renewal: u64,
    pub eviction: u64,
    pub service_up: u64,
}

/// One registered instance and its lease.
#[derive(Debug)]
struct Lease {
    /// The instance as served, without lease timestamps (filled in when
    /// rendered). `status` is the computed status, `overridden_status` the
    /// override (UNKNOWN when none). Shared with change-log entries; any
    /// change makes a new copy.
    instance: Arc<InstanceInfo>,
    registered_at: u64,
    /// Written by renewals under the read lock.
    last_renewal: AtomicU64,
    service_up_at: u64,
    last_action: ActionType,
    duration_ms: u64,
    interval_ms: u64,
}

impl Lease {
    fn times(&self, eviction: u64) -> LeaseTimes {
        LeaseTimes {
            registration: self.registered_at,
            last_renewal: self.last_renewal.load(Ordering::Relaxed),
            eviction,
            service_up: self.service_up_at,
        }
    }

    fn expires_at(&self) -> u64 {
        self.last_renewal.load(Ordering::Relaxed) + self.duration_ms
    }

    fn render(&self) -> InstanceInfo {
        render(&self.instance, self.times(0), self.last_action)
    }
}

/// One change, kept for deltas and watchers.
#[derive(Debug, Clone)]
struct LogEntry {
    version: u64,
    at: u64,
    action: ActionType,
    instance: Arc<InstanceInfo>,
    times: LeaseTimes,
}

impl LogEntry {
    fn render(&self) -> InstanceInfo {
        render(&self.instance, self.times, self.action)
    }
}

fn render(instance: &InstanceInfo, times: LeaseTimes, action: ActionType) -> InstanceInfo {
    let mut i = instance.clone();
    i.lease_info.registration_timestamp = times.registration;
    i.lease_info.last_renewal_timestamp = times.last_renewal;
    i.lease_info.eviction_timestamp = times.eviction;
    i.lease_info.service_up_timestamp = times.service_up;
    i.action_type = Some(action);
    i
}

#[derive(Debug, Default)]
struct State {
    /// APP → instance id → lease; sorted so every listing is stable.
    apps: BTreeMap<String, BTreeMap<String, Lease>>,
    count: usize,
    version: u64,
    /// Changes in version order, bounded by count and age.
    log: VecDeque<LogEntry>,
    /// Every change up to this version has left the log.
    floor: u64,
}

/// Totals since the registry started.
#[derive(Debug, Default)]
pub struct Counters {
    pub registrations: AtomicU64,
    pub renewals: AtomicU64,
    pub renewals_unknown: AtomicU64,
    pub cancellations: AtomicU64,
    pub evictions: AtomicU64,
    pub status_updates: AtomicU64,
}

/// Self-preservation as the evictor last decided it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreservationState {
    pub active: bool,
    /// When the current period began (ms since the epoch).
    pub since_ms: Option<u64>,
    /// How often the registry has entered self-preservation.
    pub times_entered: u64,
    pub last: Option<Evaluation>,
}

/// What one evictor pass did.
#[derive(Debug, Clone)]
pub struct Tick {
    pub evaluation: Evaluation,
    pub evicted: Vec<(String, String)>,
    /// Expired leases left in place because of self-preservation.
    pub spared: usize,
    /// The earliest expiry among the remaining leases.
    pub next_expiry_ms: Option<u64>,
}

/// Counts for the admin endpoint, metrics and the status page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub version: u64,
    pub instances: usize,
    pub applications: usize,
    /// (APP, status) → instances.
    #[serde(skip)]
    pub by_app_status: BTreeMap<(String, InstanceStatus), usize>,
    pub change_log_len: usize,
    pub watchers: usize,
    pub registrations: u64,
    pub renewals: u64,
    pub renewals_unknown: u64,
    pub cancellations: u64,
    pub evictions: u64,
    pub status_updates: u64,
}

/// The registry. Shared by the handlers and the evictor behind an `Arc`.
pub struct Registry {
    opts: RegistryOptions,
    clock: Clock,
    started_at: u64,
    state: RwLock<State>,
    /// The current version, for long-polling watchers to wait on.
    version_tx: watch::Sender<u64>,
    /// Renewals (and registrations) over the self-preservation window.
    meter: Mutex<RenewalMeter>,
    counters: Counters,
    /// Written by the evictor, read by the admin endpoint, metrics and page.
    preservation: Mutex<PreservationState>,
    /// Watch requests currently waiting, for metrics.
    watchers: AtomicUsize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// Eureka's status rules (`DownOrStartingRule`, `OverrideExistsRule`,
/// `LeaseExistsRule`, then the instance's own status).
fn resolve_status(
    reported: InstanceStatus,
    overridden: InstanceStatus,
    existing: Option<InstanceStatus>,
) -> InstanceStatus {
    use InstanceStatus::*;
    if !matches!(reported, Up | OutOfService) {
        return reported;
    }
    if overridden != Unknown {
        return overridden;
    }
    if let Some(s @ (Up | OutOfService)) = existing {
        return s;
    }
    reported
}

impl Registry {
    pub fn new(opts: RegistryOptions, clock: Clock) -> Registry {
        let now = clock.now_millis();
        let version = now.saturating_mul(1000);
        Registry {
            opts,
            started_at: now,
            clock,
            state: RwLock::new(State {
                version,
                floor: version,
                ..State::default()
            }),
            version_tx: watch::channel(version).0,
            meter: Mutex::new(RenewalMeter::new(opts.renewal_window_ms)),
            counters: Counters::default(),
            preservation: Mutex::new(PreservationState::default()),
            watchers: AtomicUsize::new(0),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// When the registry started (ms since the epoch).
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    pub fn version(&self) -> u64 {
        *self.version_tx.borrow()
    }

    /// A receiver of the version, changed after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    pub fn preservation(&self) -> PreservationState {
        *self.preservation.lock()
    }

    /// Counts a waiting watcher until the guard drops.
    pub fn watcher(&self) -> WatcherGuard<'_> {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        WatcherGuard(&self.watchers)
    }

    fn record(state: &mut State, opts: &RegistryOptions, entry_for: LogEntryInput, now: u64) {
        state.version += 1;
        state.log.push_back(LogEntry {
            version: state.version,
            at: now,
            action: entry_for.action,
            instance: entry_for.instance,
            times: entry_for.times,
        });
        let oldest_kept = now.saturating_sub(opts.delta_retention_ms);
        while let Some(front) = state.log.front() {
            if state.log.len() as u64 > opts.change_log_capacity || front.at < oldest_kept {
                state.floor = front.version;
                state.log.pop_front();
            } else {
                break;
            }
        }
    }

    fn publish(&self, state: &State) {
        self.version_tx.send_replace(state.version);
    }

    // ---- changes ----------------------------------------------------------

    /// `POST /eureka/apps/{APP}` with a validated instance.
    pub fn register(&self, mut info: InstanceInfo) -> Result<(), RegistryError> {
        let now = self.clock.now_millis();
        let mut guard = self.state.write();
        let state = &mut *guard;
        let app_key = info.app.clone();
        let id = info.instance_id.clone();
        let existing = state.apps.get(&app_key).and_then(|m| m.get(&id));
        if existing.is_none() && state.count as u64 >= self.opts.max_instances {
            return Err(RegistryError::Full {
                max: self.opts.max_instances,
            });
        }
        let mut overridden = existing
            .map(|e| e.instance.overridden_status)
            .unwrap_or(InstanceStatus::Unknown);
        let existing_status = existing.map(|e| e.instance.status);
        let service_up_kept = existing.map(|e| e.service_up_at).unwrap_or(0);
        if let Some(e) = existing {
            // Eureka keeps what it has when the registrant's data is older.
            if e.instance.last_dirty_timestamp > info.last_dirty_timestamp {
                info = (*e.instance).clone();
            }
        }
        if overridden == InstanceStatus::Unknown {
            overridden = info.overridden_status;
        }
        info.overridden_status = overridden;
        info.status = resolve_status(info.status, overridden, existing_status);
        info.last_updated_timestamp = now;
        info.action_type = None;
        info.lease_info.registration_timestamp = 0;
        info.lease_info.last_renewal_timestamp = 0;
        info.lease_info.eviction_timestamp = 0;
        info.lease_info.service_up_timestamp = 0;
        let service_up_at = if service_up_kept == 0 && info.status == InstanceStatus::Up {
            now
        } else {
            service_up_kept
        };
        let lease = Lease {
            duration_ms: u64::from(info.lease_info.duration_in_secs) * 1000,
            interval_ms: u64::from(info.lease_info.renewal_interval_in_secs) * 1000,
            instance: Arc::new(info),
            registered_at: now,
            last_renewal: AtomicU64::new(now),
            service_up_at,
            last_action: ActionType::Added,
        };
        let input = LogEntryInput {
            action: ActionType::Added,
            instance: lease.instance.clone(),
            times: lease.times(0),
        };
        let previous = state.apps.entry(app_key).or_default().insert(id, lease);
        if previous.is_none() {
            state.count += 1;
        }
        Self::record(state, &self.opts, input, now);
        self.publish(state);
        drop(guard);
        self.counters.registrations.fetch_add(1, Ordering::Relaxed);
        self.meter.lock().record(now);
        Ok(())
    }

    /// `PUT /eureka/apps/{APP}/{ID}`.
    pub fn renew(&self, app: &str, id: &str, last_dirty: Option<u64>) -> Renewal {
        let now = self.clock.now_millis();
        let state = self.state.read();
        let Some(lease) = state.apps.get(app).and_then(|m| m.get(id)) else {
            self.counters
                .renewals_unknown
                .fetch_add(1, Ordering::Relaxed);
            return Renewal::Unknown;
        };
        if lease.instance.status == InstanceStatus::Unknown {
            // Eureka: "status UNKNOWN possibly due to deleted override; re-register required".
            self.counters
                .renewals_unknown
                .fetch_add(1, Ordering::Relaxed);
            return Renewal::Unknown;
        }
        lease.last_renewal.store(now, Ordering::Relaxed);
        let ours = lease.instance.last_dirty_timestamp;
        drop(state);
        self.counters.renewals.fetch_add(1, Ordering::Relaxed);
        self.meter.lock().record(now);
        match last_dirty {
            Some(theirs) if theirs > ours => Renewal::Resync,
            _ => Renewal::Renewed,
        }
    }

    /// `DELETE /eureka/apps/{APP}/{ID}`.
    pub fn cancel(&self, app: &str, id: &str) -> Result<(), RegistryError> {
        let now = self.clock.now_millis();
        let mut guard = self.state.write();
        let state = &mut *guard;
        let lease = self.remove(state, app, id)?;
        let input = LogEntryInput {
            action: ActionType::Deleted,
            instance: lease.instance.clone(),
            times: lease.times(now),
        };
        Self::record(state, &self.opts, input, now);
        self.publish(state);
        drop(guard);
        self.counters.cancellations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(app, instance_id = id, "cancelled");
        Ok(())
    }

    fn remove(&self, state: &mut State, app: &str, id: &str) -> Result<Lease, RegistryError> {
        let unknown = || RegistryError::UnknownInstance {
            app: app.to_string(),
            id: id.to_string(),
        };
        let m = state.apps.get_mut(app).ok_or_else(unknown)?;
        let lease = m.remove(id).ok_or_else(unknown)?;
        if m.is_empty() {
            state.apps.remove(app);
        }
        state.count -= 1;
        Ok(lease)
    }

    /// Applies `change` to one lease (renewing it, as Eureka does for
    /// status calls); when it returns true the instance changed and is
    /// logged as MODIFIED.
    fn modify(
        &self,
        app: &str,
        id: &str,
        change: impl FnOnce(&mut Lease, u64) -> bool,
    ) -> Result<bool, RegistryError> {
        let now = self.clock.now_millis();
        let mut guard = self.state.write();
        let state = &mut *guard;
        let lease = state
            .apps
            .get_mut(app)
            .and_then(|m| m.get_mut(id))
            .ok_or_else(|| RegistryError::UnknownInstance {
                app: app.to_string(),
                id: id.to_string(),
            })?;
        lease.last_renewal.store(now, Ordering::Relaxed);
        if !change(lease, now) {
            return Ok(false);
        }
        Arc::make_mut(&mut lease.instance).last_updated_timestamp = now;
        lease.last_action = ActionType::Modified;
        let input = LogEntryInput {
            action: ActionType::Modified,
            instance: lease.instance.clone(),
            times: lease.times(0),
        };
        Self::record(state, &self.opts, input, now);
        self.publish(state);
        drop(guard);
        self.counters.status_updates.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// `PUT .../{ID}/status?value=..`: an override such as OUT_OF_SERVICE.
    /// Returns whether anything changed (Eureka ignores a status the
    /// instance already has).
    pub fn set_status(
        &self,
        app: &str,
        id: &str,
        status: InstanceStatus,
        last_dirty: Option<u64>,
    ) -> Result<bool, RegistryError> {
        self.modify(app, id, |lease, now| {
            if lease.instance.status == status {
                return false;
            }
            if status == InstanceStatus::Up && lease.service_up_at == 0 {
                lease.service_up_at = now;
            }
            let i = Arc::make_mut(&mut lease.instance);
            i.overridden_status = status;
            i.status = status;
            if let Some(d) = last_dirty {
                i.last_dirty_timestamp = i.last_dirty_timestamp.max(d);
            }
            true
        })
    }

    /// `DELETE .../{ID}/status[?value=..]`: removes an override. The status
    /// becomes `status` (UNKNOWN by default, so the next renewal asks the
    /// client to register again with its own status, as Eureka does).
    pub fn remove_override(
        &self,
        app: &str,
        id: &str,
        status: InstanceStatus,
        last_dirty: Option<u64>,
    ) -> Result<bool, RegistryError> {
        self.modify(app, id, |lease, _| {
            if lease.instance.overridden_status == InstanceStatus::Unknown {
                return false;
            }
            let i = Arc::make_mut(&mut lease.instance);
            i.overridden_status = InstanceStatus::Unknown;
            i.status = status;
            if let Some(d) = last_dirty {
                i.last_dirty_timestamp = i.last_dirty_timestamp.max(d);
            }
            true
        })
    }

    /// `PUT .../{ID}/metadata?k=v`: merges the pairs into the metadata.
    pub fn update_metadata(
        &self,
        app: &str,
        id: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<bool, RegistryError> {
        self.modify(app, id, |lease, _| {
            if pairs
                .iter()
                .all(|(k, v)| lease.instance.metadata.get(k) == Some(v))
            {
                return false;
            }
            let i = Arc::make_mut(&mut lease.instance);
            i.metadata.extend(pairs);
            true
        })
    }

    /// One evictor pass: evaluates the renewal rate and, unless that
    /// engages self-preservation, evicts every expired lease.
    pub fn tick(&self) -> Tick {
        let now = self.clock.now_millis();
        let (count, expected, expired, next_expiry) = {
            let state = self.state.read();
            let leases = || state.apps.values().flat_map(|m| m.values());
            let expected = expected_renewals(
                leases().map(|l| Expectation {
                    registered_at_ms: l.registered_at,
                    interval_ms: l.interval_ms,
                }),
                now,
                self.started_at,
                self.opts.renewal_window_ms,
            );
            let mut expired = Vec::new();
            let mut next: Option<u64> = None;
            for l in leases() {
                let at = l.expires_at();
                if now >= at {
                    expired.push((l.instance.app.clone(), l.instance.instance_id.clone()));
                } else {
                    next = Some(next.map_or(at, |n: u64| n.min(at)));
                }
            }
            (state.count, expected, expired, next)
        };
        let measured = self.meter.lock().count(now, self.opts.renewal_window_ms);
        let evaluation = self
            .opts
            .preservation
            .evaluate(count, measured, expected, now);
        self.note_preservation(evaluation);

        let mut evicted = Vec::new();
        let mut spared = 0;
        if evaluation.preserving {
            spared = expired.len();
        } else if !expired.is_empty() {
            let mut guard = self.state.write();
            let state = &mut *guard;
            for (app, id) in expired {
                let still_expired = state
                    .apps
                    .get(&app)
                    .and_then(|m| m.get(&id))
                    .is_some_and(|l| now >= l.expires_at());
                if !still_expired {
                    continue;
                }
                if let Ok(lease) = self.remove(state, &app, &id) {
                    let input = LogEntryInput {
                        action: ActionType::Deleted,
                        instance: lease.instance.clone(),
                        times: lease.times(now),
                    };
                    Self::record(state, &self.opts, input, now);
                    tracing::warn!(
                        app = %app,
                        instance_id = %id,
                        silent_ms = now - lease.last_renewal.load(Ordering::Relaxed),
                        "evicted: lease expired"
                    );
                    evicted.push((app, id));
                }
            }
            self.publish(state);
            drop(guard);
            self.counters
                .evictions
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        }
        Tick {
            evaluation,
            evicted,
            spared,
            next_expiry_ms: next_expiry,
        }
    }

    fn note_preservation(&self, e: Evaluation) {
        let mut p = self.preservation.lock();
        if e.preserving && !p.active {
            p.active = true;
            p.since_ms = Some(e.at_ms);
            p.times_entered += 1;
            tracing::warn!(
                measured = e.measured,
                expected = e.expected,
                threshold = e.threshold,
                instances = e.instances,
                "entering self-preservation: renewals fell below the threshold; evictions stop"
            );
        } else if !e.preserving && p.active {
            p.active = false;
            p.since_ms = None;
            tracing::info!(
                measured = e.measured,
                expected = e.expected,
                "leaving self-preservation: renewals recovered; evictions resume"
            );
        }
        p.last = Some(e);
    }

    // ---- reads ------------------------------------------------------------

    fn applications_of(
        state: &State,
        version: u64,
        filter: impl Fn(&InstanceInfo) -> bool,
    ) -> Applications {
        let application: Vec<Application> = state
            .apps
            .iter()
            .filter_map(|(name, m)| {
                let instance: Vec<InstanceInfo> = m
                    .values()
                    .filter(|l| filter(&l.instance))
                    .map(Lease::render)
                    .collect();
                (!instance.is_empty()).then(|| Application {
                    name: name.clone(),
                    instance,
                })
            })
            .collect();
        Applications {
            versions_delta: version,
            apps_hashcode: apps_hashcode(application.iter().flat_map(|a| a.instance.iter())),
            application,
        }
    }

    /// `GET /eureka/apps`: the whole registry.
    pub fn applications(&self) -> Applications {
        let state = self.state.read();
        Self::applications_of(&state, state.version, |_| true)
    }

    /// `GET /eureka/vips/{vip}` and `/svips/{svip}`: instances whose
    /// (secure) VIP address list contains `vip`, with the hash code of
    /// that subset, as Eureka answers.
    pub fn by_vip(&self, vip: &str, secure: bool) -> Applications {
        let state = self.state.read();
        Self::applications_of(&state, state.version, |i| {
            let list = if secure {
                &i.secure_vip_address
            } else {
                &i.vip_address
            };
            list.split(',').any(|v| v == vip)
        })
    }

    /// `GET /eureka/apps/{APP}`.
    pub fn application(&self, app: &str) -> Option<Application> {
        let state = self.state.read();
        let m = state.apps.get(app)?;
        Some(Application {
            name: app.to_string(),
            instance: m.values().map(Lease::render).collect(),
        })
    }

    /// `GET /eureka/apps/{APP}/{ID}`.
    pub fn instance(&self, app: &str, id: &str) -> Option<InstanceInfo> {
        let state = self.state.read();
        state.apps.get(app)?.get(id).map(Lease::render)
    }

    /// `GET /eureka/instances/{ID}`: the first instance with this id in any application.
    pub fn instance_by_id(&self, id: &str) -> Option<InstanceInfo> {
        let state = self.state.read();
        state
            .apps
            .values()
            .find_map(|m| m.get(id))
            .map(Lease::render)
    }

    /// `GET /eureka/apps/delta`: every instance changed within the delta
    /// retention, once each with its latest action, and the hash code of
    /// the whole registry (clients check their merged view against it).
    pub fn delta(&self) -> Applications {
        let now = self.clock.now_millis();
        let state = self.state.read();
        let oldest = now.saturating_sub(self.opts.delta_retention_ms);
        let mut latest: HashMap<(&str, &str), &LogEntry> = HashMap::new();
        for e in state.log.iter().filter(|e| e.at >= oldest) {
            latest.insert((&e.instance.app, &e.instance.instance_id), e);
        }
        let mut grouped: BTreeMap<&str, BTreeMap<&str, InstanceInfo>> = BTreeMap::new();
        for ((app, id), e) in latest {
            grouped.entry(app).or_default().insert(id, e.render());
        }
        let all = state
            .apps
            .values()
            .flat_map(|m| m.values())
            .map(|l| l.instance.as_ref());
        Applications {
            versions_delta: state.version,
            apps_hashcode: apps_hashcode(all),
            application: grouped
                .into_iter()
                .map(|(name, m)| Application {
                    name: name.to_string(),
                    instance: m.into_values().collect(),
                })
                .collect(),
        }
    }

    /// The watch answer for `since`, without waiting: the changes after it,
    /// or the whole registry as ADDED (`reset`) when `since` is 0, newer
    /// than the current version (the registry restarted) or older than the
    /// change log.
    pub fn changes_since(&self, since: u64) -> WatchResponse {
        let state = self.state.read();
        if since == 0 || since > state.version || since < state.floor {
            let changes = state
                .apps
                .values()
                .flat_map(|m| m.values())
                .map(|l| Change {
                    action: ActionType::Added,
                    instance: l.render(),
                })
                .collect();
            return WatchResponse {
                version: state.version,
                reset: true,
                changes,
            };
        }
        let start = state.log.partition_point(|e| e.version <= since);
        let changes = state
            .log
            .range(start..)
            .map(|e| Change {
                action: e.action,
                instance: e.render(),
            })
            .collect();
        WatchResponse {
            version: state.version,
            reset: false,
            changes,
        }
    }

    /// Counts for the admin endpoint, metrics and the status page.
    pub fn stats(&self) -> Stats {
        let state = self.state.read();
        let mut by_app_status = BTreeMap::new();
        for (app, m) in &state.apps {
            for l in m.values() {
                *by_app_status
                    .entry((app.clone(), l.instance.status))
                    .or_default() += 1;
            }
        }
        let c = &self.counters;
        Stats {
            version: state.version,
            instances: state.count,
            applications: state.apps.len(),
            by_app_status,
            change_log_len: state.log.len(),
            watchers: self.watchers.load(Ordering::Relaxed),
            registrations: c.registrations.load(Ordering::Relaxed),
            renewals: c.renewals.load(Ordering::Relaxed),
            renewals_unknown: c.renewals_unknown.load(Ordering::Relaxed),
            cancellations: c.cancellations.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            status_updates: c.status_updates.load(Ordering::Relaxed),
        }
    }
}

struct LogEntryInput {
    action: ActionType,
    instance: Arc<InstanceInfo>,
    times: LeaseTimes,
}

/// Keeps a watcher counted while it waits.
pub struct WatcherGuard<'a>(&'a AtomicUsize);

impl Drop for WatcherGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn registry(min_instances: usize) -> Registry {
        let args = RegistryArgs {
            self_preservation_min_instances: min_instances,
            ..RegistryArgs::default()
        };
        Registry::new(RegistryOptions::from(&args), Clock::manual(T0))
    }

    fn inst(app: &str, id: &str) -> InstanceInfo {
        let mut i = InstanceInfo::new(app, id, "h", "127.0.0.1", 8080);
        i.normalize_and_validate(app).unwrap();
        i
    }

    fn advance(r: &Registry, secs: u64) {
        r.clock().advance(Duration::from_secs(secs));
    }

    /// Eureka's status rules: DOWN/STARTING believed, then the override, then an existing UP/OOS lease, then the report.
    #[test]
    fn status_rules() {
        use InstanceStatus::*;
        assert_eq!(resolve_status(Down, OutOfService, Some(Up)), Down);
        assert_eq!(resolve_status(Starting, Unknown, None), Starting);
        assert_eq!(resolve_status(Up, OutOfService, Some(Up)), OutOfService);
        assert_eq!(resolve_status(OutOfService, Unknown, Some(Up)), Up);
        assert_eq!(resolve_status(Up, Unknown, Some(Down)), Up);
        assert_eq!(resolve_status(Up, Unknown, None), Up);
    }

    /// Registering, renewing and cancelling bump the version only for changes, and the log replays them in order.
    #[test]
    fn versions_and_changes() {
        let r = registry(5);
        let v0 = r.version();
        r.register(inst("a", "1")).unwrap();
        r.register(inst("a", "2")).unwrap();
        assert_eq!(r.version(), v0 + 2);
        advance(&r, 1);
        assert_eq!(r.renew("A", "1", None), Renewal::Renewed);
        assert_eq!(r.version(), v0 + 2, "renewals are not changes");
        r.cancel("A", "2").unwrap();
        let w = r.changes_since(v0 + 1);
        assert!(!w.reset);
        assert_eq!(w.version, v0 + 3);
        let actions: Vec<_> = w
            .changes
            .iter()
            .map(|c| (c.action, c.instance.instance_id.as_str()))
            .collect();
        assert_eq!(
            actions,
            [(ActionType::Added, "2"), (ActionType::Deleted, "2")]
        );
        assert!(w.changes[1].instance.lease_info.eviction_timestamp > 0);
        for since in [0, v0 - 1, v0 + 100] {
            let w = r.changes_since(since);
            assert!(w.reset, "{since}");
            assert_eq!(w.changes.len(), 1);
        }
        assert!(r.changes_since(v0 + 3).changes.is_empty());
    }

    /// A lease expires exactly after its duration without renewal and is then evicted, as DELETED.
    #[test]
    fn lease_expiry() {
        let r = registry(5);
        r.register(inst("a", "1")).unwrap();
        advance(&r, 10);
        assert_eq!(r.renew("A", "1", None), Renewal::Renewed);
        advance(&r, 14);
        let t = r.tick();
        assert!(t.evicted.is_empty());
        assert_eq!(t.next_expiry_ms, Some(T0 + 25_000));
        advance(&r, 1);
        let t = r.tick();
        assert_eq!(t.evicted, [("A".to_string(), "1".to_string())]);
        assert!(r.applications().application.is_empty());
        assert_eq!(r.renew("A", "1", None), Renewal::Unknown);
        assert_eq!(r.stats().evictions, 1);
    }

    /// An override sets the served status and survives re-registration; removing it leaves UNKNOWN until the client registers again.
    #[test]
    fn overrides() {
        let r = registry(5);
        r.register(inst("a", "1")).unwrap();
        assert!(
            r.set_status("A", "1", InstanceStatus::OutOfService, None)
                .unwrap()
        );
        assert!(
            !r.set_status("A", "1", InstanceStatus::OutOfService, None)
                .unwrap()
        );
        let i = r.instance("A", "1").unwrap();
        assert_eq!(i.status, InstanceStatus::OutOfService);
        assert_eq!(i.overridden_status, InstanceStatus::OutOfService);
        assert_eq!(i.action_type, Some(ActionType::Modified));
        r.register(inst("a", "1")).unwrap();
        assert_eq!(
            r.instance("A", "1").unwrap().status,
            InstanceStatus::OutOfService
        );
        assert!(
            r.remove_override("A", "1", InstanceStatus::Unknown, None)
                .unwrap()
        );
        assert_eq!(
            r.instance("A", "1").unwrap().status,
            InstanceStatus::Unknown
        );
        assert_eq!(r.renew("A", "1", None), Renewal::Unknown);
        r.register(inst("a", "1")).unwrap();
        assert_eq!(r.instance("A", "1").unwrap().status, InstanceStatus::Up);
        assert_eq!(
            r.set_status("A", "9", InstanceStatus::Up, None),
            Err(RegistryError::UnknownInstance {
                app: "A".into(),
                id: "9".into()
            })
        );
    }

    /// A renewal carrying a newer lastDirtyTimestamp asks the client to register again; an older registration keeps our data.
    #[test]
    fn dirty_timestamps() {
        let r = registry(5);
        let mut i = inst("a", "1");
        i.last_dirty_timestamp = 100;
        i.metadata.insert("v".into(), "new".into());
        r.register(i.clone()).unwrap();
        assert_eq!(r.renew("A", "1", Some(100)), Renewal::Renewed);
        assert_eq!(r.renew("A", "1", Some(99)), Renewal::Renewed);
        assert_eq!(r.renew("A", "1", Some(101)), Renewal::Resync);
        let mut old = i;
        old.last_dirty_timestamp = 50;
        old.metadata.insert("v".into(), "old".into());
        r.register(old).unwrap();
        assert_eq!(r.instance("A", "1").unwrap().metadata["v"], "new");
    }

    /// Deltas hold each instance changed within the retention once, with its latest action and the full registry's hash code.
    #[test]
    fn delta_retention() {
        let r = registry(5);
        r.register(inst("a", "1")).unwrap();
        advance(&r, 200);
        r.register(inst("a", "2")).unwrap();
        r.update_metadata("A", "2", vec![("k".into(), "v".into())])
            .unwrap();
        let d = r.delta();
        let ids: Vec<_> = d
            .instances()
            .map(|i| (i.instance_id.as_str(), i.action_type))
            .collect();
        assert_eq!(ids, [("2", Some(ActionType::Modified))]);
        assert_eq!(d.apps_hashcode, "UP_2_");
        assert_eq!(d.versions_delta, r.version());
    }

    /// The registry refuses registrations beyond its maximum, but re-registering a known instance still works.
    #[test]
    fn capacity() {
        let args = RegistryArgs {
            max_instances: 1,
            ..RegistryArgs::default()
        };
        let r = Registry::new(RegistryOptions::from(&args), Clock::manual(T0));
        r.register(inst("a", "1")).unwrap();
        assert_eq!(
            r.register(inst("a", "2")),
            Err(RegistryError::Full { max: 1 })
        );
        r.register(inst("a", "1")).unwrap();
    }

    fn run_for(r: &Registry, secs: u64, alive: &[&str]) -> Vec<Tick> {
        let mut ticks = Vec::new();
        for _ in 0..secs {
            advance(r, 1);
            let now_s = (r.clock().now_millis() - T0) / 1000;
            if now_s.is_multiple_of(5) {
                for id in alive {
                    r.renew("A", id, None);
                }
            }
            ticks.push(r.tick());
        }
        ticks
    }

    /// Losing most renewals engages self-preservation before any lease expires; it ends when renewals recover, and only then is the dead instance evicted.
    #[test]
    fn self_preservation_enters_and_leaves() {
        let r = registry(5);
        let ids: Vec<String> = (0..10).map(|n| n.to_string()).collect();
        for id in &ids {
            r.register(inst("a", id)).unwrap();
        }
        let all: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ticks = run_for(&r, 120, &all);
        assert!(
            ticks.iter().all(|t| !t.evaluation.preserving),
            "fresh and healthy registry"
        );
        // The registry's network breaks: no renewals at all.
        let ticks = run_for(&r, 20, &[]);
        let entered = ticks.iter().position(|t| t.evaluation.preserving).unwrap();
        assert!(
            entered < 15,
            "engaged after {entered} s, before leases expire"
        );
        assert!(ticks.iter().all(|t| t.evicted.is_empty()));
        assert!(ticks.last().unwrap().spared == 10);
        assert!(r.preservation().active);
        // Nine recover, one stays dead.
        let ticks = run_for(&r, 70, &all[1..]);
        let left = ticks.iter().position(|t| !t.evaluation.preserving).unwrap();
        assert_eq!(ticks[left].evicted, [("A".to_string(), "0".to_string())]);
        assert_eq!(r.stats().instances, 9);
        assert!(!r.preservation().active);
        assert_eq!(r.preservation().times_entered, 1);
    }

    /// With two instances (below the minimum), one dead instance is evicted within its lease.
    #[test]
    fn small_registry_evicts_within_lease() {
        let r = registry(5);
        r.register(inst("a", "1")).unwrap();
        r.register(inst("a", "2")).unwrap();
        run_for(&r, 60, &["1", "2"]);
        let ticks = run_for(&r, 20, &["1"]);
        let at = ticks.iter().position(|t| !t.evicted.is_empty()).unwrap() + 1;
        // Last renewal of "2" was at 60 s; the lease is 15 s.
        assert_eq!(at, 15);
        assert!(ticks.iter().all(|t| !t.evaluation.preserving));
    }
}
