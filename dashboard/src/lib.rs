//! The `platform dashboard` TUI: a state model fed by background collectors, drawn by pure
//! functions of that state, with actions leaving as a queue of commands (ARCHITECTURE.md). It
//! knows nothing of Docker, HTTP or Kafka: the CLI reads the running system and sends
//! [`Update`]s, draws with [`ui::draw`], feeds keys to [`App::on_key`] and carries out the
//! [`Request`]s it takes from [`App::take_requests`].
//!
//! - [`model`]: what the collectors read, plus histories and the timeline derived from it.
//! - [`app`]: views, selection, modes (`:` command line, `/` filter, menus, confirmations,
//!   help) and the request queue.
//! - [`command`]: the `:` command line's commands and completion.
//! - [`action`]: the actions and their exact CLI equivalents.
//! - [`rows`]: each view's selectable rows, shared by keys and drawing.
//! - [`ui`]: the panels; [`ui::text::render`] gives a frame as text (`--snapshot`, tests).

#![forbid(unsafe_code)]

#[cfg(test)]
mod fixtures;

pub mod action;
pub mod app;
pub mod command;
pub mod model;
pub mod rows;
pub mod ui;

pub use action::{Action, Request};
pub use app::{App, Catalog, KindInfo, Mode, ScenarioInfo, View};
pub use model::{Model, Update};
