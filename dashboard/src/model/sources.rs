//! Where the dashboard's data comes from, and whether each backend answered lately. A backend
//! that goes away keeps its last data on screen and its panel says "unreachable since …"; the
//! time it went away is kept until it answers again (the first failure counts, not the latest).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// One backend the collectors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The Docker engine: containers, stats, events, logs.
    Docker,
    /// The discovery server (Eureka API).
    Registry,
    /// order-service's `/admin/breakers`.
    Breakers,
    /// The Kafka broker (topics, groups, committed offsets, watermarks).
    Broker,
    /// The trace collector's Zipkin API.
    Traces,
    /// The stack's fault records.
    Faults,
}

impl Source {
    /// Every source, in the order the header shows them.
    pub const ALL: [Source; 6] = [
        Source::Docker,
        Source::Registry,
        Source::Breakers,
        Source::Broker,
        Source::Traces,
        Source::Faults,
    ];

    /// A short lower-case name (`registry`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Docker => "docker",
            Source::Registry => "registry",
            Source::Breakers => "breakers",
            Source::Broker => "broker",
            Source::Traces => "traces",
            Source::Faults => "faults",
        }
    }
}

/// What is known of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reach {
    /// Not asked yet.
    #[default]
    Unknown,
    /// It answered at `at`.
    Up { at: DateTime<Utc> },
    /// It has failed since `since` (the first failure in a row), most recently with `error`.
    Down {
        since: DateTime<Utc>,
        error: String,
        /// Where it was asked, when the collector knows (a URL, a socket).
        at: Option<String>,
    },
}

impl Reach {
    /// True when the last attempt failed.
    pub fn is_down(&self) -> bool {
        matches!(self, Reach::Down { .. })
    }
}

/// The reachability of every source.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    by_source: BTreeMap<Source, Reach>,
}

/// A change of reachability worth a line in the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachChange {
    WentDown { error: String },
    CameBack { after: chrono::Duration },
}

impl Sources {
    /// What is known of `source`.
    pub fn get(&self, source: Source) -> &Reach {
        static UNKNOWN: Reach = Reach::Unknown;
        self.by_source.get(&source).unwrap_or(&UNKNOWN)
    }

    /// `source` answered at `at`.
    pub fn up(&mut self, source: Source, at: DateTime<Utc>) -> Option<ReachChange> {
        let before = self.by_source.insert(source, Reach::Up { at });
        match before {
            Some(Reach::Down { since, .. }) => Some(ReachChange::CameBack { after: at - since }),
            _ => None,
        }
    }

    /// `source` failed at `at` with `error`; keeps the first failure's time.
    pub fn down(
        &mut self,
        source: Source,
        at: DateTime<Utc>,
        error: String,
        address: Option<String>,
    ) -> Option<ReachChange> {
        let entry = self.by_source.entry(source).or_default();
        match entry {
            Reach::Down {
                error: e, at: a, ..
            } => {
                *e = error;
                if address.is_some() {
                    *a = address;
                }
                None
            }
            _ => {
                *entry = Reach::Down {
                    since: at,
                    error: error.clone(),
                    at: address,
                };
                Some(ReachChange::WentDown { error })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    /// "Unreachable since" is the first failure in a row; the latest error replaces the
    /// message; an answer clears it and reports how long it was down.
    #[test]
    fn down_keeps_the_first_failure() {
        let mut s = Sources::default();
        assert_eq!(s.get(Source::Broker), &Reach::Unknown);
        assert!(matches!(
            s.down(Source::Broker, t(0), "refused".into(), None),
            Some(ReachChange::WentDown { .. })
        ));
        assert_eq!(s.down(Source::Broker, t(5), "timeout".into(), None), None);
        assert_eq!(
            s.get(Source::Broker),
            &Reach::Down {
                since: t(0),
                error: "timeout".into(),
                at: None
            }
        );
        assert_eq!(
            s.up(Source::Broker, t(9)),
            Some(ReachChange::CameBack {
                after: chrono::Duration::seconds(9)
            })
        );
        assert_eq!(s.up(Source::Broker, t(10)), None);
    }
}
