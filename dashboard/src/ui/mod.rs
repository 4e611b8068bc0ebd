//! Drawing: pure functions from [`App`] to a ratatui buffer, with no I/O, so the same code
//! draws the live terminal, `platform dashboard --snapshot` and the `TestBackend` snapshots.
//!
//! The screen, top to bottom: a header (stack, clock, each backend's reachability), the view
//! tabs, the current view, the command log (the last actions with their CLI equivalents) and a
//! footer (key hints, the `:` or `/` prompt, or a message). Menus, confirmations, help and
//! completions are drawn over the view. At 80×24 every view keeps its essentials; wider and
//! taller terminals get more columns and rows.

pub mod breakers;
pub mod commands;
pub mod events;
pub mod format;
pub mod kafka;
pub mod link;
pub mod logs;
pub mod overlay;
pub mod overview;
pub mod services;
pub mod text;
pub mod theme;
pub mod traces;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use crate::app::{App, Mode, View};
use crate::model::sources::{Reach, Source};
use theme::Theme;

/// Draws the whole dashboard into `frame`, with the cursor in the prompt when one is open.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    frame.render_widget(app, area);
    if let Mode::Command(p) | Mode::Filter(p) = &app.mode {
        let footer = areas(area).footer;
        let x = footer.x + 1 + p.cursor as u16;
        frame.set_cursor_position((x.min(footer.right().saturating_sub(1)), footer.y));
    }
}

/// The screen's parts.
#[derive(Debug, Clone, Copy)]
pub struct Areas {
    pub header: Rect,
    pub tabs: Rect,
    pub body: Rect,
    pub commands: Rect,
    pub footer: Rect,
}

/// Splits the screen; the command log shrinks away on very short terminals.
pub fn areas(area: Rect) -> Areas {
    let log = match area.height {
        0..14 => 0,
        14..20 => 2,
        20..40 => 3,
        _ => 5,
    };
    let [header, tabs, body, commands, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(log),
        Constraint::Length(1),
    ])
    .areas(area);
    Areas {
        header,
        tabs,
        body,
        commands,
        footer,
    }
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let a = areas(area);
        header(self, a.header, buf);
        tabs(self, a.tabs, buf);
        match self.view {
            View::Overview => overview::render(self, a.body, buf),
            View::Services => services::render(self, a.body, buf),
            View::Breakers => breakers::render(self, a.body, buf),
            View::Kafka => kafka::render(self, a.body, buf),
            View::Traces => traces::render(self, a.body, buf),
            View::Events => events::render(self, a.body, buf),
            View::Logs => logs::render(self, a.body, buf),
            View::Commands => commands::render_view(self, a.body, buf),
        }
        commands::render_pane(self, a.commands, buf);
        overlay::footer(self, a.footer, buf);
        overlay::render(self, a.body, buf);
    }
}

fn header(app: &App, area: Rect, buf: &mut Buffer) {
    let m = &app.model;
    let mut spans = vec![
        Span::styled(
            if area.width >= 100 {
                "platform dashboard · "
            } else {
                ""
            },
            Theme::DIM,
        ),
        Span::styled(m.stack.clone(), Theme::TITLE),
        Span::raw(" "),
        Span::raw(format::clock(m.now, app.clock)),
        Span::styled(" │", Theme::DIM),
    ];
    for s in Source::ALL {
        let (mark, style) = match m.sources.get(s) {
            Reach::Unknown => ("○", Theme::DIM),
            Reach::Up { .. } => ("●", Theme::GOOD),
            Reach::Down { .. } => ("✗", Theme::BAD),
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!("{mark}{}", s.name()), style));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

fn tabs(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        let style = if *v == app.view {
            Theme::SELECTED.add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!("{} {}", i + 1, v.title()), style));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

/// A bordered panel with a title (and the view's filter, when one is set).
pub fn panel<'a>(title: impl Into<String>, filter: &str) -> Block<'a> {
    let mut title = vec![Span::styled(format!(" {} ", title.into()), Theme::TITLE)];
    if !filter.is_empty() {
        title.push(Span::styled(format!("/{filter} "), Theme::WARN));
    }
    Block::bordered()
        .border_style(Theme::DIM)
        .title(Line::from(title))
}

/// "✗ registry unreachable since 12:03:04 (35s) at URL: connection refused" when `source` is
/// down (without the address unless `address`),
/// "waiting for registry…" before it was asked; nothing while it answers.
pub fn reach_line(app: &App, source: Source, address: bool) -> Option<Line<'static>> {
    match app.model.sources.get(source) {
        Reach::Up { .. } => None,
        Reach::Unknown => Some(Line::styled(
            format!("waiting for {}…", source.name()),
            Theme::DIM,
        )),
        Reach::Down { since, error, at } => Some(Line::styled(
            format!(
                "✗ {} unreachable since {} ({}){}: {error}",
                source.name(),
                format::clock(*since, app.clock),
                format::age(app.model.now, *since),
                at.as_ref()
                    .filter(|_| address)
                    .map(|a| format!(" at {a}"))
                    .unwrap_or_default()
            ),
            Theme::BAD,
        )),
    }
}

/// Draws the reachability lines of `sources` at the top of `area` (wrapped), and returns the
/// area left below them (at least one row).
pub fn reach_lines(app: &App, sources: &[Source], area: Rect, buf: &mut Buffer) -> Rect {
    let lines: Vec<Line<'static>> = sources
        .iter()
        .filter_map(|s| reach_line(app, *s, true))
        .collect();
    reach_into(lines, area, buf, 1)
}

/// [`reach_lines`] for the overview's small panels: without the address, and taking the
/// whole panel when needed.
pub fn reach_lines_compact(app: &App, sources: &[Source], area: Rect, buf: &mut Buffer) -> Rect {
    let lines: Vec<Line<'static>> = sources
        .iter()
        .filter_map(|s| reach_line(app, *s, false))
        .collect();
    reach_into(lines, area, buf, 0)
}

fn reach_into(lines: Vec<Line<'static>>, area: Rect, buf: &mut Buffer, keep: u16) -> Rect {
    if lines.is_empty() || area.height == 0 {
        return area;
    }
    let width = usize::from(area.width.max(1));
    let wrapped: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    let height = u16::try_from(wrapped)
        .unwrap_or(u16::MAX)
        .min(area.height.saturating_sub(keep).max(1));
    let paragraph = Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: true });
    let [top, rest] =
        Layout::vertical([Constraint::Length(height), Constraint::Min(0)]).areas(area);
    paragraph.render(top, buf);
    rest
}

#[cfg(test)]
mod tests;
