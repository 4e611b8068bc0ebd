//! The dashboard's colours, in one place: green is healthy, yellow is in between (starting,
//! half-open, drift), red is broken, grey is unknown or secondary. Text never relies on colour
//! alone: every state is also written out, so snapshots and colour-blind users read the same.

use circuit_breaker::State;
use ratatui::style::{Color, Modifier, Style};

use crate::model::logs::Level;
use crate::model::timeline::Severity;

/// Named styles.
pub struct Theme;

impl Theme {
    pub const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    pub const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    pub const DIM: Style = Style::new().fg(Color::DarkGray);
    pub const GOOD: Style = Style::new().fg(Color::Green);
    pub const WARN: Style = Style::new().fg(Color::Yellow);
    pub const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    pub const SELECTED: Style = Style::new().bg(Color::Blue).fg(Color::White);
    pub const LINK: Style = Style::new()
        .fg(Color::Cyan)
        .add_modifier(Modifier::UNDERLINED);
    pub const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
}

/// A breaker state's colour.
pub fn breaker(state: State) -> Style {
    match state {
        State::Closed => Theme::GOOD,
        State::Open | State::ForcedOpen => Theme::BAD,
        State::HalfOpen => Theme::WARN,
        State::Disabled => Theme::DIM,
    }
}

/// A timeline severity's colour.
pub fn severity(s: Severity) -> Style {
    match s {
        Severity::Info => Style::new(),
        Severity::Good => Theme::GOOD,
        Severity::Warning => Theme::WARN,
        Severity::Bad => Theme::BAD,
    }
}

/// A log level's colour.
pub fn level(l: Option<Level>) -> Style {
    match l {
        Some(Level::Error) => Theme::BAD,
        Some(Level::Warn) => Theme::WARN,
        Some(Level::Info) => Theme::GOOD,
        Some(Level::Debug | Level::Trace) | None => Theme::DIM,
    }
}

/// Docker state and health: `running`+`healthy` green, `starting` yellow, the rest red.
pub fn container(state: &str, health: Option<&str>) -> Style {
    match (state, health) {
        ("running", None | Some("healthy")) => Theme::GOOD,
        ("running", Some("starting")) | ("paused" | "restarting" | "created", _) => Theme::WARN,
        _ => Theme::BAD,
    }
}

/// A registry status's colour.
pub fn registry(status: &str) -> Style {
    match status {
        "UP" => Theme::GOOD,
        "STARTING" | "OUT_OF_SERVICE" => Theme::WARN,
        _ => Theme::BAD,
    }
}
