//! The overview: every panel at once in its compact form, so cause and effect are on one
//! screen — a fault injected, a breaker opening, lag rising, traces turning red, recovery.
//!
//! ```text
//! ┌ Services ──────────┐┌ Breakers ──────────┐
//! │                    │└────────────────────┘
//! │                    │┌ Kafka lag ─────────┐
//! └────────────────────┘└────────────────────┘
//! ┌ Traces ────────────┐┌ Faults and events ─┐
//! └────────────────────┘└────────────────────┘
//! ```

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};

use crate::app::App;

/// The Overview view.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [services, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let [breakers, kafka] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(right);
    let [traces, events] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    super::services::compact(app, services, buf);
    super::breakers::compact(app, breakers, buf);
    super::kafka::compact(app, kafka, buf);
    super::traces::compact(app, traces, buf);
    super::events::compact(app, events, buf);
}
