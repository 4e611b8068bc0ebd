//! The record of one injected fault on one container: what was done, until when, and what its
//! revert needs, so that any process — the supervisor, `platform heal`, `platform down` — can
//! undo it without the process that injected it. Records are plain serde; [`super::store`]
//! keeps them on disk. The time logic (what is due, how long is left) is pure and takes `now`,
//! so it is tested with a clock the test controls.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::spec::{Kind, Options};

/// One fault on one container (an instance of the target service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Short and unique within the stack (`f-` and 8 hex digits): what `platform heal ID` takes.
    pub id: String,
    pub stack: String,
    pub kind: Kind,
    /// The target as asked for: a service, or a dependency shorthand (`broker`).
    pub target: String,
    /// The service the target resolved to.
    pub service: String,
    pub instance: u32,
    /// The Docker container name.
    pub container: String,
    pub options: Options,
    pub started: DateTime<Utc>,
    /// The planned end: the supervisor reverts the fault then.
    pub ends: DateTime<Utc>,
    /// True while the container is out of service on purpose (stopped, killed, paused): restart
    /// policies and `platform up` must leave it alone until `ends`.
    pub intended_stop: bool,
    /// What the revert needs beyond the above.
    pub revert: Revert,
    /// The stack file the fault was injected through (heal uses it to reach the services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_file: Option<String>,
    /// Failed revert attempts so far, and the last failure (the supervisor retries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Time left at the moment the record was read (`platform faults`); not stored.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The layer-specific facts a revert needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum Revert {
    /// Start, unpause or reconnect through the Docker API.
    Container {
        /// The stack network (disconnect reconnects to it).
        network: String,
        /// The container's DNS aliases on it (the service name), restored on reconnect.
        #[serde(default)]
        aliases: Vec<String>,
    },
    /// Remove what was added in the container's network namespace.
    Network {
        /// The interface inside the namespace (`eth0`).
        interface: String,
        /// How the fault was made.
        mechanism: Mechanism,
        /// The NFQUEUE rule and agent (mechanism `nfqueue` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nfqueue: Option<NfqueueRevert>,
    },
    /// The service holds the fault (`/admin/faults/{id}`) and drops it at `ends` itself.
    Application {
        /// The fault's id inside the service (the record id).
        app_id: String,
    },
}

/// How a network fault is applied inside the container's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// A root `netem` qdisc (delay, loss, corrupt, duplicate).
    Netem,
    /// A root `tbf` qdisc (bandwidth).
    Tbf,
    /// An iptables OUTPUT rule with the `statistic` match dropping packets (loss where the
    /// kernel has no netem).
    IptablesStatistic,
    /// An iptables OUTPUT rule sending packets to an NFQUEUE read by a `platform fault-agent`
    /// in the namespace (latency, corrupt, duplicate where the kernel has no netem).
    Nfqueue,
}

/// What reverting an NFQUEUE fault removes: the rule and the agent's process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfqueueRevert {
    pub queue: u16,
    /// The rule as added (`iptables -A OUTPUT` + this); revert deletes it.
    pub rule: Vec<String>,
    /// The agent process and its process group (it leads its own), on the host: revert
    /// signals that group once `/proc/<agent_pid>` is confirmed to still be this fault's agent
    /// (`agent::recorded_group`), and scans `/proc` for any other agent of the fault.
    pub agent_pid: i32,
    pub agent_pgid: i32,
}

