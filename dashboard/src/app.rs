//! The dashboard's state machine: the [`Model`] the collectors feed, plus what the user is
//! doing with it — the view, the selection, the [`Mode`] (a `:` command line, a `/` filter, a
//! menu, a confirmation, help) and the queue of [`Request`]s for the CLI to carry out. Keys go
//! in through [`App::on_key`]; nothing here draws or does I/O, so every key and command is
//! tested on the state alone.

use std::collections::VecDeque;

use chrono::FixedOffset;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::{Action, Request};
use crate::command::{self, Command, Vocabulary};
use crate::model::logs::{Level, LogTarget};
use crate::model::timeline::Severity;
use crate::model::traces::OpenTrace;
use crate::model::{CommandEntry, CommandStatus, Model, Update};
use crate::rows::{self, ServiceRow};

/// The views, in tab order (the number keys 1..8 pick them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Overview,
    Services,
    Breakers,
    Kafka,
    Traces,
    Events,
    Logs,
    Commands,
}

impl View {
    pub const ALL: [View; 8] = [
        View::Overview,
        View::Services,
        View::Breakers,
        View::Kafka,
        View::Traces,
        View::Events,
        View::Logs,
        View::Commands,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Services => "Services",
            View::Breakers => "Breakers",
            View::Kafka => "Kafka",
            View::Traces => "Traces",
            View::Events => "Events",
            View::Logs => "Logs",
            View::Commands => "Commands",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// What keys currently do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Keys navigate and act.
    Normal,
    /// Typing a `:` command.
    Command(Prompt),
    /// Typing a `/` filter for the current view.
    Filter(Prompt),
    /// The help overlay.
    Help,
    /// A menu (fault kinds, durations, faults to heal, scenarios).
    Menu(Menu),
    /// A yes/no question before an action that takes something away.
    Confirm(Confirm),
}

/// A line being edited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    /// Cursor position in characters.
    pub cursor: usize,
    /// Tab cycling: the line before completion, the candidates and the one shown.
    completion: Option<(String, Vec<String>, usize)>,
}

impl Prompt {
    fn with(text: &str) -> Self {
        Prompt {
            text: text.to_string(),
            cursor: text.chars().count(),
            completion: None,
        }
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    /// Applies an editing key; returns false for keys that are not editing.
    fn edit(&mut self, key: &KeyEvent) -> bool {
        let len = self.text.chars().count();
        match key.code {
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.text.clear();
                self.cursor = 0;
            }
            KeyCode::Char('w') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                let head: String = self.text.chars().take(self.cursor).collect();
                let trimmed = head.trim_end();
                let keep = trimmed.rfind(char::is_whitespace).map_or(0, |i| i + 1);
                let tail: String = self.text.chars().skip(self.cursor).collect();
                self.text = format!("{}{tail}", &trimmed[..keep]);
                self.cursor = trimmed[..keep].chars().count();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.text.remove(at);
                self.cursor -= 1;
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            KeyCode::Backspace | KeyCode::Delete => {}
            _ => return false,
        }
        self.completion = None;
        true
    }

    /// Tab: completes the word being typed; further Tabs cycle through the candidates.
    fn tab(&mut self, vocab: &Vocabulary, back: bool) {
        match &mut self.completion {
            Some((base, list, i)) if list.len() > 1 => {
                *i = if back {
                    (*i + list.len() - 1) % list.len()
                } else {
                    (*i + 1) % list.len()
                };
                self.text = command::complete(base, &list[*i]);
            }
            Some(_) => {}
            None => {
                let list = command::candidates(&self.text, vocab);
                let Some(first) = list.first() else { return };
                let base = self.text.clone();
                self.text = command::complete(&base, first);
                if list.len() > 1 {
                    self.completion = Some((base, list, 0));
                }
            }
        }
        self.cursor = self.text.chars().count();
    }

    /// The candidates Tab would offer now, for the line above the prompt.
    pub fn suggestions(&self, vocab: &Vocabulary) -> Vec<String> {
        match &self.completion {
            Some((_, list, _)) => list.clone(),
            None => command::candidates(&self.text, vocab),
        }
    }

    /// The candidate being shown while cycling.
    pub fn cycling(&self) -> Option<&str> {
        self.completion
            .as_ref()
            .map(|(_, list, i)| list[*i].as_str())
    }
}

