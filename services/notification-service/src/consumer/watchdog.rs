//! The consumer's watchdog: tells a consumer that is working (or idle with nothing to do) from
//! one that is stuck, from what the broker says about the group and what the consumer did.
//!
//! librdkafka recovers from most broker trouble by itself: it reconnects, rejoins and resumes.
//! What it cannot see is a group that settled wrongly: tansu 0.6 left a consumer joined, with
//! heartbeats answered, and no partition assigned to anyone, for good (issue 10); a member can
//! also wait in a join that never completes, or hold partitions and receive nothing. Each of
//! these shows from outside, and each is judged here, by pure functions of observations, so
//! every case is unit-tested with a clock the tests control:
//!
//! - **not in the group**: no assignment has arrived since the consumer was (re)built;
//! - **holding nothing while nobody consumes**: this member's assignment is empty, the group
//!   has lag on the topic, and its committed offsets have not moved (judged from commits, not
//!   from the broker's account of assignments, which nisshi 0.6.0 does not give: a standby
//!   instance beside one that consumes sees the commits move and is left alone);
//! - **not moving**: the group has lag on partitions this member holds and it received nothing
//!   (and was not busy handling a message or waiting for its database).
//!
//! A state that lasts the whole stall timeout gets the consumer rebuilt (closed, so it leaves
//! the group, and created again: a new member, a new join, a new generation). While the broker
//! does not answer at all, nothing is judged: rebuilding cannot help then, and the consumer
//! gets a full stall timeout to recover by itself once the broker is back.

use std::time::{Duration, Instant};

/// What the watchdog concludes from one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Working, or idle with nothing to do.
    Ok,
    /// A stuck state seen for half the stall timeout (at once when not in the group), not yet
    /// for the whole.
    Suspect(String),
    /// The broker did not answer the lag measurement.
    Unreachable(String),
    /// Stuck for the stall timeout: rebuild the consumer.
    Rebuild(String),
}

impl Verdict {
    /// The status word of `/admin/consumer`'s `consumerHealth`.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Suspect(_) => "suspect",
            Verdict::Unreachable(_) => "unreachable",
            Verdict::Rebuild(_) => "rebuilding",
        }
    }

    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Ok => None,
            Verdict::Suspect(r) | Verdict::Unreachable(r) | Verdict::Rebuild(r) => Some(r.clone()),
        }
    }
}

/// What the broker said about the group on the consumed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    /// Partitions of the topic.
    pub partitions: usize,
    /// The group's lag on the whole topic.
    pub topic_lag: i64,
    /// The sum of the group's committed offsets on the topic (moves when anyone consumes).
    pub committed: i64,
    /// The group's lag on the partitions this member holds.
    pub own_lag: i64,
}

/// One look at the consumer.
#[derive(Debug, Clone)]
pub struct Observation {
    pub now: Instant,
    /// An assignment (possibly empty) arrived since the consumer was built.
    pub joined: bool,
    /// Partitions of the topic this member holds.
    pub assigned: usize,
    /// The broker's view, or why it could not be read.
    pub broker: Result<BrokerView, String>,
    /// Messages received so far (any increase is progress).
    pub received: u64,
    /// Handling a message or waiting for the database: not the broker's fault.
    pub busy: bool,
}

/// Which stuck state was seen (a change of kind restarts the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotJoined,
    HoldsNothing,
    NotMoving,
}

/// The watchdog's memory between observations.
#[derive(Debug, Clone)]
pub struct Watchdog {
    stall: Duration,
    /// When the current consumer was built.
    built: Instant,
    /// The last `received` figure and when it last changed (or the consumer was busy).
    received: u64,
    progress_at: Instant,
    /// The stuck state seen and since when.
    suspect: Option<(Kind, Instant)>,
    /// The group's committed offsets on the topic, and when they last moved.
    committed: Option<i64>,
    committed_at: Instant,
    /// Since when the topic has had lag (this streak), if it has.
    lag_since: Option<Instant>,
    /// Rebuilds in a row that did not get the consumer into its group: each doubles the wait
    /// for the next (a slow broker's joins take long; rebuilding in the middle of one starts
    /// it all over again).
    unjoined_rebuilds: u32,
}

