//! The logs panel: the followed output of a service (all its instances, merged in time order)
//! or of one instance, each line with its time, instance, level and trace id; filtered by
//! words, minimum level and trace id. ⏎ on a line with a trace id opens that trace.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::format;
use super::theme::{self, Theme};
use crate::app::{App, View};
use crate::model::sources::Source;
use crate::rows;

/// The Logs view.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let filter = app.filter(View::Logs);
    let logs = &app.model.logs;
    let title = match &logs.target {
        Some(t) => format!(
            "Logs — {}{}",
            t.label(),
            if app.follow_logs {
                " (following)"
            } else {
                " (paused: G follows)"
            }
        ),
        None => "Logs — :logs SERVICE chooses whose".to_string(),
    };
    let block = super::panel(title, filter);
    let inner = block.inner(area);
    block.render(area, buf);
    let mut inner = super::reach_lines(app, &[Source::Docker], inner, buf);
    if let Some(e) = &logs.error {
        buf.set_stringn(
            inner.x,
            inner.y,
            format!("following stopped: {e}"),
            inner.width as usize,
            Theme::WARN,
        );
        inner.y += 1;
        inner.height = inner.height.saturating_sub(1);
    }
    let lines = rows::logs(&app.model, filter);
    if lines.is_empty() {
        let text = if logs.is_empty() {
            "no output yet"
        } else {
            "no line matches the filter (Esc clears it)"
        };
        Paragraph::new(Line::styled(text, Theme::DIM)).render(inner, buf);
        return;
    }
    let selected = app.log_cursor(lines.len());
    let height = inner.height as usize;
    let skip = (selected + 1).saturating_sub(height);
    let width = inner.width as usize;
    let one_instance = logs.target.as_ref().is_some_and(|t| t.instance.is_some());
    let rendered: Vec<Line<'static>> = lines
        .iter()
        .enumerate()
        .skip(skip)
        .take(height)
        .map(|(i, l)| {
            let base = if i == selected && !app.follow_logs {
                Theme::SELECTED
            } else {
                Style::new()
            };
            let mut spans = vec![Span::styled(format::clock(l.at, app.clock), Theme::DIM)];
            if !one_instance {
                spans.push(Span::styled(format!(" {}", l.instance), Theme::DIM));
            }
            spans.push(Span::styled(
                format!(" {:<5}", l.level.map_or("", |v| v.as_str())),
                theme::level(l.level),
            ));
            let used: usize = spans.iter().map(Span::width).sum();
            let trace = l
                .trace_id
                .as_ref()
                .map(|t| format!(" ⌁{}", t.chars().take(8).collect::<String>()));
            let room =
                width.saturating_sub(used + 1 + trace.as_ref().map_or(0, |t| t.chars().count()));
            spans.push(Span::styled(
                format!(" {}", format::fit(&l.text, room)),
                base,
            ));
            if let Some(t) = trace {
                spans.push(Span::styled(t, Theme::LINK));
            }
            Line::from(spans)
        })
        .collect();
    Paragraph::new(rendered).render(inner, buf);
}
