//! The breakers panel: every circuit breaker of every order-service instance, its state in
//! colour, failure and slow-call rates, calls in the window, when it last changed state, and a
//! sparkline of its failure rate; below, the selected breaker's history of transitions.

use chrono::{DateTime, Utc};
use circuit_breaker::Snapshot;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Cell, Paragraph, Row, Sparkline, StatefulWidget, Table, TableState, Widget,
};

use super::format;
use super::theme::{self, Theme};
use crate::app::{App, View};
use crate::model::breakers::{failure_rate, slow_call_rate};
use crate::model::sources::Source;
use crate::rows::{self, BreakerRow};

/// When the breaker entered its state.
fn since(s: &Snapshot) -> Option<DateTime<Utc>> {
    s.transitions
        .last()
        .and_then(|t| DateTime::from_timestamp_millis(t.at_ms as i64))
        .or_else(|| {
            DateTime::parse_from_rfc3339(&s.state_since)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

fn percent(p: Option<u64>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{p}%"))
}

fn history(app: &App, instance: &str, breaker: &str) -> Vec<Option<u64>> {
    app.model
        .breakers
        .by_instance
        .get(instance)
        .and_then(|s| s.history.get(breaker))
        .map(|h| h.last(usize::MAX).collect())
        .unwrap_or_default()
}

/// The Breakers view.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let filter = app.filter(View::Breakers);
    let block = super::panel("Breakers — order-service's circuit breakers", filter);
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines(app, &[Source::Breakers], inner, buf);
    let rows = rows::breakers(&app.model, filter);
    if rows.is_empty() {
        let text = if app.model.breakers.is_empty() {
            "no order-service instance answered yet"
        } else {
            "nothing matches the filter (Esc clears it)"
        };
        Paragraph::new(Line::styled(text, Theme::DIM)).render(inner, buf);
        return;
    }
    let selected = app.cursor(View::Breakers, rows.len());
    let table_height = (rows.len() as u16 + 1).min(inner.height.saturating_sub(4).max(2));
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(inner);
    let wide = table_area.width >= 100;
    let spark_width = if wide { 30 } else { 8 };
    let table_rows: Vec<Row<'_>> = rows
        .iter()
        .map(|r| match r.breaker {
            None => Row::new(vec![
                Cell::from(r.instance.to_string()),
                Cell::from(Span::styled(
                    format!("not read: {}", r.error.unwrap_or("no answer")),
                    Theme::BAD,
                )),
            ]),
            Some(b) => {
                let mut cells = vec![
                    Cell::from(r.instance.to_string()),
                    Cell::from(b.name.clone()),
                    Cell::from(Span::styled(b.state.as_str(), theme::breaker(b.state))),
                    Cell::from(percent(failure_rate(b))),
                ];
                if wide {
                    cells.push(Cell::from(percent(slow_call_rate(b))));
                }
                let m = &b.metrics;
                cells.push(Cell::from(format!(
                    "{}/{}",
                    m.number_of_failed_calls, m.number_of_buffered_calls
                )));
                if wide {
                    cells.push(Cell::from(m.number_of_not_permitted_calls.to_string()));
                }
                cells.push(Cell::from(
                    since(b)
                        .map(|t| format::age(app.model.now, t))
                        .unwrap_or_default(),
                ));
                let h = history(app, r.instance, &b.name);
                cells.push(Cell::from(Span::styled(
                    format::spark(&h, spark_width, 100),
                    if r.error.is_some() {
                        Theme::DIM
                    } else {
                        theme::breaker(b.state)
                    },
                )));
                Row::new(cells)
            }
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(16),
        Constraint::Min(12),
        Constraint::Length(9),
        Constraint::Length(5),
    ];
    let mut header = vec!["INSTANCE", "BREAKER", "STATE", "FAIL"];
    if wide {
        widths.push(Constraint::Length(5));
        header.push("SLOW");
    }
    widths.push(Constraint::Length(6));
    header.push("FAILED");
    if wide {
        widths.push(Constraint::Length(8));
        header.push("REFUSED");
    }
    widths.extend([
        Constraint::Length(6),
        Constraint::Length(spark_width as u16),
    ]);
    header.extend(["SINCE", "FAIL %"]);
    let table = Table::new(table_rows, widths)
        .header(Row::new(header).style(Theme::DIM.add_modifier(Modifier::BOLD)))
        .row_highlight_style(Theme::SELECTED);
    let mut state = TableState::new().with_selected(Some(selected));
    StatefulWidget::render(table, table_area, buf, &mut state);
    if let Some(r) = rows.get(selected) {
        detail(app, r, detail_area, buf);
    }
}

/// The selected breaker: its failure rate over time and its latest transitions.
fn detail(app: &App, row: &BreakerRow<'_>, area: Rect, buf: &mut Buffer) {
    let Some(b) = row.breaker else { return };
    if area.height < 2 {
        return;
    }
    let spark_height = if area.height >= 8 { 3 } else { 1 };
    let [title, spark, list] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(spark_height),
        Constraint::Min(0),
    ])
    .areas(area);
    let c = &b.config;
    Paragraph::new(Line::from(vec![
        Span::styled(format!("{} → {} ", row.instance, b.name), Theme::TITLE),
        Span::styled(
            format!(
                "opens at {:.0}% of ≥{} calls, open {}",
                c.failure_rate_threshold,
                c.minimum_number_of_calls,
                format::duration(
                    chrono::Duration::from_std(c.wait_duration_in_open_state).unwrap_or_default()
                )
            ),
            Theme::DIM,
        ),
    ]))
    .render(title, buf);
    let h = history(app, row.instance, &b.name);
    let skip = h.len().saturating_sub(spark.width as usize);
    Sparkline::default()
        .data(h[skip..].iter().copied())
        .max(100)
        .style(theme::breaker(b.state))
        .absent_value_symbol("·")
        .absent_value_style(Theme::DIM)
        .render(spark, buf);
    let lines: Vec<Line<'static>> = b
        .transitions
        .iter()
        .rev()
        .map(|t| {
            let at = DateTime::from_timestamp_millis(t.at_ms as i64)
                .map(|at| format::clock(at, app.clock))
                .unwrap_or_else(|| t.at.clone());
            Line::from(vec![
                Span::styled(at, Theme::DIM),
                Span::raw(" "),
                Span::styled(t.from.as_str(), theme::breaker(t.from)),
                Span::raw(" → "),
                Span::styled(t.to.as_str(), theme::breaker(t.to)),
                Span::styled(format!("  {}", t.reason), Theme::DIM),
            ])
        })
        .collect();
    if lines.is_empty() {
        Paragraph::new(Line::styled("no transitions yet", Theme::DIM)).render(list, buf);
    } else {
        Paragraph::new(lines).render(list, buf);
    }
}

/// The overview's form: one line per breaker.
pub fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let title = match app
        .model
        .breakers
        .by_instance
        .values()
        .find_map(|s| s.breakers.first())
    {
        Some(b) => format!("Breakers → {}", b.name),
        None => "Breakers".to_string(),
    };
    let block = super::panel(title, "");
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines_compact(app, &[Source::Breakers], inner, buf);
    let rows = rows::breakers(&app.model, "");
    if rows.is_empty() {
        if !app.model.sources.get(Source::Breakers).is_down() {
            Paragraph::new(Line::styled("no order-service instance yet", Theme::DIM))
                .render(inner, buf);
        }
        return;
    }
    let width = inner.width as usize;
    // With one breaker per instance the panel's title says which; more need their names.
    let multi = app
        .model
        .breakers
        .by_instance
        .values()
        .any(|s| s.breakers.len() > 1);
    let lines: Vec<Line<'static>> = rows
        .iter()
        .map(|r| match r.breaker {
            None => Line::styled(
                format!("{} not read: {}", r.instance, r.error.unwrap_or("?")),
                Theme::BAD,
            ),
            Some(b) => {
                // instance, breaker, state, rate, then the sparkline in what is left.
                let spark_width = (width / 5).clamp(4, 30);
                let label_width = width.saturating_sub(spark_width + 9 + 5 + 1);
                let label = if multi {
                    format!("{} {}", r.instance, b.name)
                } else {
                    r.instance.to_string()
                };
                let label = format::fit(&label, label_width);
                let h = history(app, r.instance, &b.name);
                Line::from(vec![
                    Span::raw(format!("{label:<label_width$} ")),
                    Span::styled(format!("{:<9}", b.state.as_str()), theme::breaker(b.state)),
                    Span::raw(format!("{:>4} ", percent(failure_rate(b)))),
                    Span::styled(format::spark(&h, spark_width, 100), theme::breaker(b.state)),
                ])
            }
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}
