//! The dashboard's data: what the background collectors last read, plus what the dashboard
//! derives from successive reads (histories for sparklines, the timeline of changes). It
//! changes only through [`Model::apply`] with an [`Update`] a collector sent, so every panel is
//! a pure function of it and every change is testable without a terminal or a stack.
//!
//! Time is data too: [`Update::Tick`] sets [`Model::now`], from which every age and "time
//! left" is drawn, so snapshots are reproducible.

pub mod breakers;
pub mod faults;
pub mod history;
pub mod kafka;
pub mod logs;
pub mod services;
pub mod sources;
pub mod timeline;
pub mod traces;

use chrono::{DateTime, Utc};

use breakers::{Breakers, InstanceBreakers};
use faults::FaultView;
use kafka::{Kafka, KafkaSnapshot};
use logs::{LogLine, LogTarget, Logs};
use services::{ServicesSnapshot, StatsByContainer};
use sources::{ReachChange, Source, Sources};
use timeline::{Event, EventKind, Severity, Timeline};
use traces::{OpenTrace, TraceView, Traces};

/// Something a collector read, or a change of time.
#[derive(Debug, Clone)]
pub enum Update {
    /// The clock moved (sent with every redraw tick).
    Tick(DateTime<Utc>),
    /// `source` answered.
    Reached { source: Source, at: DateTime<Utc> },
    /// `source` did not answer; `address` says where it was asked.
    Unreachable {
        source: Source,
        at: DateTime<Utc>,
        error: String,
        address: Option<String>,
    },
    /// Containers joined to the registry.
    Services(ServicesSnapshot),
    /// Docker's resource figures by container name.
    Stats(StatsByContainer),
    /// A round of `/admin/breakers` reads, one per order-service instance.
    Breakers(Vec<InstanceBreakers>),
    /// Topics, groups and lag from the broker.
    Kafka(KafkaSnapshot),
    /// Recent traces, and the collector's UI as the host's browser reaches it (for links).
    Traces {
        list: Vec<TraceView>,
        ui_base: Option<String>,
    },
    /// One trace asked for (`Ok(None)`: the collector does not have it).
    Trace {
        id: String,
        result: Result<Option<TraceView>, String>,
    },
    /// The active faults.
    Faults(Vec<FaultView>),
    /// A timeline event found by a collector (a container event, a scenario step).
    Event(Event),
    /// New output of the followed service.
    Logs {
        target: LogTarget,
        lines: Vec<LogLine>,
    },
    /// Following stopped (every container stopped, or Docker failed).
    LogsEnded {
        target: LogTarget,
        error: Option<String>,
    },
    /// A load run's progress line, `None` when no load runs.
    Load(Option<String>),
    /// The running scenario's name and current step, `None` when none runs.
    Scenario(Option<String>),
    /// The CLI finished request `id`: what it did, or why it failed.
    ActionDone {
        id: u64,
        result: Result<String, String>,
    },
}

/// One line of the command log: an action and its CLI equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEntry {
    /// The request id.
    pub id: u64,
    pub at: DateTime<Utc>,
    /// The `platform ...` line that does the same.
    pub cli: String,
    pub status: CommandStatus,
}

/// How an action went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandStatus {
    Running,
    Done(String),
    Failed(String),
}

/// Everything the panels draw.
#[derive(Debug, Clone)]
pub struct Model {
    /// The time the panels are drawn at.
    pub now: DateTime<Utc>,
    /// The stack's name.
    pub stack: String,
    pub sources: Sources,
    pub services: ServicesSnapshot,
    pub stats: StatsByContainer,
    pub breakers: Breakers,
    pub kafka: Kafka,
    pub traces: Traces,
    pub faults: Vec<FaultView>,
    pub timeline: Timeline,
    pub logs: Logs,
    /// The running load's progress line.
    pub load: Option<String>,
    /// The running scenario and its step.
    pub scenario: Option<String>,
    /// Every action taken, oldest first, with its CLI equivalent.
    pub commands: Vec<CommandEntry>,
}

impl Model {
    /// An empty model of stack `stack` at `now`.
    pub fn new(stack: &str, now: DateTime<Utc>) -> Self {
        Self {
            now,
            stack: stack.to_string(),
            sources: Sources::default(),
            services: ServicesSnapshot::default(),
            stats: StatsByContainer::default(),
            breakers: Breakers::default(),
            kafka: Kafka::default(),
            traces: Traces::default(),
            faults: Vec::new(),
            timeline: Timeline::default(),
            logs: Logs::default(),
            load: None,
            scenario: None,
            commands: Vec::new(),
        }
    }

    /// Adds a timeline event at the model's time.
    pub fn event(&mut self, kind: EventKind, severity: Severity, text: impl Into<String>) {
        self.timeline.push(Event {
            at: self.now,
            kind,
            severity,
            text: text.into(),
        });
    }

