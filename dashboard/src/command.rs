//! The `:` command line, k9s style: views by name (`:breakers`), actions with the CLI's own
//! words (`:scale order-service 2`, `:inject stop inventory-service --duration 60s`), and
//! completion of command names, services, fault kinds, scenario names, fault and trace ids from
//! what the dashboard currently knows.

use crate::View;

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Show a view.
    View(View),
    Scale {
        service: String,
        instances: u32,
    },
    /// `inject` followed by the CLI's words.
    Inject(Vec<String>),
    /// `heal ID` or `heal all` / `heal`.
    Heal(Option<String>),
    Scenario(String),
    Load {
        rate: String,
        duration: String,
        mix: Option<String>,
    },
    StopLoad,
    Trace(String),
    /// `logs SERVICE` or `logs SERVICE-N`.
    Logs(String),
    Help,
    Quit,
}

/// A command name with its aliases and what it takes, for completion and help.
#[derive(Debug, Clone, Copy)]
pub struct CommandInfo {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub args: &'static str,
    pub help: &'static str,
}

/// Every command, in the order help lists them.
pub const COMMANDS: [CommandInfo; 17] = [
    CommandInfo {
        name: "overview",
        aliases: &["o", "home"],
        args: "",
        help: "every panel at once",
    },
    CommandInfo {
        name: "services",
        aliases: &["svc", "registry", "ps"],
        args: "",
        help: "services, instances, containers, drift",
    },
    CommandInfo {
        name: "breakers",
        aliases: &["cb"],
        args: "",
        help: "circuit breakers of order-service",
    },
    CommandInfo {
        name: "kafka",
        aliases: &["lag", "topics"],
        args: "",
        help: "topics, partitions, groups, lag",
    },
    CommandInfo {
        name: "traces",
        aliases: &["tr"],
        args: "",
        help: "recent traces; Enter opens the waterfall",
    },
    CommandInfo {
        name: "events",
        aliases: &["ev", "faults", "timeline"],
        args: "",
        help: "active faults and the timeline",
    },
    CommandInfo {
        name: "logs",
        aliases: &["log"],
        args: "[SERVICE|SERVICE-N]",
        help: "follow a service's or an instance's output",
    },
    CommandInfo {
        name: "commands",
        aliases: &["history", "cmd"],
        args: "",
        help: "every action with its CLI equivalent",
    },
    CommandInfo {
        name: "scale",
        aliases: &[],
        args: "SERVICE N",
        help: "run N instances of a stateless service",
    },
    CommandInfo {
        name: "inject",
        aliases: &["fault"],
        args: "KIND TARGET [--instance N|--all] [--duration D] [options]",
        help: "inject a fault (the words of `platform inject`)",
    },
    CommandInfo {
        name: "heal",
        aliases: &[],
        args: "[ID|all]",
        help: "revert one fault or all of them",
    },
    CommandInfo {
        name: "scenario",
        aliases: &["run"],
        args: "NAME",
        help: "run a scenario and watch its timeline",
    },
    CommandInfo {
        name: "load",
        aliases: &[],
        args: "[RATE] [DURATION] [MIX] | stop",
        help: "send load through the gateway (default 20/s for 60s)",
    },
    CommandInfo {
        name: "trace",
        aliases: &[],
        args: "TRACE-ID",
        help: "open a trace's waterfall",
    },
    CommandInfo {
        name: "help",
        aliases: &["h", "?"],
        args: "",
        help: "keys and commands",
    },
    CommandInfo {
        name: "quit",
        aliases: &["q", "q!", "exit"],
        args: "",
        help: "leave the dashboard",
    },
    CommandInfo {
        name: "stop-load",
        aliases: &[],
        args: "",
        help: "stop the load this dashboard started",
    },
];

/// Default load when `:load` names no rate or duration.
pub const DEFAULT_LOAD: (&str, &str) = ("20", "60s");

/// Finds a command by name or alias.
fn lookup(word: &str) -> Option<&'static CommandInfo> {
    COMMANDS
        .iter()
        .find(|c| c.name == word || c.aliases.contains(&word))
}