impl Watchdog {
    pub fn new(stall: Duration, now: Instant) -> Watchdog {
        Watchdog {
            stall,
            built: now,
            received: 0,
            progress_at: now,
            suspect: None,
            committed: None,
            committed_at: now,
            lag_since: None,
            unjoined_rebuilds: 0,
        }
    }

    /// A new consumer was built: every clock starts again.
    pub fn rebuilt(&mut self, now: Instant) {
        if matches!(self.suspect, Some((Kind::NotJoined, _))) {
            self.unjoined_rebuilds = (self.unjoined_rebuilds + 1).min(3);
        }
        self.built = now;
        self.progress_at = now;
        self.suspect = None;
        // The new member's own clocks: what the old one saw does not count against it.
        self.committed_at = now;
        self.lag_since = self.lag_since.map(|_| now);
    }

    /// How long a state may last before a rebuild: the stall timeout; twice that for a consumer
    /// that is not in its group, doubled again for each rebuild in a row that did not get it in.
    /// Rebuilding a consumer in the middle of a join restarts the join (and on nisshi 0.6.0 a
    /// member that leaves while the group rebalances can wedge the group for good, see the
    /// README), so that one is the last resort.
    fn limit(&self, kind: Kind) -> Duration {
        match kind {
            Kind::NotJoined => self.stall * 2u32.pow(self.unjoined_rebuilds + 1),
            _ => self.stall,
        }
    }

