//! The Kafka panel: consumer groups with members, total lag and its sparkline, lag per
//! partition with the committed offset, high watermark and owner, and the topics. Lag is read
//! from the broker, so a consumer that is down or holds no partition still shows its backlog.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Sparkline, Table, Widget};

use super::format;
use super::theme::Theme;
use crate::app::App;
use crate::model::kafka::{GroupView, KafkaSnapshot};
use crate::model::sources::Source;

fn lag_style(lag: i64) -> ratatui::style::Style {
    match lag {
        0 => Theme::GOOD,
        1..100 => Theme::WARN,
        _ => Theme::BAD,
    }
}

fn group_history(app: &App, group: &str) -> Vec<Option<u64>> {
    app.model
        .kafka
        .lag_history
        .get(group)
        .map(|h| h.last(usize::MAX).collect())
        .unwrap_or_default()
}

/// The largest lag kept for `group` (the sparkline's scale).
fn lag_max(app: &App, group: &str) -> u64 {
    app.model
        .kafka
        .lag_history
        .get(group)
        .and_then(|h| h.max())
        .unwrap_or(1)
}

fn group_state(g: &GroupView) -> Span<'static> {
    let style = match g.state.as_str() {
        "Stable" => Theme::GOOD,
        "Empty" | "Dead" => Theme::BAD,
        _ => Theme::WARN,
    };
    Span::styled(g.state.clone(), style)
}

/// `order-placed (3 partitions, 1200 messages)`, ...
fn topics_line(s: &KafkaSnapshot) -> Line<'static> {
    let text = s
        .topics
        .iter()
        .map(|t| {
            let messages: i64 = t
                .partitions
                .iter()
                .map(|p| (p.high_watermark - p.low_watermark).max(0))
                .sum();
            format!("{} ({}p, {messages} msgs)", t.name, t.partitions.len())
        })
        .collect::<Vec<_>>()
        .join(", ");
    Line::from(vec![
        Span::styled("topics: ", Theme::DIM),
        Span::raw(if text.is_empty() {
            "none".to_string()
        } else {
            text
        }),
    ])
}