impl FaultRecord {
    /// Time left at `now` (zero once due).
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        (self.ends - now).to_std().unwrap_or(Duration::ZERO)
    }

    /// True when the fault should be reverted at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        now >= self.ends
    }

    /// The record with `remaining_ms` filled in for `now`.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.remaining_ms =
            Some(u64::try_from(self.remaining(now).as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// When the supervisor should next try a revert that failed `attempts` times: at once the
    /// first time, then after 1, 2, 4 ... up to 30 seconds.
    pub fn retry_at(&self) -> DateTime<Utc> {
        if self.attempts == 0 {
            return self.ends;
        }
        // The last attempt's time is not stored: `ends` plus the waits after each failed
        // attempt so far keeps retries spaced out.
        let total: u64 = (1..=self.attempts)
            .map(|a| (1u64 << (a - 1).min(5)).min(30))
            .sum();
        self.ends + chrono::Duration::seconds(i64::try_from(total).unwrap_or(i64::MAX))
    }
}

/// The records due at `now` (ready for a revert, retries spaced by [`FaultRecord::retry_at`]).
pub fn due(records: &[FaultRecord], now: DateTime<Utc>) -> Vec<&FaultRecord> {
    records.iter().filter(|r| r.retry_at() <= now).collect()
}

/// When the next record falls due, if any.
pub fn next_due(records: &[FaultRecord]) -> Option<DateTime<Utc>> {
    records.iter().map(FaultRecord::retry_at).min()
}

/// A new fault id: `f-` and 8 random hex digits.
pub fn new_id() -> String {
    let id = uuid::Uuid::new_v4();
    format!("f-{}", &id.simple().to_string()[..8])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record for tests, started at `start`, lasting `secs`.
    pub fn record(id: &str, start: DateTime<Utc>, secs: i64) -> FaultRecord {
        FaultRecord {
            id: id.into(),
            stack: "t".into(),
            kind: Kind::Pause,
            target: "inventory-service".into(),
            service: "inventory-service".into(),
            instance: 1,
            container: "platform-t-inventory-service-1".into(),
            options: Options::default(),
            started: start,
            ends: start + chrono::Duration::seconds(secs),
            intended_stop: true,
            revert: Revert::Container {
                network: "platform-t".into(),
                aliases: vec!["inventory-service".into()],
            },
            stack_file: None,
            attempts: 0,
            last_error: None,
            remaining_ms: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A fault is due exactly at its end, not a millisecond before; time left counts down to
    /// zero and stays there.
    #[test]
    fn due_at_the_end() {
        let r = record("f-1", t0(), 30);
        let at = |ms: i64| t0() + chrono::Duration::milliseconds(ms);
        assert!(!r.due(at(29_999)));
        assert!(r.due(at(30_000)));
        assert_eq!(r.remaining(at(10_000)), Duration::from_secs(20));
        assert_eq!(r.remaining(at(31_000)), Duration::ZERO);
        assert_eq!(r.clone().at(at(29_000)).remaining_ms, Some(1_000));
    }

    /// Among several records only the due ones are picked, and the next deadline is the
    /// earliest; failed reverts are retried later and later (1, 2, 4 ... s, at most 30 s apart).
    #[test]
    fn picks_due_records_and_spaces_retries() {
        let recs = vec![
            record("a", t0(), 10),
            record("b", t0(), 20),
            record("c", t0(), 5),
        ];
        let at = |s: i64| t0() + chrono::Duration::seconds(s);
        let ids = |now| {
            due(&recs, now)
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        };
        assert!(ids(at(4)).is_empty());
        assert_eq!(ids(at(10)), ["a", "c"]);
        assert_eq!(next_due(&recs), Some(at(5)));
        let mut failed = record("d", t0(), 10);
        failed.attempts = 1;
        assert_eq!(failed.retry_at(), at(11));
        failed.attempts = 3;
        assert_eq!(failed.retry_at(), at(17));
        failed.attempts = 20;
        assert!(failed.retry_at() > at(10 + 30));
    }

    /// Records round-trip through JSON; `remaining_ms` is output only.
    #[test]
    fn json_round_trip() {
        let mut r = record("f-1", t0(), 30).at(t0());
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"remaining_ms\":30000"), "{text}");
        assert!(text.contains("\"kind\":\"pause\""), "{text}");
        let back: FaultRecord = serde_json::from_str(&text).unwrap();
        r.remaining_ms = None;
        assert_eq!(back, r);
        assert!(new_id().starts_with("f-") && new_id().len() == 10);
    }
}