/// A menu of choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub title: String,
    pub items: Vec<MenuItem>,
    pub selected: usize,
    purpose: MenuPurpose,
}

/// One choice of a menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuItem {
    pub label: String,
    pub detail: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MenuPurpose {
    /// Choosing a fault kind for `target`.
    FaultKind {
        target: Target,
    },
    /// Choosing how long `kind` lasts on `target`.
    FaultDuration {
        target: Target,
        kind: String,
    },
    Heal,
    Scenario,
}

/// A question before an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub question: String,
    /// The CLI line the action equals, shown with the question.
    pub cli: Option<String>,
    action: Action,
}

/// What an action is aimed at: a service, or one instance of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub instance: Option<u32>,
}

impl Target {
    /// `inventory-service (all instances)` or `order-service-2`.
    pub fn label(&self) -> String {
        match self.instance {
            Some(n) => format!("{}-{n}", self.service),
            None => format!("{} (all instances)", self.service),
        }
    }
}

/// A fault kind the inject menu offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    pub name: String,
    pub summary: String,
}

/// A scenario the scenario menu offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioInfo {
    pub name: String,
    /// The file as `platform scenario run` takes it.
    pub file: String,
    pub description: String,
}

/// What the CLI tells the dashboard about the choices it can carry out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub kinds: Vec<KindInfo>,
    /// Targets besides services (`broker`, `database`, `identity`).
    pub shorthands: Vec<String>,
    /// `inject`'s options (`--duration`, `--delay`, ...).
    pub inject_flags: Vec<String>,
    pub durations: Vec<String>,
    pub scenarios: Vec<ScenarioInfo>,
}

/// A message in the footer until the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub severity: Severity,
}

/// The whole dashboard state.
#[derive(Debug, Clone)]
pub struct App {
    pub model: Model,
    pub view: View,
    pub mode: Mode,
    /// Selected row per view.
    cursor: [usize; View::ALL.len()],
    /// The `/` filter per view.
    filters: [String; View::ALL.len()],
    /// Logs view: stay on the newest line as lines arrive.
    pub follow_logs: bool,
    pub catalog: Catalog,
    /// ` --stack X` for CLI equivalents when the stack is not the default one.
    pub stack_flag: Option<String>,
    /// Draw trace links as OSC 8 hyperlinks (real terminals; not in snapshots).
    pub hyperlinks: bool,
    /// The offset clock times are shown in (the user's; UTC in tests).
    pub clock: FixedOffset,
    pub flash: Option<Flash>,
    /// Commands typed, for Up/Down in the command line.
    history: Vec<String>,
    history_pos: Option<usize>,
    outbox: VecDeque<Request>,
    next_id: u64,
    quit: bool,
}

impl App {
    pub fn new(model: Model, catalog: Catalog, stack_flag: Option<String>) -> Self {
        Self {
            model,
            view: View::Overview,
            mode: Mode::Normal,
            cursor: [0; View::ALL.len()],
            filters: Default::default(),
            follow_logs: true,
            catalog,
            stack_flag,
            hyperlinks: false,
            clock: FixedOffset::east_opt(0).expect("zero is a valid offset"),
            flash: None,
            history: Vec::new(),
            history_pos: None,
            outbox: VecDeque::new(),
            next_id: 1,
            quit: false,
        }
    }

    /// True once the user asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Takes an update from a collector.
    pub fn apply(&mut self, update: Update) {
        self.model.apply(update);
    }

    /// The requests queued since the last call, oldest first.
    pub fn take_requests(&mut self) -> Vec<Request> {
        self.outbox.drain(..).collect()
    }

    /// The `/` filter of `view`.
    pub fn filter(&self, view: View) -> &str {
        &self.filters[view.index()]
    }

    /// The selected row of `view`, clamped to `len` rows.
    pub fn cursor(&self, view: View, len: usize) -> usize {
        self.cursor[view.index()].min(len.saturating_sub(1))
    }

    /// The selected row of the logs view: the newest line while following.
    pub fn log_cursor(&self, len: usize) -> usize {
        if self.follow_logs {
            len.saturating_sub(1)
        } else {
            self.cursor(View::Logs, len)
        }
    }

