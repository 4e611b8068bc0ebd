//! Snapshot tests of every panel, drawn into ratatui's `TestBackend` through a real
//! `Terminal` (as the live dashboard draws) and compared as text with insta. Times are fixed by
//! the fixture, so nothing volatile needs masking.

use circuit_breaker::State;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::*;
use crate::Update;
use crate::fixtures::{self, t};
use crate::model::faults::tests::fault;
use crate::model::services::Registration;
use crate::model::timeline::{Event, EventKind, Severity};

/// Draws `app` at `width`×`height` through a terminal and returns the screen as text.
fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|f| draw(f, app)).expect("draw");
    text::buffer_text(terminal.backend().buffer())
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
}

/// The stack a minute into an inventory outage: breakers open, lag rising, a fault active,
/// the timeline telling the story.
fn outage() -> App {
    let mut app = fixtures::app();
    app.apply(Update::Faults(vec![fault(
        "f-7c2e",
        "stop",
        "inventory-service-1",
        -40,
        120,
    )]));
    let open_at = (fixtures::T0 as u64 - 30) * 1000;
    app.apply(fixtures::breakers(
        State::Open,
        80.0,
        &[(open_at, State::Closed, State::Open)],
    ));
    app.apply(fixtures::kafka(57));
    app.apply(Update::Event(Event {
        at: t(-40),
        kind: EventKind::Container,
        severity: Severity::Bad,
        text: "inventory-service-1 stopped (exit 143)".into(),
    }));
    app
}

/// The overview at 80×24: every panel's essentials fit.
#[test]
fn overview_80x24() {
    insta::assert_snapshot!(screen(&fixtures::app(), 80, 24));
}

/// The overview of an outage at 120×36: open breakers, lag, the fault and the timeline on one
/// screen.
#[test]
fn overview_outage_120x36() {
    insta::assert_snapshot!(screen(&outage(), 120, 36));
}

