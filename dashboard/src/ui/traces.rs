//! The traces panel: recent traces, newest first (time, trace id as a hyperlink to the Zipkin
//! UI, root operation, duration, spans, error flag); Enter opens the selected one as a
//! waterfall drawn in the terminal: each span under its parent, a bar placed and sized by its
//! start and duration within the trace, red when it failed.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::format;
use super::link;
use super::theme::Theme;
use crate::app::{App, View};
use crate::model::sources::Source;
use crate::model::traces::{OpenTrace, TraceView, waterfall};
use crate::rows;

/// Columns of the list: time, trace id, duration, spans, error; the root takes the rest.
const TIME: u16 = 8;
const ID: u16 = 16;
const DURATION: u16 = 9;
const SPANS: u16 = 6;
const ERROR: u16 = 5;

/// The Traces view: the list, or the open trace's waterfall.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    if let Some(open) = &app.model.traces.open {
        return render_open(app, open, area, buf);
    }
    let filter = app.filter(View::Traces);
    let block = super::panel("Traces — newest first, ⏎ opens the waterfall", filter);
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines(app, &[Source::Traces], inner, buf);
    let list = rows::traces(&app.model, filter);
    if list.is_empty() {
        let text = if filter.is_empty() {
            "no traces yet (send traffic through the gateway, or :load)"
        } else {
            "nothing matches the filter (Esc clears it)"
        };
        if !app.model.sources.get(Source::Traces).is_down() || !filter.is_empty() {
            Paragraph::new(Line::styled(text, Theme::DIM)).render(inner, buf);
        }
        return;
    }
    let selected = app.cursor(View::Traces, list.len());
    let [table, link_line] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    list_rows(app, &list, Some(selected), table, buf);
    let id = &list[selected].id;
    let mut x = link_line.x;
    match app.model.traces.link(id) {
        Some(url) => {
            x = buf
                .set_stringn(x, link_line.y, "open in Zipkin: ", 16, Theme::DIM)
                .0;
            link::write(
                buf,
                x,
                link_line.y,
                link_line.right().saturating_sub(x),
                &url,
                &url,
                Theme::LINK,
                app.hyperlinks,
            );
        }
        None => {
            buf.set_stringn(
                x,
                link_line.y,
                "no link: the stack does not publish the trace collector's UI on this host",
                link_line.width as usize,
                Theme::DIM,
            );
        }
    }
}

/// Rows of the list, scrolled so `selected` is visible.
fn list_rows(
    app: &App,
    list: &[&TraceView],
    selected: Option<usize>,
    area: Rect,
    buf: &mut Buffer,
) {
    if area.height == 0 {
        return;
    }
    let header = Line::styled(
        format!(
            "{:<t$} {:<i$} {:<d$} {:<s$} {:<e$} ROOT",
            "TIME",
            "TRACE",
            "DURATION",
            "SPANS",
            "ERROR",
            t = TIME as usize,
            i = ID as usize,
            d = DURATION as usize,
            s = SPANS as usize,
            e = ERROR as usize
        ),
        Theme::DIM.add_modifier(Modifier::BOLD),
    );
    buf.set_line(area.x, area.y, &header, area.width);
    let height = area.height.saturating_sub(1) as usize;
    let skip = selected.map_or(0, |s| (s + 1).saturating_sub(height));
    for (row, (i, t)) in list.iter().enumerate().skip(skip).take(height).enumerate() {
        let y = area.y + 1 + row as u16;
        let is_selected = selected == Some(i);
        let base = if is_selected {
            Theme::SELECTED
        } else {
            Style::new()
        };
        buf.set_style(Rect::new(area.x, y, area.width, 1), base);
        let start = chrono::DateTime::from_timestamp_micros(t.start_us() as i64)
            .map(|at| format::clock(at, app.clock))
            .unwrap_or_default();
        let mut x = buf
            .set_stringn(area.x, y, format!("{start:<8} "), 9, base)
            .0;
        let short: String = t.id.chars().take(ID as usize).collect();
        let url = app.model.traces.link(&t.id);
        let id_style = if url.is_some() && !is_selected {
            Theme::LINK
        } else {
            base
        };
        link::write(
            buf,
            x,
            y,
            ID.min(area.right().saturating_sub(x)),
            &short,
            url.as_deref().unwrap_or(""),
            id_style,
            app.hyperlinks && url.is_some(),
        );
        x += ID + 1;
        let error = if t.error() {
            Span::styled(format!("{:<5}", "ERROR"), Theme::BAD)
        } else {
            Span::styled(format!("{:<5}", "-"), base)
        };
        let rest = Line::from(vec![
            Span::styled(
                format!(
                    "{:<d$} {:<s$} ",
                    format::micros(t.duration_us()),
                    t.spans.len(),
                    d = DURATION as usize,
                    s = SPANS as usize
                ),
                base,
            ),
            error,
            Span::styled(format!(" {}", t.root_operation()), base),
        ]);
        if x < area.right() {
            buf.set_line(x, y, &rest, area.right() - x);
        }
    }
}

/// A colour per service, stable across frames.
fn service_color(service: &str) -> Color {
    const PALETTE: [Color; 6] = [
        Color::Cyan,
        Color::Magenta,
        Color::Blue,
        Color::Green,
        Color::Yellow,
        Color::LightCyan,
    ];
    let hash = service
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[hash as usize % PALETTE.len()]
}