/// Parses a command line (without the `:`).
pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&first, rest)) = words.split_first() else {
        return Err("type a command; Tab completes, `help` lists them".to_string());
    };
    let info = lookup(first)
        .ok_or_else(|| format!("unknown command `{first}` (Tab completes, `help` lists them)"))?;
    let usage = || format!("usage: {} {}", info.name, info.args);
    let no_args = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(format!("`{}` takes no arguments", info.name))
        }
    };
    match info.name {
        "overview" => no_args(Command::View(View::Overview)),
        "services" => no_args(Command::View(View::Services)),
        "breakers" => no_args(Command::View(View::Breakers)),
        "kafka" => no_args(Command::View(View::Kafka)),
        "traces" => no_args(Command::View(View::Traces)),
        "events" => no_args(Command::View(View::Events)),
        "commands" => no_args(Command::View(View::Commands)),
        "help" => no_args(Command::Help),
        "quit" => no_args(Command::Quit),
        "stop-load" => no_args(Command::StopLoad),
        "logs" => match rest {
            [] => Ok(Command::View(View::Logs)),
            [target] => Ok(Command::Logs(target.to_string())),
            _ => Err(usage()),
        },
        "scale" => match rest {
            [service, n] => {
                let instances = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a number of instances; {}", usage()))?;
                Ok(Command::Scale {
                    service: service.to_string(),
                    instances,
                })
            }
            _ => Err(usage()),
        },
        "inject" => {
            if rest.len() < 2 {
                Err(usage())
            } else {
                Ok(Command::Inject(
                    rest.iter().map(|w| w.to_string()).collect(),
                ))
            }
        }
        "heal" => match rest {
            [] | ["all"] | ["--all"] => Ok(Command::Heal(None)),
            [id] => Ok(Command::Heal(Some(id.to_string()))),
            _ => Err(usage()),
        },
        "scenario" => match rest {
            [name] => Ok(Command::Scenario(name.to_string())),
            _ => Err(usage()),
        },
        "trace" => match rest {
            [id] => Ok(Command::Trace(id.to_string())),
            _ => Err(usage()),
        },
        "load" => match rest {
            ["stop"] => Ok(Command::StopLoad),
            [] => Ok(load(DEFAULT_LOAD.0, DEFAULT_LOAD.1, None)),
            [rate] => Ok(load(rate, DEFAULT_LOAD.1, None)),
            [rate, duration] => Ok(load(rate, duration, None)),
            [rate, duration, mix] => Ok(load(rate, duration, Some(mix))),
            _ => Err(usage()),
        },
        other => Err(format!("`{other}` is not handled")),
    }
}

fn load(rate: &str, duration: &str, mix: Option<&str>) -> Command {
    Command::Load {
        rate: rate.to_string(),
        duration: duration.to_string(),
        mix: mix.map(str::to_string),
    }
}

/// What completion can offer, from the dashboard's current knowledge.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Services of the stack.
    pub services: Vec<String>,
    /// Services `scale` accepts.
    pub scalable: Vec<String>,
    /// Instance labels (`order-service-2`).
    pub instances: Vec<String>,
    /// Fault kinds.
    pub kinds: Vec<String>,
    /// Targets besides services (`broker`, `database`, `identity`).
    pub shorthands: Vec<String>,
    /// Options of `inject`.
    pub inject_flags: Vec<String>,
    pub scenarios: Vec<String>,
    pub fault_ids: Vec<String>,
    pub trace_ids: Vec<String>,
}

/// Candidates for the last word of `line` (the word being typed; empty after a space).
pub fn candidates(line: &str, vocab: &Vocabulary) -> Vec<String> {
    let ends_with_space = line.ends_with(char::is_whitespace);
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let current = if ends_with_space || words.is_empty() {
        ""
    } else {
        words.pop().unwrap_or("")
    };
    let position = words.len();
    let pool: Vec<String> = if position == 0 {
        COMMANDS.iter().map(|c| c.name.to_string()).collect()
    } else {
        let command = lookup(words[0]).map(|c| c.name).unwrap_or("");
        match (command, position) {
            ("scale", 1) => vocab.scalable.clone(),
            ("inject", 1) => vocab.kinds.clone(),
            ("inject", 2) => vocab
                .services
                .iter()
                .chain(vocab.shorthands.iter())
                .cloned()
                .collect(),
            ("inject", _) => vocab.inject_flags.clone(),
            ("heal", 1) => std::iter::once("all".to_string())
                .chain(vocab.fault_ids.iter().cloned())
                .collect(),
            ("scenario", 1) => vocab.scenarios.clone(),
            ("logs", 1) => vocab
                .services
                .iter()
                .chain(vocab.instances.iter())
                .cloned()
                .collect(),
            ("trace", 1) => vocab.trace_ids.clone(),
            ("load", 1) => vec!["stop".into(), "10".into(), "20".into(), "50".into()],
            ("load", 2) => vec!["30s".into(), "60s".into(), "2m".into(), "5m".into()],
            _ => Vec::new(),
        }
    };
    let mut out: Vec<String> = pool
        .into_iter()
        .filter(|c| c.starts_with(current))
        .collect();
    out.dedup();
    out
}

