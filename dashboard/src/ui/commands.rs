//! The command log: every action the dashboard took, each as the `platform` command line that
//! does the same (plain text, so it can be copied from the terminal), with how it went. The
//! pane under the views shows the latest; the Commands view shows all of them. The pane's title
//! also carries the running load and scenario.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::format;
use super::theme::Theme;
use crate::app::{App, View};
use crate::model::{CommandEntry, CommandStatus};

fn entry_line(app: &App, c: &CommandEntry, selected: bool) -> Line<'static> {
    let (mark, style, outcome) = match &c.status {
        CommandStatus::Running => ("…", Theme::WARN, String::new()),
        CommandStatus::Done(d) => ("✓", Theme::GOOD, d.clone()),
        CommandStatus::Failed(e) => ("✗", Theme::BAD, e.clone()),
    };
    let cli_style = if selected {
        Theme::SELECTED
    } else {
        ratatui::style::Style::new()
    };
    let mut spans = vec![
        Span::styled(format::clock(c.at, app.clock), Theme::DIM),
        Span::raw(" "),
        Span::styled(mark, style),
        Span::raw(" "),
        Span::styled(c.cli.clone(), cli_style),
    ];
    if !outcome.is_empty() {
        spans.push(Span::styled(format!("  # {outcome}"), style));
    }
    Line::from(spans)
}

/// The pane: a rule with the title, then the newest entries.
pub fn render_pane(app: &App, area: Rect, buf: &mut Buffer) {
    if area.height == 0 {
        return;
    }
    let mut title = vec![Span::styled(" commands ", Theme::TITLE)];
    if let Some(load) = &app.model.load {
        title.push(Span::styled(format!("· load {load} "), Theme::WARN));
    }
    if let Some(s) = &app.model.scenario {
        title.push(Span::styled(format!("· scenario {s} "), Theme::WARN));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(Theme::DIM)
        .title(Line::from(title));
    let inner = block.inner(area);
    block.render(area, buf);
    let n = inner.height as usize;
    let lines: Vec<Line<'static>> = if app.model.commands.is_empty() {
        vec![Line::styled(
            "actions taken here appear as the platform commands that do the same",
            Theme::DIM,
        )]
    } else {
        let skip = app.model.commands.len().saturating_sub(n);
        app.model.commands[skip..]
            .iter()
            .map(|c| entry_line(app, c, false))
            .collect()
    };
    Paragraph::new(lines).render(inner, buf);
}

/// The Commands view: every entry, the selected one highlighted.
pub fn render_view(app: &App, area: Rect, buf: &mut Buffer) {
    let block = super::panel("Commands — the CLI equivalent of every action", "");
    let inner = block.inner(area);
    block.render(area, buf);
    let all = &app.model.commands;
    if all.is_empty() {
        Paragraph::new(Line::styled(
            "nothing done yet: + scales, i injects, h heals, S runs a scenario, :load sends load",
            Theme::DIM,
        ))
        .render(inner, buf);
        return;
    }
    let selected = app.cursor(View::Commands, all.len());
    let height = inner.height as usize;
    let skip = (selected + 1).saturating_sub(height);
    let lines: Vec<Line<'static>> = all
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, c)| entry_line(app, c, i == selected))
        .collect();
    Paragraph::new(lines).render(inner, buf);
}
