//! The services panel: each service of the stack with its instances, each instance's container
//! (state, health, CPU, memory) joined to its registry entry (status, lease age), and the drift
//! between the two: a container that runs but is not registered, a registration whose
//! container is gone. The compact form (overview) is one line per service, troubled first.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};

use super::format;
use super::theme::{self, Theme};
use crate::app::{App, View};
use crate::model::services::{InstanceEntry, ServiceEntry};
use crate::model::sources::Source;
use crate::rows::{self, ServiceRow};

/// CPU and memory of a container, as `1.2%` and `12.3M/64.0M`.
fn usage(app: &App, container: &str) -> (String, String) {
    match app.model.stats.get(container) {
        Some(s) => (
            format!("{:.1}%", s.cpu_percent),
            if s.memory_limit_bytes > 0 {
                format!(
                    "{}/{}",
                    format::bytes(s.memory_bytes),
                    format::bytes(s.memory_limit_bytes)
                )
            } else {
                format::bytes(s.memory_bytes)
            },
        ),
        None => ("-".into(), "-".into()),
    }
}

fn service_row<'a>(app: &App, s: &ServiceEntry) -> Row<'a> {
    let running = s.running();
    let total = s.instances.len();
    let state_style = if running == total && total > 0 {
        Theme::GOOD
    } else if running == 0 {
        Theme::BAD
    } else {
        Theme::WARN
    };
    let registry = if s.registers {
        let up = s.up();
        Cell::from(Span::styled(
            format!("{up} UP"),
            if up >= running && running > 0 {
                Theme::GOOD
            } else {
                Theme::WARN
            },
        ))
    } else {
        Cell::from(Span::styled("-", Theme::DIM))
    };
    let cpu: f64 = s
        .instances
        .iter()
        .filter_map(|i| app.model.stats.get(&i.container))
        .map(|st| st.cpu_percent)
        .sum();
    let mem: u64 = s
        .instances
        .iter()
        .filter_map(|i| app.model.stats.get(&i.container))
        .map(|st| st.memory_bytes)
        .sum();
    let any_stats = s
        .instances
        .iter()
        .any(|i| app.model.stats.contains_key(&i.container));
    let name = if s.drifted() {
        Line::from(vec![
            Span::styled(s.name.clone(), Theme::HEADER),
            Span::styled(" !", Theme::WARN),
        ])
    } else {
        Line::styled(s.name.clone(), Theme::HEADER)
    };
    Row::new(vec![
        Cell::from(name),
        Cell::from(Span::styled(format!("{running}/{total} run"), state_style)),
        Cell::from(""),
        registry,
        Cell::from(""),
        Cell::from(if any_stats {
            format!("{cpu:.1}%")
        } else {
            String::new()
        }),
        Cell::from(if any_stats {
            format::bytes(mem)
        } else {
            String::new()
        }),
        Cell::from(""),
    ])
}

fn instance_row<'a>(app: &App, s: &ServiceEntry, i: &InstanceEntry) -> Row<'a> {
    let (cpu, mem) = usage(app, &i.container);
    let health = i.health.clone().unwrap_or_else(|| "-".into());
    let mut state = i.state.clone();
    if i.oom_killed {
        state.push_str(" OOM");
    }
    let (registry, lease) = match &i.registration {
        Some(r) => (
            Span::styled(r.status.clone(), theme::registry(&r.status)),
            r.renewed
                .map(|t| format::age(app.model.now, t))
                .unwrap_or_else(|| "-".into()),
        ),
        None if s.registers && app.model.services.registry_read => {
            (Span::styled("missing", Theme::WARN), String::new())
        }
        None if s.registers => (Span::styled("?", Theme::DIM), String::new()),
        None => (Span::styled("-", Theme::DIM), String::new()),
    };
    let mut name = vec![Span::raw(format!("  {}", i.label(&s.name)))];
    if i.drift.is_some() {
        name.push(Span::styled(" !", Theme::WARN));
    }
    if let Some(n) = i.restarts.filter(|n| *n > 0) {
        name.push(Span::styled(format!(" ↻{n}"), Theme::WARN));
    }
    Row::new(vec![
        Cell::from(Line::from(name)),
        Cell::from(Span::styled(
            state,
            theme::container(&i.state, i.health.as_deref()),
        )),
        Cell::from(Span::styled(
            health,
            theme::container(&i.state, i.health.as_deref()),
        )),
        Cell::from(registry),
        Cell::from(lease),
        Cell::from(cpu),
        Cell::from(mem),
        Cell::from(i.address.clone().unwrap_or_default()),
    ])
}