    /// Judges one observation.
    pub fn observe(&mut self, o: &Observation) -> Verdict {
        if o.received != self.received || o.busy {
            self.received = o.received;
            self.progress_at = o.now;
        }
        let view = match &o.broker {
            Ok(view) => view,
            Err(why) => {
                // Nothing to judge; give the consumer a full window once the broker is back.
                self.suspect = None;
                self.progress_at = o.now;
                self.committed = None;
                self.lag_since = None;
                return Verdict::Unreachable(why.clone());
            }
        };
        if self.committed != Some(view.committed) {
            self.committed = Some(view.committed);
            self.committed_at = o.now;
        }
        self.lag_since = match (view.topic_lag > 0, self.lag_since) {
            (false, _) => None,
            (true, None) => Some(o.now),
            (true, since) => since,
        };
        if o.joined {
            self.unjoined_rebuilds = 0;
        }
        let seen = if !o.joined {
            Some((
                Kind::NotJoined,
                self.built,
                "not in its consumer group yet".to_string(),
            ))
        } else if o.assigned == 0 && view.topic_lag > 0 {
            let since = self.lag_since.unwrap_or(o.now).max(self.committed_at);
            Some((
                Kind::HoldsNothing,
                since,
                format!(
                    "holds no partition of {} while {} messages wait and no member commits",
                    view.partitions, view.topic_lag
                ),
            ))
        } else if o.assigned > 0 && view.own_lag > 0 {
            Some((
                Kind::NotMoving,
                self.progress_at,
                format!(
                    "{} messages wait on its partitions and none arrived",
                    view.own_lag
                ),
            ))
        } else {
            None
        };
        let Some((kind, onset, reason)) = seen else {
            self.suspect = None;
            return Verdict::Ok;
        };
        let since = match (kind, self.suspect) {
            // Stuck since the last progress, however long it was seen.
            (Kind::NotMoving, _) => {
                self.suspect = Some((kind, onset));
                onset
            }
            // Stuck since the commits stopped while messages wait.
            (Kind::HoldsNothing, _) => {
                self.suspect = Some((kind, onset));
                onset
            }
            (_, Some((k, since))) if k == kind => since,
            _ => {
                self.suspect = Some((kind, onset));
                onset
            }
        };
        let stuck_for = o.now.duration_since(since);
        if stuck_for >= self.limit(kind) {
            Verdict::Rebuild(format!("{reason} for {}s", stuck_for.as_secs()))
        } else if kind != Kind::NotJoined && stuck_for < self.stall / 2 {
            // Behind while receiving, or a peer about to commit: work, not (yet) a stall.
            Verdict::Ok
        } else {
            Verdict::Suspect(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(30);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    /// The broker's view: `topic_lag` on the topic, `committed` offsets in total, `own_lag`.
    fn view(topic_lag: i64, committed: i64, own_lag: i64) -> Result<BrokerView, String> {
        Ok(BrokerView {
            partitions: 3,
            topic_lag,
            committed,
            own_lag,
        })
    }

    fn obs(
        now: Instant,
        joined: bool,
        assigned: usize,
        broker: Result<BrokerView, String>,
        received: u64,
    ) -> Observation {
        Observation {
            now,
            joined,
            assigned,
            broker,
            received,
            busy: false,
        }
    }

    /// A consumer holding partitions with nothing to do, a standby member while another one
    /// consumes (commits move), or any member while there is no lag, is fine however long.
    #[test]
    fn idle_and_standby_are_fine() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL, t0);
        for s in [0, 40, 400] {
            assert_eq!(
                w.observe(&obs(at(t0, s), true, 3, view(0, 9, 0), 0)),
                Verdict::Ok
            );
        }
        let mut standby = Watchdog::new(STALL, t0);
        for (i, s) in [0u64, 20, 40, 60, 80].into_iter().enumerate() {
            let v = standby.observe(&obs(at(t0, s), true, 0, view(5, 10 * i as i64, 0), 0));
            assert_eq!(v, Verdict::Ok, "at {s}s");
        }
    }

    /// Never joining is suspect at once and rebuilt once twice the stall timeout has passed
    /// since the consumer was built; each rebuild that did not help doubles the next wait.
    #[test]
    fn a_group_that_will_not_join() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL, t0);
        let not_joined = |s| obs(at(t0, s), false, 0, view(3, 0, 0), 0);
        assert!(matches!(w.observe(&not_joined(5)), Verdict::Suspect(_)));
        assert!(matches!(w.observe(&not_joined(59)), Verdict::Suspect(_)));
        let v = w.observe(&not_joined(60));
        assert!(
            matches!(&v, Verdict::Rebuild(r) if r.contains("not in its consumer group")),
            "{v:?}"
        );
        // The rebuild did not help: the next one waits twice as long, then four times.
        w.rebuilt(at(t0, 61));
        assert!(matches!(w.observe(&not_joined(180)), Verdict::Suspect(_)));
        assert!(matches!(w.observe(&not_joined(181)), Verdict::Rebuild(_)));
        w.rebuilt(at(t0, 181));
        assert!(matches!(w.observe(&not_joined(420)), Verdict::Suspect(_)));
        assert!(matches!(w.observe(&not_joined(421)), Verdict::Rebuild(_)));
        // Once in the group, the count starts again.
        w.rebuilt(at(t0, 421));
        assert_eq!(
            w.observe(&obs(at(t0, 425), true, 3, view(0, 0, 0), 0)),
            Verdict::Ok
        );
        w.rebuilt(at(t0, 430));
        assert!(matches!(w.observe(&not_joined(490)), Verdict::Rebuild(_)));
    }

    /// Joined with an empty assignment while messages wait and nobody commits (tansu 0.6's
    /// wedge): rebuilt once that lasted the stall timeout; commits moving again reset it.
    #[test]
    fn holding_nothing_while_nobody_consumes() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL, t0);
        assert_eq!(w.observe(&obs(t0, true, 3, view(0, 4, 0), 0)), Verdict::Ok);
        // No lag: an empty assignment is nothing to worry about.
        assert_eq!(
            w.observe(&obs(at(t0, 5), true, 0, view(0, 4, 0), 0)),
            Verdict::Ok
        );
        // Messages wait: fine for half the stall timeout (a peer may be about to commit).
        assert_eq!(
            w.observe(&obs(at(t0, 10), true, 0, view(7, 4, 0), 0)),
            Verdict::Ok
        );
        let v = w.observe(&obs(at(t0, 25), true, 0, view(7, 4, 0), 0));
        assert!(
            matches!(&v, Verdict::Suspect(r) if r.contains("7 messages wait")),
            "{v:?}"
        );
        // Someone committed: the clock starts again from there.
        assert_eq!(
            w.observe(&obs(at(t0, 30), true, 0, view(7, 6, 0), 0)),
            Verdict::Ok
        );
        assert!(matches!(
            w.observe(&obs(at(t0, 45), true, 0, view(7, 6, 0), 0)),
            Verdict::Suspect(_)
        ));
        assert!(matches!(
            w.observe(&obs(at(t0, 59), true, 0, view(9, 6, 0), 0)),
            Verdict::Suspect(_)
        ));
        assert!(matches!(
            w.observe(&obs(at(t0, 60), true, 0, view(9, 6, 0), 0)),
            Verdict::Rebuild(_)
        ));
    }

    /// A rebuild starts the new member's clocks: the old member's stall is not held against it.
    #[test]
    fn a_rebuild_is_not_judged_by_the_old_members_stall() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL, t0);
        assert_eq!(w.observe(&obs(t0, true, 3, view(5, 4, 5), 0)), Verdict::Ok);
        assert!(matches!(
            w.observe(&obs(at(t0, 30), true, 3, view(9, 4, 9), 0)),
            Verdict::Rebuild(_)
        ));
        w.rebuilt(at(t0, 30));
        // The new consumer joined with nothing yet: not a stall of its own.
        assert_eq!(
            w.observe(&obs(at(t0, 31), true, 0, view(9, 4, 0), 0)),
            Verdict::Ok
        );
    }

    /// Holding partitions with lag: fine while messages arrive, suspect after half the stall
    /// timeout without any, rebuilt after the whole; being busy (database wait, retries) is
    /// progress.
    #[test]
    fn not_moving() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL, t0);
        let behind = |s, received| obs(at(t0, s), true, 3, view(40, 0, 40), received);
        assert_eq!(w.observe(&behind(1, 10)), Verdict::Ok);
        assert_eq!(w.observe(&behind(20, 20)), Verdict::Ok);
        assert_eq!(w.observe(&behind(30, 20)), Verdict::Ok);
        assert!(matches!(w.observe(&behind(36, 20)), Verdict::Suspect(_)));
        let mut busy = behind(45, 20);
        busy.busy = true;
        assert_eq!(w.observe(&busy), Verdict::Ok);
        assert!(matches!(w.observe(&behind(75, 20)), Verdict::Rebuild(_)));
    }

    /// While the broker does not answer nothing is rebuilt, and once it answers again the
    /// consumer gets a whole stall timeout to resume by itself.
    #[test]
    fn an_unreachable_broker_is_not_judged() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(STALL, t0);
        assert_eq!(
            w.observe(&obs(at(t0, 5), true, 3, view(9, 0, 9), 0)),
            Verdict::Ok
        );
        for s in [10, 60, 120] {
            let v = w.observe(&obs(at(t0, s), true, 3, Err("timed out".into()), 0));
            assert_eq!(v, Verdict::Unreachable("timed out".into()));
        }
        assert_eq!(
            w.observe(&obs(at(t0, 125), true, 3, view(9, 0, 9), 0)),
            Verdict::Ok
        );
        assert!(matches!(
            w.observe(&obs(at(t0, 150), true, 3, view(9, 0, 9), 0)),
            Verdict::Rebuild(_)
        ));
    }
}
