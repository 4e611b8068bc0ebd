//! The events panel: active faults with the time each has left (⏎ heals the selected one),
//! then one timeline, newest first, of registry changes, breaker transitions, container events,
//! faults, scenario steps, load runs and actions.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

use super::format;
use super::theme::{self, Theme};
use crate::app::{App, View};
use crate::model::sources::Source;
use crate::model::timeline::Event;
use crate::rows;

fn event_line(app: &App, e: &Event, width: usize) -> Line<'static> {
    let time = format::clock(e.at, app.clock);
    let tag = format!(" {:<8} ", e.kind.tag());
    let text = format::fit(&e.text, width.saturating_sub(time.len() + tag.len()));
    Line::from(vec![
        Span::styled(time, Theme::DIM),
        Span::styled(tag, Theme::DIM),
        Span::styled(text, theme::severity(e.severity)),
    ])
}

/// The faults table; returns the rows it used.
fn faults_table(app: &App, area: Rect, buf: &mut Buffer, selected: Option<usize>) {
    let filter = app.filter(View::Events);
    let faults = rows::faults(&app.model, filter);
    let now = app.model.now;
    let rows: Vec<Row<'_>> = faults
        .iter()
        .map(|f| {
            Row::new(vec![
                Cell::from(f.id.clone()),
                Cell::from(Span::styled(f.kind.clone(), Theme::BAD)),
                Cell::from(f.instance.clone()),
                Cell::from(format::duration(f.left(now))),
                Cell::from(Span::styled(f.options.clone(), Theme::DIM)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(12),
            Constraint::Length(24),
            Constraint::Length(7),
            Constraint::Min(0),
        ],
    )
    .header(
        Row::new(["FAULT", "KIND", "ON", "LEFT", "OPTIONS"])
            .style(Theme::DIM.add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Theme::SELECTED);
    let mut state = TableState::new().with_selected(selected);
    StatefulWidget::render(table, area, buf, &mut state);
}

/// The Events view.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let filter = app.filter(View::Events);
    let block = super::panel("Events — active faults and the timeline", filter);
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines(app, &[Source::Faults], inner, buf);
    let faults = rows::faults(&app.model, filter);
    let mut activity: Vec<Line<'static>> = Vec::new();
    if let Some(s) = &app.model.scenario {
        activity.push(Line::styled(format!("scenario: {s}"), Theme::WARN));
    }
    if let Some(l) = &app.model.load {
        activity.push(Line::styled(format!("load: {l}"), Theme::WARN));
    }
    let faults_height = if faults.is_empty() {
        1
    } else {
        (faults.len() as u16 + 1).min(inner.height / 2)
    };
    let [faults_area, activity_area, timeline_area] = Layout::vertical([
        Constraint::Length(faults_height),
        Constraint::Length(activity.len() as u16),
        Constraint::Min(0),
    ])
    .areas(inner);
    if faults.is_empty() {
        Paragraph::new(Line::styled(
            "no active faults (i injects one on the selected service, S runs a scenario)",
            Theme::DIM,
        ))
        .render(faults_area, buf);
    } else {
        let selected = app.cursor(View::Events, faults.len());
        faults_table(app, faults_area, buf, Some(selected));
    }
    Paragraph::new(activity).render(activity_area, buf);
    let width = timeline_area.width as usize;
    let lines: Vec<Line<'static>> = rows::events(&app.model, filter)
        .into_iter()
        .take(timeline_area.height as usize)
        .map(|e| event_line(app, e, width))
        .collect();
    if lines.is_empty() {
        Paragraph::new(Line::styled("nothing happened yet", Theme::DIM)).render(timeline_area, buf);
    } else {
        Paragraph::new(lines).render(timeline_area, buf);
    }
}

/// The overview's form: faults (one line each), then the newest events.
pub fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let block = super::panel("Faults and events", "");
    let inner = block.inner(area);
    block.render(area, buf);
    let width = inner.width as usize;
    let now = app.model.now;
    let mut lines: Vec<Line<'static>> = app
        .model
        .faults
        .iter()
        .map(|f| {
            Line::styled(
                format::fit(
                    &format!(
                        "⚡ {} {} on {}, {} left",
                        f.id,
                        f.kind,
                        f.instance,
                        format::duration(f.left(now))
                    ),
                    width,
                ),
                Theme::BAD,
            )
        })
        .collect();
    if let Some(s) = &app.model.scenario {
        lines.push(Line::styled(
            format::fit(&format!("scenario {s}"), width),
            Theme::WARN,
        ));
    }
    let room = (inner.height as usize).saturating_sub(lines.len());
    lines.extend(
        app.model
            .timeline
            .iter()
            .rev()
            .take(room)
            .map(|e| event_line(app, e, width)),
    );
    if lines.is_empty() {
        lines.push(Line::styled(
            "nothing happened yet",
            Style::new().fg(ratatui::style::Color::DarkGray),
        ));
    }
    Paragraph::new(lines).render(inner, buf);
}