/// The Kafka view.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let block = super::panel("Kafka — lag read from the broker", "");
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines(app, &[Source::Broker], inner, buf);
    let Some(s) = &app.model.kafka.snapshot else {
        if !app.model.sources.get(Source::Broker).is_down() {
            Paragraph::new(Line::styled("no broker read yet", Theme::DIM)).render(inner, buf);
        }
        return;
    };
    let groups_height = (s.groups.len() as u16 + 1).clamp(2, 6);
    let spark_height = if inner.height >= 16 { 4 } else { 2 };
    let [broker, groups, spark, partitions, topics] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(groups_height),
        Constraint::Length(spark_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(inner);
    Paragraph::new(Line::from(vec![
        Span::styled("broker ", Theme::DIM),
        Span::raw(s.broker.clone()),
        Span::styled(
            format!(
                " · {} groups · total lag {}",
                s.groups.len(),
                s.groups.iter().map(|g| g.total_lag).sum::<i64>()
            ),
            Theme::DIM,
        ),
    ]))
    .render(broker, buf);

    let spark_width = groups.width.saturating_sub(22 + 9 + 8 + 7 + 11 + 5).max(4) as usize;
    let rows: Vec<Row<'_>> = s
        .groups
        .iter()
        .map(|g| {
            Row::new(vec![
                Cell::from(g.group.clone()),
                Cell::from(group_state(g)),
                Cell::from(g.members.to_string()),
                Cell::from(Span::styled(
                    g.total_lag.to_string(),
                    lag_style(g.total_lag),
                )),
                Cell::from(Span::styled(
                    g.unassigned.to_string(),
                    if g.unassigned > 0 {
                        Theme::BAD
                    } else {
                        Theme::GOOD
                    },
                )),
                Cell::from(Span::styled(
                    format::spark(
                        &group_history(app, &g.group),
                        spark_width,
                        lag_max(app, &g.group),
                    ),
                    lag_style(g.total_lag),
                )),
            ])
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Min(22),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(11),
            Constraint::Length(spark_width as u16),
        ],
    )
    .header(
        Row::new([
            "GROUP",
            "STATE",
            "MEMBERS",
            "LAG",
            "UNASSIGNED",
            "LAG HISTORY",
        ])
        .style(Theme::DIM.add_modifier(Modifier::BOLD)),
    )
    .render(groups, buf);

    // The big sparkline follows the group with the most lag.
    if let Some(g) = s.groups.iter().max_by_key(|g| g.total_lag) {
        let h = group_history(app, &g.group);
        let [label, chart] =
            Layout::horizontal([Constraint::Length(22), Constraint::Min(0)]).areas(spark);
        Paragraph::new(vec![
            Line::styled(format::fit(&g.group, 21), Theme::DIM),
            Line::styled(
                format!("lag {}", h.iter().flatten().max().copied().unwrap_or(0)),
                Theme::DIM,
            ),
        ])
        .render(label, buf);
        let skip = h.len().saturating_sub(chart.width as usize);
        Sparkline::default()
            .data(h[skip..].iter().copied())
            .style(lag_style(g.total_lag))
            .absent_value_symbol("·")
            .absent_value_style(Theme::DIM)
            .render(chart, buf);
    }

    // The group column only when there is room; narrow, a label row per group when several.
    let with_group = partitions.width >= 100;
    let several = s.groups.len() > 1;
    let mut rows: Vec<Row<'_>> = Vec::new();
    for g in &s.groups {
        if several && !with_group {
            rows.push(Row::new(vec![Cell::from(Span::styled(
                format!("group {}", g.group),
                Theme::HEADER,
            ))]));
        }
        for p in &g.partitions {
            let mut cells = Vec::new();
            if with_group {
                cells.push(Cell::from(g.group.clone()));
            }
            cells.extend([
                Cell::from(p.topic.clone()),
                Cell::from(p.partition.to_string()),
                Cell::from(
                    p.committed
                        .map_or_else(|| "-".to_string(), |c| c.to_string()),
                ),
                Cell::from(p.high_watermark.to_string()),
                Cell::from(Span::styled(p.lag.to_string(), lag_style(p.lag))),
                Cell::from(match &p.owner {
                    Some(o) => Span::raw(o.clone()),
                    None => Span::styled("unassigned", Theme::BAD),
                }),
            ]);
            rows.push(Row::new(cells));
        }
    }
    let mut widths = Vec::new();
    let mut header = Vec::new();
    if with_group {
        widths.push(Constraint::Length(24));
        header.push("GROUP");
    }
    widths.extend([
        Constraint::Length(18),
        Constraint::Length(3),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Min(10),
    ]);
    header.extend(["TOPIC", "P", "COMMITTED", "HIGH", "LAG", "OWNER"]);
    Table::new(rows, widths)
        .header(Row::new(header).style(Theme::DIM.add_modifier(Modifier::BOLD)))
        .render(partitions, buf);
    Paragraph::new(topics_line(s)).render(topics, buf);
}

/// The overview's form: each group's lag with its sparkline, then the topics.
pub fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let block = super::panel("Kafka lag", "");
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines_compact(app, &[Source::Broker], inner, buf);
    let Some(s) = &app.model.kafka.snapshot else {
        return;
    };
    let width = inner.width as usize;
    let mut lines: Vec<Line<'static>> = s
        .groups
        .iter()
        .map(|g| {
            let name = format::fit(&g.group, 20);
            let lag = format!(" lag {:<6}", g.total_lag);
            let spark_width = width.saturating_sub(name.chars().count() + lag.len() + 1);
            let max = lag_max(app, &g.group);
            let mut spans = vec![
                Span::raw(name),
                Span::styled(lag, lag_style(g.total_lag)),
                Span::styled(
                    format::spark(&group_history(app, &g.group), spark_width, max),
                    lag_style(g.total_lag),
                ),
            ];
            if g.unassigned > 0 {
                spans.push(Span::styled(
                    format!(" {} unassigned", g.unassigned),
                    Theme::BAD,
                ));
            }
            Line::from(spans)
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("no consumer groups", Theme::DIM));
    }
    lines.push(topics_line(s));
    Paragraph::new(lines).render(inner, buf);
}