    /// Takes one update.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Tick(now) => self.now = now,
            Update::Reached { source, at } => {
                if let Some(ReachChange::CameBack { after }) = self.sources.up(source, at) {
                    self.timeline.push(Event {
                        at,
                        kind: EventKind::Backend,
                        severity: Severity::Good,
                        text: format!(
                            "{} reachable again after {}",
                            source.name(),
                            crate::ui::format::duration(after)
                        ),
                    });
                }
            }
            Update::Unreachable {
                source,
                at,
                error,
                address,
            } => {
                if source == Source::Broker {
                    self.kafka.apply(None);
                }
                if let Some(ReachChange::WentDown { error }) =
                    self.sources.down(source, at, error, address)
                {
                    self.timeline.push(Event {
                        at,
                        kind: EventKind::Backend,
                        severity: Severity::Bad,
                        text: format!("{} unreachable: {error}", source.name()),
                    });
                }
            }
            Update::Services(snapshot) => {
                for change in services::registry_changes(&self.services, &snapshot) {
                    let bad = change.contains("deregistered") || change.contains("→ DOWN");
                    self.event(
                        EventKind::Registry,
                        if bad {
                            Severity::Warning
                        } else {
                            Severity::Info
                        },
                        change,
                    );
                }
                self.services = snapshot;
            }
            Update::Stats(stats) => self.stats = stats,
            Update::Breakers(reads) => {
                for t in self.breakers.apply(reads) {
                    let severity = match t.transition.to {
                        circuit_breaker::State::Closed => Severity::Good,
                        circuit_breaker::State::HalfOpen => Severity::Warning,
                        _ => Severity::Bad,
                    };
                    let at = DateTime::from_timestamp_millis(t.transition.at_ms as i64)
                        .unwrap_or(self.now);
                    self.timeline.push(Event {
                        at,
                        kind: EventKind::Breaker,
                        severity,
                        text: format!(
                            "{} {}: {} → {} ({})",
                            t.instance,
                            t.breaker,
                            t.transition.from,
                            t.transition.to,
                            t.transition.reason
                        ),
                    });
                }
            }
            Update::Kafka(snapshot) => self.kafka.apply(Some(snapshot)),
            Update::Traces { list, ui_base } => {
                self.traces.ui_base = ui_base;
                self.traces.apply(list);
            }
            Update::Trace { id, result } => {
                // Only the trace still asked for is taken.
                if self.traces.open.as_ref().is_some_and(|o| o.id() == id) {
                    self.traces.open = Some(match result {
                        Ok(Some(t)) => OpenTrace::Loaded(t),
                        Ok(None) => OpenTrace::Failed {
                            id,
                            error: "the collector has no such trace (yet)".into(),
                        },
                        Err(error) => OpenTrace::Failed { id, error },
                    });
                }
            }
            Update::Faults(list) => {
                for (started, text) in faults::fault_changes(&self.faults, &list) {
                    let (at, severity) = match started {
                        Some(at) => (at, Severity::Bad),
                        None => (self.now, Severity::Good),
                    };
                    self.timeline.push(Event {
                        at,
                        kind: EventKind::Fault,
                        severity,
                        text,
                    });
                }
                self.faults = list;
            }
            Update::Event(e) => self.timeline.push(e),
            Update::Logs { target, lines } => {
                self.logs.append(&target, lines);
            }
            Update::LogsEnded { target, error } => {
                if self.logs.target.as_ref() == Some(&target) {
                    self.logs.error =
                        Some(error.unwrap_or_else(|| "every container stopped".to_string()));
                }
            }
            Update::Load(line) => {
                if let (Some(_), None) = (&self.load, &line) {
                    self.event(EventKind::Load, Severity::Info, "load finished");
                }
                self.load = line;
            }
            Update::Scenario(s) => self.scenario = s,
            Update::ActionDone { id, result } => {
                let Some(entry) = self.commands.iter_mut().find(|c| c.id == id) else {
                    return;
                };
                let (severity, text) = match &result {
                    Ok(done) => (Severity::Good, format!("{}: {done}", entry.cli)),
                    Err(e) => (Severity::Bad, format!("{}: failed: {e}", entry.cli)),
                };
                entry.status = match result {
                    Ok(done) => CommandStatus::Done(done),
                    Err(e) => CommandStatus::Failed(e),
                };
                self.event(EventKind::Action, severity, text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_735_732_800 + s, 0).unwrap()
    }

    /// A backend going away and coming back makes two timeline events, and the broker's lag
    /// history gets a gap for the outage.
    #[test]
    fn backend_outage_in_the_timeline() {
        let mut m = Model::new("dev", t(0));
        m.apply(Update::Kafka(KafkaSnapshot::default()));
        m.apply(Update::Unreachable {
            source: Source::Broker,
            at: t(1),
            error: "connection refused".into(),
            address: Some("127.0.0.1:19092".into()),
        });
        m.apply(Update::Unreachable {
            source: Source::Broker,
            at: t(2),
            error: "connection refused".into(),
            address: None,
        });
        m.apply(Update::Reached {
            source: Source::Broker,
            at: t(12),
        });
        let texts: Vec<&str> = m.timeline.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "broker unreachable: connection refused",
                "broker reachable again after 11s"
            ]
        );
    }

    /// A trace answer for a trace no longer open is ignored.
    #[test]
    fn stale_trace_answers_are_dropped() {
        let mut m = Model::new("dev", t(0));
        m.traces.open = Some(OpenTrace::Loading { id: "b".into() });
        m.apply(Update::Trace {
            id: "a".into(),
            result: Ok(None),
        });
        assert_eq!(m.traces.open, Some(OpenTrace::Loading { id: "b".into() }));
        m.apply(Update::Trace {
            id: "b".into(),
            result: Err("refused".into()),
        });
        assert!(matches!(m.traces.open, Some(OpenTrace::Failed { .. })));
    }
}