/// `line` with its last word replaced by `candidate` and a space after it.
pub fn complete(line: &str, candidate: &str) -> String {
    let keep = if line.ends_with(char::is_whitespace) {
        line.len()
    } else {
        line.rfind(char::is_whitespace).map_or(0, |i| i + 1)
    };
    format!("{}{candidate} ", &line[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary {
            services: vec!["inventory-service".into(), "order-service".into()],
            scalable: vec!["order-service".into()],
            instances: vec!["order-service-1".into()],
            kinds: vec!["kill".into(), "stop".into(), "latency".into()],
            shorthands: vec!["broker".into()],
            inject_flags: vec!["--duration".into(), "--instance".into(), "--all".into()],
            scenarios: vec!["inventory-down".into()],
            fault_ids: vec!["f-1".into()],
            trace_ids: vec!["abc".into()],
        }
    }

    /// Views by name and alias, actions with their arguments, and clear errors for the rest.
    #[test]
    fn parses_commands() {
        assert_eq!(parse("cb"), Ok(Command::View(View::Breakers)));
        assert_eq!(parse(" services "), Ok(Command::View(View::Services)));
        assert_eq!(
            parse("scale order-service 2"),
            Ok(Command::Scale {
                service: "order-service".into(),
                instances: 2
            })
        );
        assert!(
            parse("scale order-service two")
                .unwrap_err()
                .contains("not a number")
        );
        assert_eq!(
            parse("inject stop inventory-service --duration 60s"),
            Ok(Command::Inject(
                ["stop", "inventory-service", "--duration", "60s"]
                    .map(String::from)
                    .to_vec()
            ))
        );
        assert!(
            parse("inject stop")
                .unwrap_err()
                .starts_with("usage: inject")
        );
        assert_eq!(parse("heal"), Ok(Command::Heal(None)));
        assert_eq!(parse("heal f-1"), Ok(Command::Heal(Some("f-1".into()))));
        assert_eq!(
            parse("load"),
            Ok(Command::Load {
                rate: "20".into(),
                duration: "60s".into(),
                mix: None
            })
        );
        assert_eq!(parse("load stop"), Ok(Command::StopLoad));
        assert_eq!(parse("q"), Ok(Command::Quit));
        assert!(parse("quit now").unwrap_err().contains("no arguments"));
        assert!(parse("frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse("").is_err());
    }

    /// Completion offers what fits the word's position: commands, then scalable services,
    /// kinds, targets, flags, fault ids, scenarios.
    #[test]
    fn completes_by_position() {
        let v = vocab();
        assert_eq!(candidates("sc", &v), vec!["scale", "scenario"]);
        assert_eq!(candidates("scale ", &v), vec!["order-service"]);
        assert_eq!(candidates("inject s", &v), vec!["stop"]);
        assert_eq!(
            candidates("inject stop ", &v),
            vec!["inventory-service", "order-service", "broker"]
        );
        assert_eq!(candidates("inject stop x --d", &v), vec!["--duration"]);
        assert_eq!(candidates("heal ", &v), vec!["all", "f-1"]);
        assert_eq!(candidates("run inv", &v), vec!["inventory-down"]);
        assert_eq!(
            candidates("logs order-service-", &v),
            vec!["order-service-1"]
        );
        assert!(candidates("quit ", &v).is_empty());
        assert_eq!(
            complete("scale ord", "order-service"),
            "scale order-service "
        );
        assert_eq!(complete("scale ", "order-service"), "scale order-service ");
        assert_eq!(complete("sc", "scale"), "scale ");
    }
}
