//! What is drawn over the views: the footer (key hints, the `:` and `/` prompts with
//! completion, messages), and the help, menu and confirmation popups.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use super::theme::{self, Theme};
use crate::app::{App, Mode, View};
use crate::command::COMMANDS;

/// The footer line.
pub fn footer(app: &App, area: Rect, buf: &mut Buffer) {
    let line = match &app.mode {
        Mode::Command(p) => {
            let mut spans = vec![Span::styled(":", Theme::KEY), Span::raw(p.text.clone())];
            if p.cycling().is_none() && p.cursor == p.text.chars().count() {
                let candidates = p.suggestions(&app.vocabulary());
                if let Some(first) = candidates.first() {
                    let typed = p.text.rsplit(char::is_whitespace).next().unwrap_or("");
                    if let Some(rest) = first.strip_prefix(typed).filter(|r| !r.is_empty()) {
                        spans.push(Span::styled(rest.to_string(), Theme::DIM));
                    }
                }
            }
            Line::from(spans)
        }
        Mode::Filter(p) => Line::from(vec![
            Span::styled("/", Theme::KEY),
            Span::raw(p.text.clone()),
            Span::styled(
                match app.view {
                    View::Logs => "   level:warn trace:ID words",
                    _ => "   Enter keeps, Esc clears",
                },
                Theme::DIM,
            ),
        ]),
        _ => match &app.flash {
            Some(f) => Line::styled(f.text.clone(), theme::severity(f.severity)),
            None => hints(app),
        },
    };
    Paragraph::new(line).render(area, buf);
}

fn hints(app: &App) -> Line<'static> {
    let mut keys: Vec<(&str, &str)> = vec![("?", "help"), (":", "cmd"), ("/", "filter")];
    match app.view {
        View::Services | View::Breakers => keys.extend([
            ("+/-", "scale"),
            ("i", "inject"),
            ("h", "heal"),
            ("l", "logs"),
        ]),
        View::Traces if app.model.traces.open.is_some() => keys.push(("Esc", "back")),
        View::Traces => keys.push(("⏎", "waterfall")),
        View::Logs => keys.extend([("f", "follow"), ("⏎", "trace")]),
        View::Events => keys.extend([("⏎", "heal"), ("h", "heal…"), ("S", "scenario")]),
        _ => keys.extend([("1-8", "views"), ("S", "scenario"), ("L", "load")]),
    }
    keys.push(("q", "quit"));
    let mut spans = Vec::new();
    for (i, (k, what)) in keys.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(k.to_string(), Theme::KEY));
        spans.push(Span::styled(format!(" {what}"), Theme::DIM));
    }
    Line::from(spans)
}

/// Popups over the body.
pub fn render(app: &App, body: Rect, buf: &mut Buffer) {
    match &app.mode {
        Mode::Help => help(body, buf),
        Mode::Menu(menu) => {
            let mut lines = Vec::new();
            for (i, item) in menu.items.iter().enumerate() {
                let style = if i == menu.selected {
                    Theme::SELECTED
                } else {
                    Style::new()
                };
                let number = if i < 9 {
                    format!("{} ", i + 1)
                } else {
                    "  ".to_string()
                };
                let mut spans = vec![
                    Span::styled(number, Theme::KEY),
                    Span::styled(format!("{:<12}", item.label), style),
                ];
                if !item.detail.is_empty() {
                    spans.push(Span::styled(format!(" {}", item.detail), Theme::DIM));
                }
                lines.push(Line::from(spans));
            }
            lines.push(Line::styled("⏎ choose · Esc cancel · j/k move", Theme::DIM));
            // Keep the selected item in view when the menu is taller than the screen.
            let inner = body.height.saturating_sub(2) as usize;
            let skip = (menu.selected + 2).saturating_sub(inner);
            popup(
                &menu.title,
                lines.into_iter().skip(skip).collect(),
                body,
                buf,
            );
        }
        Mode::Confirm(c) => {
            let mut lines = vec![Line::raw(c.question.clone()), Line::raw("")];
            if let Some(cli) = &c.cli {
                lines.push(Line::styled(format!("$ {cli}"), Theme::DIM));
                lines.push(Line::raw(""));
            }
            lines.push(Line::from(vec![
                Span::styled("y", Theme::KEY),
                Span::raw(" yes   "),
                Span::styled("n", Theme::KEY),
                Span::raw(" no"),
            ]));
            popup("Confirm", lines, body, buf);
        }
        Mode::Command(p) => {
            let candidates = p.suggestions(&app.vocabulary());
            if candidates.len() > 1 && body.height > 2 {
                let mut spans = vec![Span::styled(" Tab ", Theme::KEY)];
                for c in candidates.iter().take(12) {
                    let style = if Some(c.as_str()) == p.cycling() {
                        Theme::SELECTED
                    } else {
                        Style::new()
                    };
                    spans.push(Span::styled(c.clone(), style));
                    spans.push(Span::raw(" "));
                }
                let area = Rect::new(body.x, body.bottom() - 1, body.width, 1);
                Clear.render(area, buf);
                Paragraph::new(Line::from(spans)).render(area, buf);
            }
        }
        Mode::Normal | Mode::Filter(_) => {}
    }
}