    /// What completion offers, from the model and the catalog.
    pub fn vocabulary(&self) -> Vocabulary {
        let services = &self.model.services.services;
        Vocabulary {
            services: services.iter().map(|s| s.name.clone()).collect(),
            scalable: services
                .iter()
                .filter(|s| s.not_scalable.is_none())
                .map(|s| s.name.clone())
                .collect(),
            instances: services
                .iter()
                .flat_map(|s| s.instances.iter().map(|i| i.label(&s.name)))
                .collect(),
            kinds: self.catalog.kinds.iter().map(|k| k.name.clone()).collect(),
            shorthands: self.catalog.shorthands.clone(),
            inject_flags: self.catalog.inject_flags.clone(),
            scenarios: self
                .catalog
                .scenarios
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            fault_ids: self.model.faults.iter().map(|f| f.id.clone()).collect(),
            trace_ids: self
                .model
                .traces
                .list
                .iter()
                .map(|t| t.id.clone())
                .collect(),
        }
    }

    /// Queues `action` for the CLI and logs its CLI equivalent.
    pub fn request(&mut self, action: Action) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(cli) = action.cli(self.stack_flag.as_deref()) {
            self.model.commands.push(CommandEntry {
                id,
                at: self.model.now,
                cli,
                status: CommandStatus::Running,
            });
        }
        match &action {
            Action::FollowLogs { target } => {
                self.model.logs.retarget(target.clone());
                self.follow_logs = true;
            }
            Action::OpenTrace { id } => {
                self.model.traces.open = Some(OpenTrace::Loading { id: id.clone() });
            }
            _ => {}
        }
        self.outbox.push_back(Request { id, action });
    }

    fn say(&mut self, severity: Severity, text: impl Into<String>) {
        self.flash = Some(Flash {
            text: text.into(),
            severity,
        });
    }

    /// Asks before `action` when it takes something away; queues it otherwise.
    fn confirm_or_request(&mut self, question: Option<String>, action: Action) {
        match question {
            Some(question) => {
                self.mode = Mode::Confirm(Confirm {
                    question,
                    cli: action.cli(self.stack_flag.as_deref()),
                    action,
                });
            }
            None => self.request(action),
        }
    }

    /// Handles one key.
    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            match self.mode {
                Mode::Normal => self.quit = true,
                _ => self.mode = Mode::Normal,
            }
            return;
        }
        self.flash = None;
        let mode = std::mem::replace(&mut self.mode, Mode::Normal);
        match mode {
            Mode::Normal => self.normal_key(key),
            Mode::Help => {}
            Mode::Command(p) => self.command_key(p, key),
            Mode::Filter(p) => self.filter_key(p, key),
            Mode::Menu(m) => self.menu_key(m, key),
            Mode::Confirm(c) => match key.code {
                KeyCode::Char('y' | 'Y') | KeyCode::Enter => self.request(c.action),
                KeyCode::Char('n' | 'N') | KeyCode::Esc => self.say(Severity::Info, "cancelled"),
                _ => self.mode = Mode::Confirm(c),
            },
        }
    }

    fn normal_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char(':') => {
                self.history_pos = None;
                self.mode = Mode::Command(Prompt::default());
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter(Prompt::with(self.filter(self.view)));
            }
            KeyCode::Esc => self.back(),
            KeyCode::Char(c @ '1'..='8') => {
                let i = c as usize - '1' as usize;
                self.show(View::ALL[i]);
            }
            KeyCode::Tab => self.show(View::ALL[(self.view.index() + 1) % View::ALL.len()]),
            KeyCode::BackTab => {
                self.show(View::ALL[(self.view.index() + View::ALL.len() - 1) % View::ALL.len()])
            }
            KeyCode::Char('j') | KeyCode::Down => self.move_cursor(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_cursor(-1),
            KeyCode::Char('d') if ctrl => self.move_cursor(10),
            KeyCode::Char('u') if ctrl => self.move_cursor(-10),
            KeyCode::PageDown => self.move_cursor(10),
            KeyCode::PageUp => self.move_cursor(-10),
            KeyCode::Char('g') | KeyCode::Home => self.move_cursor(isize::MIN / 2),
            KeyCode::Char('G') | KeyCode::End => {
                if self.view == View::Logs {
                    self.follow_logs = true;
                } else {
                    self.move_cursor(isize::MAX / 2);
                }
            }
            KeyCode::Enter => self.enter(),
            KeyCode::Char('l') => self.logs_of_selection(),
            KeyCode::Char('+' | '=') => self.scale_by(1),
            KeyCode::Char('-') => self.scale_by(-1),
            KeyCode::Char('s') => match self.target() {
                Some(t) => {
                    let running = self
                        .model
                        .services
                        .service(&t.service)
                        .map_or(1, |s| s.running());
                    self.mode =
                        Mode::Command(Prompt::with(&format!("scale {} {running}", t.service)));
                }
                None => self.say(Severity::Warning, "select a service first (2: services)"),
            },
            KeyCode::Char('i') => self.inject_menu(),
            KeyCode::Char('h') => self.heal_menu(),
            KeyCode::Char('S') => self.scenario_menu(),
            KeyCode::Char('L') => {
                self.mode = Mode::Command(Prompt::with(&format!(
                    "load {} {}",
                    command::DEFAULT_LOAD.0,
                    command::DEFAULT_LOAD.1
                )));
            }
            KeyCode::Char('f') if self.view == View::Logs => {
                self.follow_logs = !self.follow_logs;
                if !self.follow_logs {
                    let len = rows::logs(&self.model, self.filter(View::Logs)).len();
                    self.cursor[View::Logs.index()] = len.saturating_sub(1);
                }
            }
            _ => {}
        }
    }

    /// Esc in normal mode: close the waterfall, else clear the view's filter.
    fn back(&mut self) {
        if self.view == View::Traces && self.model.traces.open.is_some() {
            self.model.traces.open = None;
        } else {
            self.filters[self.view.index()].clear();
        }
    }

    /// Switches to `view`; the logs view follows the selected service when nothing is
    /// followed yet.
    pub fn show(&mut self, view: View) {
        if view == View::Logs && self.model.logs.target.is_none() {
            let target = self.target().or_else(|| {
                self.model.services.services.first().map(|s| Target {
                    service: s.name.clone(),
                    instance: None,
                })
            });
            if let Some(t) = target {
                self.request(Action::FollowLogs {
                    target: Some(LogTarget {
                        service: t.service,
                        instance: t.instance,
                    }),
                });
            }
        }
        self.view = view;
    }

    fn rows_len(&self) -> usize {
        let f = self.filter(self.view);
        match self.view {
            View::Services => rows::services(&self.model, f).len(),
            View::Breakers => rows::breakers(&self.model, f).len(),
            View::Traces => rows::traces(&self.model, f).len(),
            View::Events => rows::faults(&self.model, f).len(),
            View::Logs => rows::logs(&self.model, f).len(),
            View::Commands => self.model.commands.len(),
            View::Overview | View::Kafka => 0,
        }
    }

    fn move_cursor(&mut self, by: isize) {
        let len = self.rows_len();
        if self.view == View::Logs && self.follow_logs {
            self.follow_logs = false;
            self.cursor[View::Logs.index()] = len.saturating_sub(1);
        }
        let i = &mut self.cursor[self.view.index()];
        let current = (*i).min(len.saturating_sub(1)) as isize;
        let next = (current.saturating_add(by)).clamp(0, len.saturating_sub(1) as isize);
        *i = next as usize;
        if self.view == View::Logs && next as usize + 1 >= len && by > 0 {
            self.follow_logs = true;
        }
    }

    /// What the selection in the current view aims at.
    pub fn target(&self) -> Option<Target> {
        match self.view {
            View::Services => {
                let rows = rows::services(&self.model, self.filter(View::Services));
                let row = rows.get(self.cursor(View::Services, rows.len()))?;
                Some(match row {
                    ServiceRow::Service(s) | ServiceRow::Orphan(s, _) => Target {
                        service: s.name.clone(),
                        instance: None,
                    },
                    ServiceRow::Instance(s, i) => Target {
                        service: s.name.clone(),
                        instance: Some(i.number),
                    },
                })
            }
            View::Breakers => {
                let rows = rows::breakers(&self.model, self.filter(View::Breakers));
                let row = rows.get(self.cursor(View::Breakers, rows.len()))?;
                let (service, n) = row.instance.rsplit_once('-')?;
                Some(Target {
                    service: service.to_string(),
                    instance: n.parse().ok(),
                })
            }
            View::Logs => self.model.logs.target.as_ref().map(|t| Target {
                service: t.service.clone(),
                instance: t.instance,
            }),
            _ => None,
        }
    }

    fn enter(&mut self) {
        match self.view {
            View::Services => self.logs_of_selection(),
            View::Traces => {
                let rows = rows::traces(&self.model, self.filter(View::Traces));
                if self.model.traces.open.is_some() {
                    return;
                }
                if let Some(t) = rows.get(self.cursor(View::Traces, rows.len())) {
                    self.model.traces.open = Some(OpenTrace::Loaded((*t).clone()));
                }
            }
            View::Logs => {
                let rows = rows::logs(&self.model, self.filter(View::Logs));
                let line = rows.get(self.log_cursor(rows.len()));
                match line.and_then(|l| l.trace_id.clone()) {
                    Some(id) => self.open_trace(&id),
                    None => self.say(Severity::Info, "this line carries no trace id"),
                }
            }
            View::Events => {
                let faults = rows::faults(&self.model, self.filter(View::Events));
                if let Some(f) = faults.get(self.cursor(View::Events, faults.len())) {
                    let id = f.id.clone();
                    self.request(Action::Heal { id: Some(id) });
                }
            }
            _ => {}
        }
    }

    /// Opens trace `id`: from the recent list when it is there, else asks the CLI for it.
    pub fn open_trace(&mut self, id: &str) {
        self.view = View::Traces;
        let id = id.trim().to_ascii_lowercase();
        match self.model.traces.find(&id) {
            Some(t) => self.model.traces.open = Some(OpenTrace::Loaded(t.clone())),
            None => self.request(Action::OpenTrace { id }),
        }
    }

    fn logs_of_selection(&mut self) {
        match self.target() {
            Some(t) => {
                let target = LogTarget {
                    service: t.service,
                    instance: t.instance,
                };
                if self.model.logs.target.as_ref() != Some(&target) {
                    self.request(Action::FollowLogs {
                        target: Some(target),
                    });
                }
                self.view = View::Logs;
            }
            None => self.say(Severity::Warning, "select a service first (2: services)"),
        }
    }

    fn scale_by(&mut self, by: i64) {
        let Some(t) = self.target() else {
            return self.say(Severity::Warning, "select a service first (2: services)");
        };
        let Some(service) = self.model.services.service(&t.service) else {
            return;
        };
        if let Some(reason) = &service.not_scalable {
            let text = format!("{} cannot be scaled: {reason}", service.name);
            return self.say(Severity::Warning, text);
        }
        let running = i64::try_from(service.running()).unwrap_or(0);
        let n = running + by;
        if n < 0 {
            return self.say(
                Severity::Warning,
                format!("{} runs no instance", service.name),
            );
        }
        self.scale(&service.name.clone(), n as u32);
    }

    /// Scales `service` to `n`, asking first when that removes instances.
    fn scale(&mut self, service: &str, n: u32) {
        let running = self
            .model
            .services
            .service(service)
            .map_or(0, |s| s.running() as u32);
        let question = (n < running).then(|| {
            format!(
                "Scale {service} from {running} to {n}? {} instance{} will be stopped.",
                running - n,
                if running - n == 1 { "" } else { "s" }
            )
        });
        self.confirm_or_request(
            question,
            Action::Scale {
                service: service.to_string(),
                instances: n,
            },
        );
    }

    fn inject_menu(&mut self) {
        let Some(target) = self.target() else {
            return self.say(
                Severity::Warning,
                "select a service or instance first (2: services), or type :inject",
            );
        };
        if self.catalog.kinds.is_empty() {
            return self.say(Severity::Warning, "fault injection is not available here");
        }
        self.mode = Mode::Menu(Menu {
            title: format!("Inject a fault on {}", target.label()),
            items: self
                .catalog
                .kinds
                .iter()
                .map(|k| MenuItem {
                    label: k.name.clone(),
                    detail: k.summary.clone(),
                    value: k.name.clone(),
                })
                .collect(),
            selected: 0,
            purpose: MenuPurpose::FaultKind { target },
        });
    }

    fn heal_menu(&mut self) {
        if self.model.faults.is_empty() {
            return self.say(Severity::Info, "no active faults (h heals, i injects)");
        }
        let now = self.model.now;
        let mut items = vec![MenuItem {
            label: "all".into(),
            detail: format!("every active fault ({})", self.model.faults.len()),
            value: String::new(),
        }];
        items.extend(self.model.faults.iter().map(|f| MenuItem {
            label: f.id.clone(),
            detail: format!(
                "{} on {}, {} left",
                f.kind,
                f.instance,
                crate::ui::format::duration(f.left(now))
            ),
            value: f.id.clone(),
        }));
        self.mode = Mode::Menu(Menu {
            title: "Heal".into(),
            items,
            selected: 0,
            purpose: MenuPurpose::Heal,
        });
    }

    fn scenario_menu(&mut self) {
        if self.catalog.scenarios.is_empty() {
            return self.say(
                Severity::Info,
                "no scenario files found in stacks/scenarios",
            );
        }
        self.mode = Mode::Menu(Menu {
            title: "Run a scenario".into(),
            items: self
                .catalog
                .scenarios
                .iter()
                .map(|s| MenuItem {
                    label: s.name.clone(),
                    detail: s.description.clone(),
                    value: s.name.clone(),
                })
                .collect(),
            selected: 0,
            purpose: MenuPurpose::Scenario,
        });
    }

    fn menu_key(&mut self, mut menu: Menu, key: KeyEvent) {
        let len = menu.items.len();
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return self.say(Severity::Info, "cancelled"),
            KeyCode::Char('j') | KeyCode::Down => menu.selected = (menu.selected + 1) % len,
            KeyCode::Char('k') | KeyCode::Up => menu.selected = (menu.selected + len - 1) % len,
            KeyCode::Char(c @ '1'..='9') if (c as usize - '1' as usize) < len => {
                menu.selected = c as usize - '1' as usize;
                return self.choose(menu);
            }
            KeyCode::Enter => return self.choose(menu),
            _ => {}
        }
        self.mode = Mode::Menu(menu);
    }

    fn choose(&mut self, menu: Menu) {
        let Some(item) = menu.items.get(menu.selected) else {
            return;
        };
        let value = item.value.clone();
        match menu.purpose {
            MenuPurpose::FaultKind { target } => {
                self.mode = Mode::Menu(Menu {
                    title: format!("{value} on {} for how long?", target.label()),
                    items: self
                        .catalog
                        .durations
                        .iter()
                        .map(|d| MenuItem {
                            label: d.clone(),
                            detail: String::new(),
                            value: d.clone(),
                        })
                        .collect(),
                    selected: 0,
                    purpose: MenuPurpose::FaultDuration {
                        target,
                        kind: value,
                    },
                });
            }
            MenuPurpose::FaultDuration { target, kind } => {
                let mut words = vec![kind.clone(), target.service.clone()];
                match target.instance {
                    Some(n) => words.extend(["--instance".to_string(), n.to_string()]),
                    None => words.push("--all".to_string()),
                }
                words.extend(["--duration".to_string(), value.clone()]);
                self.confirm_or_request(
                    Some(format!("Inject {kind} on {} for {value}?", target.label())),
                    Action::Inject { words },
                );
            }
            MenuPurpose::Heal => {
                let id = (!value.is_empty()).then_some(value);
                self.request(Action::Heal { id });
            }
            MenuPurpose::Scenario => self.run_scenario(&value),
        }
    }

    fn run_scenario(&mut self, name: &str) {
        let Some(s) = self.catalog.scenarios.iter().find(|s| s.name == name) else {
            let known: Vec<&str> = self
                .catalog
                .scenarios
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return self.say(
                Severity::Warning,
                format!("no scenario `{name}` (known: {})", known.join(", ")),
            );
        };
        let action = Action::Scenario {
            name: s.name.clone(),
            file: s.file.clone(),
        };
        let question = format!(
            "Run scenario {}? It injects faults: {}",
            s.name, s.description
        );
        self.view = View::Events;
        self.confirm_or_request(Some(question), action);
    }

    fn command_key(&mut self, mut p: Prompt, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => {}
            KeyCode::Enter => {
                let line = p.text.trim().to_string();
                if !line.is_empty() {
                    self.history.retain(|h| h != &line);
                    self.history.push(line.clone());
                }
                self.run_command(&line);
            }
            KeyCode::Tab => {
                p.tab(&self.vocabulary(), false);
                self.mode = Mode::Command(p);
            }
            KeyCode::BackTab => {
                p.tab(&self.vocabulary(), true);
                self.mode = Mode::Command(p);
            }
            KeyCode::Up | KeyCode::Down if !self.history.is_empty() => {
                let last = self.history.len() - 1;
                let pos = match (self.history_pos, key.code) {
                    (None, KeyCode::Up) => Some(last),
                    (None, _) => None,
                    (Some(i), KeyCode::Up) => Some(i.saturating_sub(1)),
                    (Some(i), _) if i < last => Some(i + 1),
                    (Some(_), _) => None,
                };
                self.history_pos = pos;
                let text = pos.map_or("", |i| self.history[i].as_str());
                self.mode = Mode::Command(Prompt::with(text));
            }
            // Backspace on an empty line leaves the command line, as in k9s.
            KeyCode::Backspace if p.text.is_empty() => {}
            _ => {
                p.edit(&key);
                self.mode = Mode::Command(p);
            }
        }
    }

    /// Runs a `:` command line.
    pub fn run_command(&mut self, line: &str) {
        let command = match command::parse(line) {
            Ok(c) => c,
            Err(e) => return self.say(Severity::Bad, e),
        };
        match command {
            Command::View(v) => self.show(v),
            Command::Help => self.mode = Mode::Help,
            Command::Quit => self.quit = true,
            Command::Scale { service, instances } => self.scale(&service, instances),
            Command::Inject(words) => {
                let question = format!("Inject {}?", words.join(" "));
                self.confirm_or_request(Some(question), Action::Inject { words });
            }
            Command::Heal(id) => self.request(Action::Heal { id }),
            Command::Scenario(name) => self.run_scenario(&name),
            Command::Load {
                rate,
                duration,
                mix,
            } => {
                if self.model.load.is_some() {
                    return self.say(
                        Severity::Warning,
                        "a load run is going on; `:load stop` ends it",
                    );
                }
                self.request(Action::Load {
                    rate,
                    duration,
                    mix,
                });
            }
            Command::StopLoad => {
                if self.model.load.is_none() {
                    return self.say(Severity::Info, "no load is running");
                }
                self.request(Action::StopLoad);
            }
            Command::Trace(id) => self.open_trace(&id),
            Command::Logs(target) => {
                let target = self.parse_log_target(&target);
                match target {
                    Ok(t) => {
                        self.request(Action::FollowLogs { target: Some(t) });
                        self.view = View::Logs;
                    }
                    Err(e) => self.say(Severity::Bad, e),
                }
            }
        }
    }

    /// `order-service` or `order-service-2`, checked against the services known.
    fn parse_log_target(&self, text: &str) -> Result<LogTarget, String> {
        let services = &self.model.services.services;
        if services.is_empty() || services.iter().any(|s| s.name == text) {
            return Ok(LogTarget {
                service: text.to_string(),
                instance: None,
            });
        }
        if let Some((service, n)) = text.rsplit_once('-')
            && let Ok(n) = n.parse::<u32>()
            && services.iter().any(|s| s.name == service)
        {
            return Ok(LogTarget {
                service: service.to_string(),
                instance: Some(n),
            });
        }
        Err(format!(
            "no service `{text}` (services: {})",
            services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    fn filter_key(&mut self, mut p: Prompt, key: KeyEvent) {
        let i = self.view.index();
        match key.code {
            KeyCode::Esc => self.filters[i].clear(),
            KeyCode::Enter => self.filters[i] = p.text.trim().to_string(),
            _ => {
                p.edit(&key);
                // The filter applies while it is typed.
                self.filters[i] = p.text.clone();
                self.mode = Mode::Filter(p);
            }
        }
        self.cursor[i] = 0;
        if self.view == View::Logs {
            self.follow_logs = true;
        }
    }

    /// The minimum level of the logs filter, for the logs panel's title.
    pub fn log_level(&self) -> Option<Level> {
        crate::model::logs::LogFilter::parse(self.filter(View::Logs)).level
    }
}

#[cfg(test)]
mod tests;