/// The services panel: instances joined to the registry with lease ages, CPU and memory.
#[test]
fn services_panel() {
    let mut app = fixtures::app();
    app.show(View::Services);
    press(&mut app, "jjjjjjjj");
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// Drift: a running instance the registry does not list, and a registration whose container
/// is gone; wide enough for the address column.
#[test]
fn services_drift() {
    let mut app = fixtures::app();
    let mut s = fixtures::services();
    let order = s
        .services
        .iter_mut()
        .find(|s| s.name == "order-service")
        .unwrap();
    order.instances[1].registration = None;
    order.instances[1].drift = Some("order-service-2: running but not registered".into());
    order.orphans.push(Registration {
        instance_id: "platform-dev-order-service-3:order-service:8082".into(),
        status: "UP".into(),
        renewed: Some(t(-14)),
        drift: Some(
            "platform-dev-order-service-3:order-service:8082: registered but no container".into(),
        ),
    });
    app.apply(Update::Services(s));
    app.show(View::Services);
    insta::assert_snapshot!(screen(&app, 120, 30));
}

/// The breakers panel with both breakers open, the sparkline and the transition list.
#[test]
fn breakers_panel() {
    let mut app = outage();
    app.show(View::Breakers);
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// Breaker states are coloured: OPEN red, CLOSED green.
#[test]
fn breaker_colours() {
    let mut app = outage();
    app.show(View::Breakers);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| draw(f, &app)).unwrap();
    let buf = terminal.backend().buffer();
    let text = text::buffer_text(buf);
    let (y, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("order-service-2") && l.contains("OPEN"))
        .expect("an OPEN row");
    let x = line.find("OPEN").unwrap();
    let x = line[..x].chars().count() as u16;
    assert_eq!(buf[(x, y as u16)].fg, Color::Red);

    app.apply(fixtures::breakers(State::Closed, 0.0, &[]));
    terminal.draw(|f| draw(f, &app)).unwrap();
    let text = text::buffer_text(terminal.backend().buffer());
    let (y, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("order-service-2") && l.contains("CLOSED"))
        .expect("a CLOSED row");
    let x = line[..line.find("CLOSED").unwrap()].chars().count() as u16;
    assert_eq!(terminal.backend().buffer()[(x, y as u16)].fg, Color::Green);
}

/// The Kafka panel: groups, the lag sparkline, lag per partition, topics.
#[test]
fn kafka_panel() {
    let mut app = outage();
    app.show(View::Kafka);
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// The traces list, newest first, with the failed one flagged and the selected one's link.
#[test]
fn traces_panel() {
    let mut app = fixtures::app();
    app.show(View::Traces);
    press(&mut app, "j");
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// The waterfall of a failed trace at 100×24.
#[test]
fn waterfall() {
    let mut app = fixtures::app();
    app.show(View::Traces);
    press(&mut app, "j");
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!(screen(&app, 100, 24));
}

/// With hyperlinks on, the trace link is an OSC 8 sequence in the buffer, and the text is
/// unchanged.
#[test]
fn trace_links_are_hyperlinks() {
    let mut app = fixtures::app();
    app.show(View::Traces);
    let plain = screen(&app, 80, 24);
    app.hyperlinks = true;
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| draw(f, &app)).unwrap();
    let buf = terminal.backend().buffer();
    let link = "\x1b]8;;http://127.0.0.1:9411/zipkin/traces/00f067aa0ba902b7\x1b\\";
    assert!(
        buf.content().iter().any(|c| c.symbol().starts_with(link)),
        "no OSC 8 link in the buffer"
    );
    assert_eq!(text::buffer_text(buf), plain);
}

/// The events panel: the active fault with its time left, then the timeline.
#[test]
fn events_panel() {
    let mut app = outage();
    app.model.load = Some("20/s · 812 sent · 143 failed (503 fallback)".into());
    app.show(View::Events);
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// The logs panel filtered to warnings of one trace.
#[test]
fn logs_panel() {
    let mut app = fixtures::app();
    app.show(View::Logs);
    insta::assert_snapshot!("logs_all", screen(&app, 80, 24));
    press(&mut app, "/level:info trace:a3ce");
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!("logs_filtered", screen(&app, 80, 24));
}

/// Every backend unreachable, as `platform dashboard --snapshot` shows it without a stack:
/// each panel says what it could not reach and since when.
#[test]
fn unreachable_backends() {
    let mut app = App::new(crate::Model::new("dev", t(-35)), fixtures::catalog(), None);
    let errors = [
        (
            Source::Docker,
            "stack `dev` is not running (no running containers)",
            None,
        ),
        (
            Source::Registry,
            "no answer: connection refused",
            Some("http://172.20.0.2:8761/"),
        ),
        (
            Source::Breakers,
            "no order-service instance is running",
            None,
        ),
        (
            Source::Broker,
            "connection refused",
            Some("127.0.0.1:19092"),
        ),
        (
            Source::Traces,
            "no answer: connection refused",
            Some("http://172.20.0.4:9411/"),
        ),
        (
            Source::Faults,
            "cannot read the fault store: no such file",
            None,
        ),
    ];
    for (source, error, at) in errors {
        app.apply(Update::Unreachable {
            source,
            at: t(-35),
            error: error.into(),
            address: at.map(str::to_string),
        });
    }
    app.apply(Update::Tick(t(0)));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// A broker that went away keeps its last figures under the "unreachable since" line.
#[test]
fn kafka_unreachable_keeps_last_read() {
    let mut app = fixtures::app();
    app.apply(Update::Unreachable {
        source: Source::Broker,
        at: t(-20),
        error: "connection refused".into(),
        address: Some("127.0.0.1:19092".into()),
    });
    app.show(View::Kafka);
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// Help over the overview at 80×24.
#[test]
fn help_overlay() {
    let mut app = fixtures::app();
    press(&mut app, "?");
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// The inject menu and the confirmation that follows, with its CLI line.
#[test]
fn inject_menu_and_confirmation() {
    let mut app = fixtures::app();
    app.show(View::Services);
    press(&mut app, "jjjj");
    press(&mut app, "i");
    insta::assert_snapshot!("inject_menu", screen(&app, 80, 24));
    press(&mut app, "2");
    press(&mut app, "1");
    insta::assert_snapshot!("inject_confirm", screen(&app, 80, 24));
}

/// The command line with completions, and the command log after actions.
#[test]
fn command_line_and_log() {
    let mut app = fixtures::app();
    press(&mut app, ":sc");
    insta::assert_snapshot!("completion", screen(&app, 80, 24));
    app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    press(&mut app, ":scale order-service 2");
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let id = app.take_requests()[0].id;
    app.apply(Update::ActionDone {
        id,
        result: Ok("started order-service-2".into()),
    });
    press(&mut app, ":heal f-1");
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let id = app.take_requests()[0].id;
    app.apply(Update::ActionDone {
        id,
        result: Err("no active fault f-1".into()),
    });
    app.show(View::Commands);
    insta::assert_snapshot!("commands_view", screen(&app, 80, 24));
}

/// Tiny terminals do not panic: every view draws at 20×5 and 1×1.
#[test]
fn tiny_terminals() {
    let mut app = outage();
    for v in View::ALL {
        app.show(v);
        for (w, h) in [(20, 5), (1, 1), (80, 3)] {
            screen(&app, w, h);
        }
    }
    press(&mut app, "?");
    screen(&app, 10, 4);
}