/// A centered bordered box sized to `lines`.
fn popup(title: &str, lines: Vec<Line<'static>>, body: Rect, buf: &mut Buffer) {
    let widest = lines
        .iter()
        .map(Line::width)
        .max()
        .unwrap_or(0)
        .max(title.len() + 4);
    let width = (widest as u16 + 4).min(body.width);
    let wrapped: u16 = lines
        .iter()
        .map(|l| (l.width().max(1) as u16).div_ceil(width.saturating_sub(4).max(1)))
        .sum();
    let height = (wrapped + 2).min(body.height);
    let area = centered(body, width, height);
    Clear.render(area, buf);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(
            Block::bordered()
                .border_style(Theme::TITLE)
                .title(Line::styled(format!(" {title} "), Theme::TITLE))
                .padding(ratatui::widgets::Padding::horizontal(1)),
        )
        .render(area, buf);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [_, mid, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, center, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(mid);
    center
}

/// The keys, then the commands.
const KEYS: [(&str, &str); 16] = [
    ("1-8 Tab", "switch view"),
    ("j k ↑ ↓", "move (g/G top/bottom)"),
    ("⏎", "open: logs, waterfall, trace"),
    ("Esc", "back / clear filter"),
    ("/", "filter the view"),
    (":", "command line (Tab completes)"),
    ("+ -", "scale selected service"),
    ("s", "scale to… (command line)"),
    ("i", "inject a fault on selection"),
    ("h", "heal faults"),
    ("S", "run a scenario"),
    ("L", "send load"),
    ("l", "logs of selection"),
    ("f", "logs: follow on/off"),
    ("?", "this help"),
    ("q ^C", "quit"),
];

fn help(body: Rect, buf: &mut Buffer) {
    let area = centered(body, body.width.min(96), body.height);
    Clear.render(area, buf);
    let block = Block::bordered()
        .border_style(Theme::TITLE)
        .title(Line::styled(" Help — any key closes ", Theme::TITLE));
    let inner = block.inner(area);
    block.render(area, buf);
    let key_lines: Vec<Line<'static>> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<8}"), Theme::KEY),
                Span::raw(*what),
            ])
        })
        .collect();
    // Wide: each command with what it does; narrow: the commands and their arguments.
    let wide = inner.width >= 100;
    let command_lines: Vec<Line<'static>> = COMMANDS
        .iter()
        .map(|c| {
            let mut spans = vec![
                Span::styled(format!(":{}", c.name), Theme::KEY),
                Span::styled(format!(" {}", c.args), Theme::DIM),
            ];
            if wide {
                let used: usize = spans.iter().map(Span::width).sum();
                spans.push(Span::raw(format!(
                    "{}{}",
                    " ".repeat(34usize.saturating_sub(used)),
                    c.help
                )));
            }
            Line::from(spans)
        })
        .collect();
    let [left, right] =
        Layout::horizontal([Constraint::Length(38), Constraint::Min(0)]).areas(inner);
    Paragraph::new(key_lines).render(left, buf);
    Paragraph::new(command_lines).render(right, buf);
}