/// The Services view.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let filter = app.filter(View::Services);
    let block = super::panel("Services — containers joined to the registry", filter);
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines(app, &[Source::Docker, Source::Registry], inner, buf);
    let rows = rows::services(&app.model, filter);
    if rows.is_empty() {
        let text = if filter.is_empty() {
            "no containers of this stack (is it up? `platform up`)"
        } else {
            "nothing matches the filter (Esc clears it)"
        };
        Paragraph::new(Line::styled(text, Theme::DIM)).render(inner, buf);
        return;
    }
    let drift = app.model.services.drift();
    let selected = app.cursor(View::Services, rows.len());
    let detail = detail(app, rows[selected]);
    let bottom = (drift.len().min(3) + usize::from(detail.is_some())) as u16;
    let [table_area, bottom_area] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(bottom.min(inner.height.saturating_sub(3))),
    ])
    .areas(inner);
    let wide = table_area.width >= 100;
    let table_rows: Vec<Row<'_>> = rows
        .iter()
        .map(|r| match r {
            ServiceRow::Service(s) => service_row(app, s),
            ServiceRow::Instance(s, i) => instance_row(app, s, i),
            ServiceRow::Orphan(_, o) => Row::new(vec![
                Cell::from(Line::from(vec![
                    Span::raw("  "),
                    Span::styled(o.instance_id.clone(), Theme::WARN),
                ])),
                Cell::from(Span::styled("absent", Theme::BAD)),
                Cell::from(""),
                Cell::from(Span::styled(o.status.clone(), theme::registry(&o.status))),
                Cell::from(
                    o.renewed
                        .map(|t| format::age(app.model.now, t))
                        .unwrap_or_default(),
                ),
                Cell::from(""),
                Cell::from(""),
                Cell::from(""),
            ]),
        })
        .collect();
    let mut widths = vec![
        Constraint::Min(20),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(11),
    ];
    let mut header = vec![
        "SERVICE / INSTANCE",
        "STATE",
        "HEALTH",
        "REGISTRY",
        "LEASE",
        "CPU",
        "MEM",
    ];
    if wide {
        widths.push(Constraint::Length(21));
        header.push("ADDRESS");
    }
    let table = Table::new(table_rows, widths)
        .header(Row::new(header).style(Theme::DIM.add_modifier(Modifier::BOLD)))
        .row_highlight_style(Theme::SELECTED);
    let mut state = TableState::new().with_selected(Some(selected));
    StatefulWidget::render(table, table_area, buf, &mut state);

    let mut lines: Vec<Line<'static>> = Vec::new();
    if let Some(d) = detail {
        lines.push(Line::styled(d, Theme::DIM));
    }
    lines.extend(
        drift
            .iter()
            .take(3)
            .map(|d| Line::styled(format!("drift: {d}"), Theme::WARN)),
    );
    Paragraph::new(lines).render(bottom_area, buf);
}

/// A line about the selected row: the container and where it listens.
fn detail(app: &App, row: ServiceRow<'_>) -> Option<String> {
    match row {
        ServiceRow::Instance(_, i) => {
            let mut parts = vec![i.container.clone()];
            if let Some(a) = &i.address {
                parts.push(a.clone());
            }
            if let Some(r) = &i.registration {
                parts.push(format!("registered as {}", r.instance_id));
            }
            Some(parts.join(" · "))
        }
        ServiceRow::Service(s) => s
            .not_scalable
            .as_ref()
            .map(|why| format!("not scalable: {why}"))
            .or_else(|| {
                (s.registers && app.model.services.registry_read).then(|| {
                    format!(
                        "{}: + adds an instance, - removes one, i injects a fault",
                        s.name
                    )
                })
            }),
        ServiceRow::Orphan(_, o) => o.drift.clone(),
    }
}

/// The overview's form: one line per service (troubled ones first), as many as fit.
pub fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let block = super::panel("Services", "");
    let inner = block.inner(area);
    block.render(area, buf);
    let inner = super::reach_lines_compact(app, &[Source::Docker, Source::Registry], inner, buf);
    let mut services: Vec<&ServiceEntry> = app.model.services.services.iter().collect();
    if services.is_empty() {
        if app.model.sources.get(Source::Docker).is_down() {
            return;
        }
        Paragraph::new(Line::styled("no containers of this stack", Theme::DIM)).render(inner, buf);
        return;
    }
    let trouble = |s: &ServiceEntry| {
        let running = s.running();
        running < s.instances.len()
            || running == 0
            || s.drifted()
            || (s.registers && app.model.services.registry_read && s.up() < running)
    };
    services.sort_by_key(|s| (!trouble(s), !s.registers));
    let lines: Vec<Line<'static>> = services
        .iter()
        .map(|s| {
            let running = s.running();
            let total = s.instances.len();
            let style = if trouble(s) {
                Theme::WARN
            } else {
                Style::new()
            };
            let mut spans = vec![Span::styled(
                format!("{:<22}", format::fit(&s.name, 21)),
                style,
            )];
            spans.push(Span::styled(
                format!("{running}/{total}"),
                if running == total && total > 0 {
                    Theme::GOOD
                } else {
                    Theme::BAD
                },
            ));
            if s.registers && app.model.services.registry_read {
                let up = s.up();
                spans.push(Span::styled(
                    format!(" {up} UP"),
                    if up >= running && running > 0 {
                        Theme::GOOD
                    } else {
                        Theme::WARN
                    },
                ));
            }
            if s.drifted() {
                spans.push(Span::styled(" drift", Theme::WARN));
            }
            Line::from(spans)
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}
