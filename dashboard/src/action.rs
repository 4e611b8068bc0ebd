//! What the dashboard asks the CLI to do. The dashboard never does it itself: an [`Action`]
//! leaves through [`crate::App::take_requests`] as a [`Request`] with an id, the CLI carries it
//! out (through its runtime, fault, scenario and load libraries, never by running `platform`)
//! and answers with [`crate::Update::ActionDone`]. Each action knows its exact CLI equivalent,
//! which the command-log pane prints so the user learns the CLI.

use crate::model::logs::LogTarget;

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run exactly `instances` instances of `service`.
    Scale { service: String, instances: u32 },
    /// Inject a fault: the words `platform inject` takes (`stop inventory-service --all
    /// --duration 60s`), validated by the CLI the same way.
    Inject { words: Vec<String> },
    /// Revert one fault, or all of the stack's (`None`).
    Heal { id: Option<String> },
    /// Run a scenario file.
    Scenario { name: String, file: String },
    /// Send load through the gateway.
    Load {
        rate: String,
        duration: String,
        mix: Option<String>,
    },
    /// Stop the load this dashboard started.
    StopLoad,
    /// Fetch a trace from the collector (one not in the recent list).
    OpenTrace { id: String },
    /// Follow the output of a service or instance (`None`: stop following).
    FollowLogs { target: Option<LogTarget> },
}

impl Action {
    /// The `platform` command line that does the same, with `stack_flag` (` --stack x`) when
    /// the dashboard watches another stack than the default; `None` for actions that only
    /// change what the dashboard reads.
    pub fn cli(&self, stack_flag: Option<&str>) -> Option<String> {
        let line = match self {
            Action::Scale { service, instances } => {
                format!("platform scale {} {instances}", quote(service))
            }
            Action::Inject { words } => format!("platform inject {}", join(words)),
            Action::Heal { id: Some(id) } => format!("platform heal {}", quote(id)),
            Action::Heal { id: None } => "platform heal --all".to_string(),
            Action::Scenario { file, .. } => format!("platform scenario run {}", quote(file)),
            Action::Load {
                rate,
                duration,
                mix,
            } => {
                let mut line = format!(
                    "platform load --rate {} --duration {}",
                    quote(rate),
                    quote(duration)
                );
                if let Some(mix) = mix {
                    line.push_str(&format!(" --mix {}", quote(mix)));
                }
                line
            }
            Action::OpenTrace { id } => format!("platform trace {}", quote(id)),
            Action::FollowLogs { target: Some(t) } => {
                format!("platform logs {} --follow", quote(&t.service))
            }
            Action::StopLoad | Action::FollowLogs { target: None } => return None,
        };
        Some(match stack_flag {
            Some(stack) => format!("{line} --stack {}", quote(stack)),
            None => line,
        })
    }

    /// Whether the action changes the running system (and so asks for confirmation when it
    /// takes something away).
    pub fn changes_system(&self) -> bool {
        matches!(
            self,
            Action::Scale { .. }
                | Action::Inject { .. }
                | Action::Heal { .. }
                | Action::Scenario { .. }
                | Action::Load { .. }
        )
    }
}

/// An action with the id its answer will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub action: Action,
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Words joined for a shell, each quoted when needed.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each action prints the command a user would type, with the stack when it is not the
    /// default, and words a shell would split are quoted.
    #[test]
    fn cli_equivalents() {
        let scale = Action::Scale {
            service: "order-service".into(),
            instances: 2,
        };
        assert_eq!(scale.cli(None).unwrap(), "platform scale order-service 2");
        assert_eq!(
            scale.cli(Some("/tmp/my stack.toml")).unwrap(),
            "platform scale order-service 2 --stack '/tmp/my stack.toml'"
        );
        let inject = Action::Inject {
            words: [
                "app-error",
                "order-service",
                "--route",
                "/api/order",
                "--status",
                "503",
            ]
            .map(String::from)
            .to_vec(),
        };
        assert_eq!(
            inject.cli(None).unwrap(),
            "platform inject app-error order-service --route /api/order --status 503"
        );
        assert_eq!(
            Action::Heal { id: None }.cli(None).unwrap(),
            "platform heal --all"
        );
        assert_eq!(
            Action::Load {
                rate: "20".into(),
                duration: "60s".into(),
                mix: Some("orders=70,products=30".into())
            }
            .cli(None)
            .unwrap(),
            "platform load --rate 20 --duration 60s --mix orders=70,products=30"
        );
        assert_eq!(Action::StopLoad.cli(None), None);
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
