//! The classic consumer-group protocol's coordinator: JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup, session expiry and rebalance timeouts, as a state machine per group:
//!
//! ```text
//! Empty --join--> PreparingRebalance --all known members rejoined, or rebalance timeout-->
//!   CompletingRebalance --leader's SyncGroup--> Stable --join / leave / session expiry--> Preparing...
//! ```
//!
//! A JoinGroup waits (its response is sent through a oneshot channel) until the rebalance
//! completes: every member that was in the group has rejoined, or the largest rebalance timeout
//! of the members has passed, after which the ones that did not rejoin are removed. The leader
//! (the previous leader if it rejoined, else the first to join) gets every member's metadata and
//! sends the assignment in its SyncGroup; the other members' SyncGroups wait for it. Members that
//! neither heartbeat nor wait in a JoinGroup/SyncGroup for their session timeout are removed and
//! the group rebalances. Group membership is in memory only (as in Kafka, members rejoin after a
//! broker restart); committed offsets are in the [`crate::store::Store`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// A group's state (the names DescribeGroups and ListGroups report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup is answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's (id, group instance id, metadata) for the leader; empty for the others.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: error.code(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup is answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is given one and asked to join again with it.
    pub require_known_member_id: bool,
}

/// A member, as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group, as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    joined: u64,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    rebalance_deadline: Instant,
    joins: u64,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: Instant::now(),
            joins: 0,
        }
    }

    /// Whether some protocol is supported by every member and by `protocols`.
    fn supports(&self, protocols: &[(String, Bytes)]) -> bool {
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration, reason: &str, id: &str) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let timeout = if self.state == GroupState::Empty {
            initial_delay
        } else {
            self.members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default()
        };
        tracing::info!(
            group = id,
            reason,
            generation = self.generation,
            "rebalancing"
        );
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = now + timeout;
    }

    fn all_rejoined(&self) -> bool {
        self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase: members that did not rejoin leave, the generation advances, the
    /// leader gets the member list.
    fn complete_join(&mut self, id: &str) {
        let before = self.members.len();
        self.members.retain(|_, m| m.join_waiter.is_some());
        if self.members.len() < before {
            tracing::info!(
                group = id,
                removed = before - self.members.len(),
                "members that did not rejoin in time left the group"
            );
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self
                .members
                .iter()
                .min_by_key(|(_, m)| m.joined)
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
        };
        let protocol = self.members[&leader]
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
        self.protocol = protocol;
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata(self.protocol.as_deref()),
                )
            })
            .collect();
        tracing::info!(
            group = id,
            generation = self.generation,
            members = all.len(),
            leader = %leader,
            "group joined"
        );
        let now = Instant::now();
        for (member_id, m) in self.members.iter_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(JoinResult {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: member_id.clone(),
                    members: if *member_id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// A member's request in `generation` (heartbeat, commit): the member's liveness is renewed
    /// when it is known; the group's state when it is and the generation is current, else the
    /// error that tells it what to do.
    fn seen(&mut self, member_id: &str, generation: i32) -> Result<GroupState, ResponseError> {
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(self.state)
    }

    /// After members left: rebalance the rest, or become Empty.
    fn after_removal(&mut self, now: Instant, id: &str, reason: &str) {
        if self.members.is_empty() {
            if self.state != GroupState::Empty {
                self.generation += 1;
            }
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, Duration::ZERO, reason, id)
            }
            GroupState::PreparingRebalance if self.all_rejoined() => self.complete_join(id),
            _ => {}
        }
    }
}

/// Why a JoinGroup or SyncGroup was answered at once.
pub type Immediate<T> = Result<oneshot::Receiver<T>, T>;

/// Shortest wait between two [`Coordinator::tick`]s: while a group prepares a rebalance.
pub const TICK_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two ticks: a member that joins after one is checked by the next at
/// the latest, so its session expires at most this late.
pub const TICK_MAX: Duration = Duration::from_secs(1);

/// The group coordinator.
#[derive(Debug)]
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    initial_delay: Duration,
}

impl Coordinator {
    /// `initial_delay`: how long a new (empty) group waits for more members before its first
    /// generation (Kafka's `group.initial.rebalance.delay.ms`).
    pub fn new(initial_delay: Duration) -> Coordinator {
        Coordinator {
            groups: Mutex::new(BTreeMap::new()),
            initial_delay,
        }
    }