fn render_open(app: &App, open: &OpenTrace, area: Rect, buf: &mut Buffer) {
    let block = super::panel(format!("Trace {} — Esc goes back", open.id()), "");
    let inner = block.inner(area);
    block.render(area, buf);
    let trace = match open {
        OpenTrace::Loading { id } => {
            Paragraph::new(Line::styled(
                format!("asking the collector for {id}…"),
                Theme::DIM,
            ))
            .render(inner, buf);
            return;
        }
        OpenTrace::Failed { id, error } => {
            Paragraph::new(Line::styled(format!("trace {id}: {error}"), Theme::BAD))
                .render(inner, buf);
            return;
        }
        OpenTrace::Loaded(t) => t,
    };
    let link = app.model.traces.link(&trace.id);
    waterfall_into(trace, link.as_deref(), app.hyperlinks, inner, buf);
}

/// `trace` as a waterfall in text, `width` columns wide and as tall as its spans (what
/// `platform trace` prints).
pub fn waterfall_text(trace: &TraceView, link: Option<&str>, width: u16) -> String {
    let height = u16::try_from(trace.spans.len() + 2).unwrap_or(u16::MAX);
    let area = Rect::new(0, 0, width.max(20), height);
    let mut buf = Buffer::empty(area);
    waterfall_into(trace, link, false, area, &mut buf);
    super::text::buffer_text(&buf)
}

/// Draws `trace` as a waterfall into `area`: a summary line, the link (an OSC 8 hyperlink
/// when `hyperlinks`), then one row per span.
pub fn waterfall_into(
    trace: &TraceView,
    link: Option<&str>,
    hyperlinks: bool,
    area: Rect,
    buf: &mut Buffer,
) {
    if area.height < 2 {
        return;
    }
    let [summary, link_line, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    let total = trace.duration_us().max(1);
    let mut spans = vec![
        Span::styled(trace.root_operation(), Theme::TITLE),
        Span::raw(format!(
            "  {}  {} spans  {} services",
            format::micros(total),
            trace.spans.len(),
            trace.services()
        )),
    ];
    if trace.error() {
        spans.push(Span::styled("  ERROR", Theme::BAD));
    }
    Paragraph::new(Line::from(spans)).render(summary, buf);
    if let Some(url) = link {
        link::write(
            buf,
            link_line.x,
            link_line.y,
            link_line.width,
            url,
            url,
            Theme::LINK,
            hyperlinks,
        );
    } else {
        buf.set_stringn(
            link_line.x,
            link_line.y,
            format!("trace id {}", trace.id),
            link_line.width as usize,
            Theme::DIM,
        );
    }
    let rows = waterfall(trace);
    let label_width = (body.width * 2 / 5).clamp(12, 48);
    let bar_width = body.width.saturating_sub(label_width + 1);
    let height = body.height as usize;
    let shown = if rows.len() > height {
        height.saturating_sub(1)
    } else {
        rows.len()
    };
    for (n, row) in rows.iter().take(shown).enumerate() {
        let y = body.y + n as u16;
        let s = row.span;
        let indent = "  ".repeat(row.depth.min(8));
        let label = format::fit(
            &format!("{indent}{}: {}", s.service, s.name),
            label_width as usize,
        );
        let label_style = if s.error {
            Theme::BAD
        } else {
            Style::new().fg(service_color(&s.service))
        };
        buf.set_stringn(body.x, y, &label, label_width as usize, label_style);
        if bar_width == 0 {
            continue;
        }
        let w = u64::from(bar_width);
        let start = (row.offset_us * w / total).min(w.saturating_sub(1));
        let len = (s.duration_us * w).div_ceil(total).clamp(1, w - start);
        let x0 = body.x + label_width + 1;
        let bar_style = if s.error {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(service_color(&s.service))
        };
        buf.set_stringn(
            x0 + start as u16,
            y,
            "█".repeat(len as usize),
            len as usize,
            bar_style,
        );
        // The duration after the bar when it fits, else before it.
        let text = format::micros(s.duration_us);
        let after = x0 + (start + len) as u16 + 1;
        let end = x0 + bar_width;
        if after + text.len() as u16 <= end {
            buf.set_stringn(after, y, &text, text.len(), Theme::DIM);
        } else if start as usize > text.len() {
            let before = x0 + start as u16 - text.len() as u16 - 1;
            buf.set_stringn(before, y, &text, text.len(), Theme::DIM);
        }
    }
    if shown < rows.len() {
        buf.set_stringn(
            body.x,
            body.y + shown as u16,
            format!(
                "… {} more spans (a taller terminal shows them)",
                rows.len() - shown
            ),
            body.width as usize,
            Theme::DIM,
        );
    }
}

/// The overview's form: the newest traces, errors in red.
pub fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let block = super::panel("Traces", "");
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines_compact(app, &[Source::Traces], inner, buf);
    let list: Vec<&TraceView> = app.model.traces.list.iter().collect();
    if list.is_empty() {
        if !app.model.sources.get(Source::Traces).is_down() {
            Paragraph::new(Line::styled("no traces yet", Theme::DIM)).render(inner, buf);
        }
        return;
    }
    let width = inner.width as usize;
    for (n, t) in list.iter().take(inner.height as usize).enumerate() {
        let y = inner.y + n as u16;
        let short: String = t.id.chars().take(8).collect();
        let url = app.model.traces.link(&t.id);
        let x = link::write(
            buf,
            inner.x,
            y,
            8.min(inner.width),
            &short,
            url.as_deref().unwrap_or(""),
            if url.is_some() {
                Theme::LINK
            } else {
                Style::new()
            },
            app.hyperlinks && url.is_some(),
        );
        let style = if t.error() { Theme::BAD } else { Style::new() };
        let text = format!(
            " {:>8} {}{}",
            format::micros(t.duration_us()),
            if t.error() { "ERR " } else { "" },
            t.root_operation()
        );
        buf.set_stringn(
            x,
            y,
            format::fit(&text, width.saturating_sub(8)),
            width,
            style,
        );
    }
}