    pub fn join(&self, req: JoinRequest) -> Immediate<JoinResult> {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        let g = groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        if req.protocols.is_empty()
            || (!g.members.is_empty()
                && (g.protocol_type.as_deref() != Some(req.protocol_type.as_str())
                    || !g.supports(&req.protocols)))
        {
            return Err(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        let member_id = if req.member_id.is_empty() {
            let id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if req.require_known_member_id {
                return Err(JoinResult::error(ResponseError::MemberIdRequired, &id));
            }
            id
        } else {
            req.member_id.clone()
        };
        let (tx, rx) = oneshot::channel();
        g.joins += 1;
        let joined = g.joins;
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                group_instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                joined,
                join_waiter: None,
                sync_waiter: None,
            });
        member.group_instance_id = req.group_instance_id;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.protocols = req.protocols;
        member.last_seen = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinResult::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        }
        g.protocol_type = Some(req.protocol_type);
        if g.state != GroupState::PreparingRebalance {
            g.prepare_rebalance(now, self.initial_delay, "member joined", &req.group_id);
        }
        if g.all_rejoined() && (now >= g.rebalance_deadline || g.generation > 0) {
            g.complete_join(&req.group_id);
        }
        Ok(rx)
    }

    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Immediate<SyncResult> {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Err(SyncResult::error(ResponseError::UnknownMemberId));
        };
        if !g.members.contains_key(member_id) {
            return Err(SyncResult::error(ResponseError::UnknownMemberId));
        }
        if generation != g.generation {
            return Err(SyncResult::error(ResponseError::IllegalGeneration));
        }
        let protocol_type = g.protocol_type.clone();
        let protocol_name = g.protocol.clone();
        let now = Instant::now();
        match g.state {
            GroupState::Empty => Err(SyncResult::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Err(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let m = g.members.get_mut(member_id).expect("checked");
                m.last_seen = now;
                Err(SyncResult {
                    error: 0,
                    protocol_type,
                    protocol_name,
                    assignment: m.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                {
                    let m = g.members.get_mut(member_id).expect("checked");
                    m.last_seen = now;
                    m.sync_waiter = Some(tx);
                }
                if g.leader.as_deref() == Some(member_id) {
                    let mut assignments: BTreeMap<String, Bytes> =
                        assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = assignments.remove(id).unwrap_or_default();
                        if let Some(tx) = m.sync_waiter.take() {
                            let _ = tx.send(SyncResult {
                                error: 0,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                    g.state = GroupState::Stable;
                    tracing::info!(group = group_id, generation, "group stable");
                }
                Ok(rx)
            }
        }
    }

    /// A member's heartbeat: `None` when it is fine, else the error that tells it what to do.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Option<ResponseError> {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let state = match g.seen(member_id, generation) {
            Ok(state) => state,
            Err(e) => return Some(e),
        };
        match state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            _ => None,
        }
    }

    /// Removes members; per member: `None` when it left, else the error.
    pub fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Option<ResponseError>> {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return member_ids
                .iter()
                .map(|_| Some(ResponseError::UnknownMemberId))
                .collect();
        };
        let mut out = Vec::with_capacity(member_ids.len());
        let mut removed = false;
        for id in member_ids {
            match g.members.remove(id) {
                Some(m) => {
                    if let Some(tx) = m.join_waiter {
                        let _ = tx.send(JoinResult::error(ResponseError::UnknownMemberId, id));
                    }
                    tracing::info!(group = group_id, member = %id, "member left");
                    removed = true;
                    out.push(None);
                }
                None => out.push(Some(ResponseError::UnknownMemberId)),
            }
        }
        if removed {
            g.after_removal(Instant::now(), group_id, "member left");
        }
        out
    }

    /// Whether a commit from this member and generation is accepted (`None`) or why not.
    /// Generation -1 with no member id is a commit from outside the group protocol (manual
    /// assignment, admin tools): always accepted.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Option<ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return None;
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Some(ResponseError::IllegalGeneration);
        };
        let state = match g.seen(member_id, generation) {
            Ok(state) => state,
            Err(e) => return Some(e),
        };
        if state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    /// Session expiry and rebalance timeouts. Returns how long the caller may wait before the
    /// next call: until the earliest session can expire, at most [`TICK_MAX`]; [`TICK_MIN`]
    /// while a group prepares a rebalance (a tick may complete its join).
    pub fn tick(&self) -> Duration {
        let now = Instant::now();
        let mut next = TICK_MAX;
        let mut groups = self.groups.lock();
        for (id, g) in groups.iter_mut() {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for member in &expired {
                g.members.remove(member);
                tracing::warn!(group = %id, member = %member, "session expired: member removed");
            }
            if !expired.is_empty() {
                g.after_removal(now, id, "session expired");
            }
            if g.state == GroupState::PreparingRebalance
                && (now >= g.rebalance_deadline || (g.all_rejoined() && g.generation > 0))
            {
                g.complete_join(id);
            }
            if g.state == GroupState::PreparingRebalance {
                next = next.min(TICK_MIN);
            }
            for m in g.members.values() {
                if m.join_waiter.is_none() && m.sync_waiter.is_none() {
                    next =
                        next.min((m.last_seen + m.session_timeout).saturating_duration_since(now));
                }
            }
        }
        next.max(TICK_MIN)
    }

    /// (group id, protocol type, state) of every group with members or a history here.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.groups
            .lock()
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: g.protocol.clone().unwrap_or_default(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(g.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(c: &Coordinator, member: &str) -> Immediate<JoinResult> {
        c.join(JoinRequest {
            group_id: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_millis(100),
            rebalance_timeout: Duration::from_millis(200),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: true,
        })
    }

    fn joined(rx: Immediate<JoinResult>) -> JoinResult {
        let mut rx = rx.expect("waits");
        rx.try_recv().expect("answered")
    }

    #[test]
    fn two_members_join_sync_and_rebalance_on_expiry() {
        let c = Coordinator::new(Duration::ZERO);
        // v4+: a member without id is given one.
        let first = join(&c, "").unwrap_err();
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        let a = first.member_id;
        let ra = joined(join(&c, &a));
        assert_eq!((ra.generation, ra.leader.as_str()), (1, a.as_str()));
        assert_eq!(ra.members.len(), 1);
        let sa = c.sync("g", 1, &a, vec![(a.clone(), Bytes::from_static(b"all"))]);
        let mut sa = sa.unwrap();
        assert_eq!(
            sa.try_recv().unwrap().assignment,
            Bytes::from_static(b"all")
        );
        assert_eq!(c.heartbeat("g", 1, &a), None);

        // b joins: a learns of the rebalance from its heartbeat, rejoins, both get generation 2.
        let mut wait_b = join(&c, "b").unwrap();
        assert!(wait_b.try_recv().is_err());
        assert_eq!(
            c.heartbeat("g", 1, &a),
            Some(ResponseError::RebalanceInProgress)
        );
        let ra = joined(join(&c, &a));
        let rb = wait_b.try_recv().unwrap();
        assert_eq!((ra.generation, rb.generation), (2, 2));
        assert_eq!(ra.members.len(), 2, "the leader gets every member");
        assert!(rb.members.is_empty());
        let mut sync_b = c.sync("g", 2, "b", vec![]).unwrap();
        assert!(sync_b.try_recv().is_err(), "followers wait for the leader");
        c.sync(
            "g",
            2,
            &a,
            vec![
                (a.clone(), Bytes::from_static(b"p0")),
                ("b".into(), Bytes::from_static(b"p1")),
            ],
        )
        .unwrap();
        assert_eq!(
            sync_b.try_recv().unwrap().assignment,
            Bytes::from_static(b"p1")
        );
        let d = c.describe("g").unwrap();
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.members.len(), 2);

        // b stops heartbeating: after its session timeout it is removed and a rebalances alone.
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(c.heartbeat("g", 2, &a), None);
        c.tick();
        assert_eq!(
            c.heartbeat("g", 2, &a),
            Some(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            c.heartbeat("g", 2, "b"),
            Some(ResponseError::UnknownMemberId)
        );
        let ra = joined(join(&c, &a));
        assert_eq!((ra.generation, ra.members.len()), (3, 1));
        assert_eq!(
            c.check_commit("g", 2, &a),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            c.check_commit("g", 3, &a),
            Some(ResponseError::RebalanceInProgress)
        );

        // Leaving empties the group.
        assert_eq!(c.leave("g", std::slice::from_ref(&a)), vec![None]);
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
    }

    /// The ticker waits a second with nothing to watch, and no longer than the earliest
    /// session expiry (never under TICK_MIN) once a member is in a stable group.
    #[test]
    fn tick_says_how_long_to_wait() {
        let c = Coordinator::new(Duration::ZERO);
        assert_eq!(c.tick(), TICK_MAX);
        let _ = joined(join(&c, "a"));
        c.sync("g", 1, "a", vec![]).unwrap();
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
        // a's session (100 ms) expires within TICK_MIN.
        assert_eq!(c.tick(), TICK_MIN);
        assert_eq!(c.leave("g", &["a".to_string()]), vec![None]);
        assert_eq!(c.tick(), TICK_MAX);
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
        let c = Coordinator::new(Duration::ZERO);
        let _ = joined(join(&c, "a"));
        c.sync("g", 1, "a", vec![]).unwrap();
        let mut wait_b = join(&c, "b").unwrap();
        // a keeps heartbeating but never rejoins.
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(50));
            let _ = c.heartbeat("g", 1, "a");
            c.tick();
        }
        let rb = wait_b
            .try_recv()
            .expect("joined after the rebalance timeout");
        assert_eq!((rb.generation, rb.leader.as_str()), (2, "b"));
        assert_eq!(rb.members.len(), 1);
    }

    #[test]
    fn inconsistent_protocols_are_refused() {
        let c = Coordinator::new(Duration::ZERO);
        let _ = joined(join(&c, "a"));
        let r = c
            .join(JoinRequest {
                group_id: "g".into(),
                member_id: "x".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: String::new(),
                session_timeout: Duration::from_secs(1),
                rebalance_timeout: Duration::from_secs(1),
                protocol_type: "consumer".into(),
                protocols: vec![("roundrobin".into(), Bytes::new())],
                require_known_member_id: false,
            })
            .unwrap_err();
        assert_eq!(r.error, ResponseError::InconsistentGroupProtocol.code());
    }
}
