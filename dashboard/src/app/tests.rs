//! Keys and the command line, on the state alone (no terminal): what each key selects, which
//! requests leave with which CLI equivalents, and what asks for confirmation first.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};

use super::*;
use crate::fixtures::{self, t};
use crate::model::faults::tests::fault;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

fn enter(app: &mut App) {
    app.on_key(key(KeyCode::Enter));
}

/// Types `:line` and Enter.
fn command(app: &mut App, line: &str) {
    press(app, ":");
    press(app, line);
    enter(app);
}

/// Selects the services-view row of `label` (a service or `service-N`).
fn select(app: &mut App, label: &str) {
    app.show(View::Services);
    press(app, "g");
    for _ in 0..40 {
        if let Some(t) = app.target() {
            let name = match t.instance {
                Some(n) => format!("{}-{n}", t.service),
                None => t.service.clone(),
            };
            if name == label {
                return;
            }
        }
        press(app, "j");
    }
    panic!("no row {label}");
}

fn actions(app: &mut App) -> Vec<Action> {
    app.take_requests().into_iter().map(|r| r.action).collect()
}

fn last_cli(app: &App) -> &str {
    &app.model.commands.last().expect("a command").cli
}

/// Number keys, Tab and Shift-Tab switch views; `:` view names do too.
#[test]
fn views_by_key_and_name() {
    let mut app = fixtures::app();
    assert_eq!(app.view, View::Overview);
    press(&mut app, "3");
    assert_eq!(app.view, View::Breakers);
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.view, View::Kafka);
    app.on_key(key(KeyCode::BackTab));
    app.on_key(key(KeyCode::BackTab));
    assert_eq!(app.view, View::Services);
    command(&mut app, "tr");
    assert_eq!(app.view, View::Traces);
    command(&mut app, "faults");
    assert_eq!(app.view, View::Events);
}

/// `+` on a scalable service asks for one more instance at once, with its CLI equivalent in
/// the command log; the answer marks the entry done.
#[test]
fn plus_scales_up_without_asking() {
    let mut app = fixtures::app();
    select(&mut app, "order-service");
    press(&mut app, "+");
    assert_eq!(app.mode, Mode::Normal);
    let requests = app.take_requests();
    assert_eq!(
        requests.iter().map(|r| &r.action).collect::<Vec<_>>(),
        vec![&Action::Scale {
            service: "order-service".into(),
            instances: 3
        }]
    );
    assert_eq!(last_cli(&app), "platform scale order-service 3");
    assert_eq!(app.model.commands[0].status, CommandStatus::Running);
    app.apply(Update::ActionDone {
        id: requests[0].id,
        result: Ok("started order-service-3".into()),
    });
    assert_eq!(
        app.model.commands[0].status,
        CommandStatus::Done("started order-service-3".into())
    );
}

/// `-` removes an instance only after `y`; `n` cancels and nothing leaves.
#[test]
fn minus_asks_first() {
    let mut app = fixtures::app();
    select(&mut app, "order-service-2");
    press(&mut app, "-");
    let Mode::Confirm(c) = &app.mode else {
        panic!("expected a confirmation, got {:?}", app.mode)
    };
    assert!(c.question.contains("from 2 to 1"), "{}", c.question);
    assert_eq!(c.cli.as_deref(), Some("platform scale order-service 1"));
    press(&mut app, "n");
    assert!(actions(&mut app).is_empty());
    assert!(app.model.commands.is_empty());
    press(&mut app, "-y");
    assert_eq!(
        actions(&mut app),
        vec![Action::Scale {
            service: "order-service".into(),
            instances: 1
        }]
    );
}

/// A service that cannot scale says why instead of asking the CLI.
#[test]
fn unscalable_service_says_why() {
    let mut app = fixtures::app();
    select(&mut app, "mariadb");
    press(&mut app, "+");
    assert!(actions(&mut app).is_empty());
    let flash = app.flash.clone().expect("a message");
    assert!(flash.text.contains("stateful"), "{}", flash.text);
}

/// The inject menu: kind, then duration, then a confirmation; a service row aims at all
/// instances, an instance row at that one.
#[test]
fn inject_from_the_menu() {
    let mut app = fixtures::app();
    select(&mut app, "inventory-service");
    press(&mut app, "i");
    let Mode::Menu(m) = &app.mode else {
        panic!("expected the kinds menu")
    };
    assert_eq!(m.items[1].label, "stop");
    press(&mut app, "j");
    enter(&mut app);
    let Mode::Menu(m) = &app.mode else {
        panic!("expected the durations menu")
    };
    assert!(
        m.title
            .contains("stop on inventory-service (all instances)")
    );
    press(&mut app, "j");
    enter(&mut app);
    let Mode::Confirm(c) = &app.mode else {
        panic!("expected a confirmation")
    };
    assert_eq!(
        c.cli.as_deref(),
        Some("platform inject stop inventory-service --all --duration 1m")
    );
    press(&mut app, "y");
    assert_eq!(
        actions(&mut app),
        vec![Action::Inject {
            words: ["stop", "inventory-service", "--all", "--duration", "1m"]
                .map(String::from)
                .to_vec()
        }]
    );
    assert_eq!(
        last_cli(&app),
        "platform inject stop inventory-service --all --duration 1m"
    );

    select(&mut app, "order-service-2");
    press(&mut app, "i3");
    press(&mut app, "1");
    let Mode::Confirm(c) = &app.mode else {
        panic!("expected a confirmation")
    };
    assert_eq!(
        c.cli.as_deref(),
        Some("platform inject pause order-service --instance 2 --duration 30s")
    );
    app.on_key(key(KeyCode::Esc));
    assert!(actions(&mut app).is_empty());
}

/// Esc leaves a menu without a request; `h` without faults only says so.
#[test]
fn menus_cancel() {
    let mut app = fixtures::app();
    select(&mut app, "order-service");
    press(&mut app, "i");
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);
    press(&mut app, "h");
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.flash.is_some());
    assert!(actions(&mut app).is_empty());
}

/// The heal menu lists "all" and each fault with its time left; ⏎ in the events view heals
/// the selected fault.
#[test]
fn heal_all_or_one() {
    let mut app = fixtures::app();
    app.apply(Update::Faults(vec![
        fault("f-1", "stop", "inventory-service-1", -20, 60),
        fault("f-2", "latency", "order-service-1", -5, 30),
    ]));
    press(&mut app, "h");
    let Mode::Menu(m) = &app.mode else {
        panic!("expected the heal menu")
    };
    assert_eq!(m.items.len(), 3);
    assert!(
        m.items[1].detail.contains("40s left"),
        "{}",
        m.items[1].detail
    );
    enter(&mut app);
    assert_eq!(actions(&mut app), vec![Action::Heal { id: None }]);
    assert_eq!(last_cli(&app), "platform heal --all");

    press(&mut app, "6j");
    enter(&mut app);
    assert_eq!(
        actions(&mut app),
        vec![Action::Heal {
            id: Some("f-2".into())
        }]
    );
}

/// `:` commands queue the same actions as keys, with CLI equivalents, and bad ones say why.
#[test]
fn command_line_actions() {
    let mut app = fixtures::app();
    command(&mut app, "scale order-service 4");
    assert_eq!(
        actions(&mut app),
        vec![Action::Scale {
            service: "order-service".into(),
            instances: 4
        }]
    );
    command(&mut app, "inject latency order-service --delay 200ms");
    assert!(matches!(app.mode, Mode::Confirm(_)));
    press(&mut app, "y");
    assert_eq!(
        last_cli(&app),
        "platform inject latency order-service --delay 200ms"
    );
    command(&mut app, "load 50 30s");
    assert_eq!(
        actions(&mut app).last(),
        Some(&Action::Load {
            rate: "50".into(),
            duration: "30s".into(),
            mix: None
        })
    );
    assert_eq!(last_cli(&app), "platform load --rate 50 --duration 30s");
    command(&mut app, "scale order-service many");
    assert!(app.flash.as_ref().unwrap().text.contains("not a number"));
    command(&mut app, "launch");
    assert!(app.flash.as_ref().unwrap().text.contains("unknown command"));
    assert!(actions(&mut app).is_empty());
}

/// Tab completes the word being typed from what the dashboard knows; more Tabs cycle.
#[test]
fn tab_completion() {
    let mut app = fixtures::app();
    press(&mut app, ":sc");
    app.on_key(key(KeyCode::Tab));
    let Mode::Command(p) = &app.mode else {
        panic!()
    };
    assert_eq!(p.text, "scale ");
    app.on_key(key(KeyCode::Tab));
    let Mode::Command(p) = &app.mode else {
        panic!()
    };
    assert_eq!(p.text, "scenario ");
    // Typing stops the cycle; services that scale are offered.
    app.on_key(key(KeyCode::BackTab));
    press(&mut app, "o");
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Tab));
    let Mode::Command(p) = &app.mode else {
        panic!()
    };
    assert_eq!(
        p.suggestions(&app.vocabulary()),
        vec!["inventory-service", "notification-service", "order-service"]
    );
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);
}

/// Up recalls earlier command lines; Backspace on an empty line leaves the command line.
#[test]
fn command_history() {
    let mut app = fixtures::app();
    command(&mut app, "kafka");
    command(&mut app, "breakers");
    press(&mut app, ":");
    app.on_key(key(KeyCode::Up));
    app.on_key(key(KeyCode::Up));
    let Mode::Command(p) = &app.mode else {
        panic!()
    };
    assert_eq!(p.text, "kafka");
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    let Mode::Command(p) = &app.mode else {
        panic!()
    };
    assert_eq!(p.text, "");
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(app.mode, Mode::Normal);
}

/// `/` filters the view as it is typed; Enter keeps it, Esc (twice) clears it.
#[test]
fn filter_services() {
    let mut app = fixtures::app();
    app.show(View::Services);
    press(&mut app, "/order");
    assert_eq!(app.filter(View::Services), "order");
    enter(&mut app);
    let rows = crate::rows::services(&app.model, app.filter(View::Services));
    assert_eq!(rows.len(), 3, "order-service and its two instances");
    assert_eq!(
        app.target().map(|t| t.service),
        Some("order-service".to_string())
    );
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.filter(View::Services), "");
}

/// ⏎ on a trace opens its waterfall, Esc closes it; a trace id from a log line that is not in
/// the list is asked of the CLI, whose answer fills the waterfall.
#[test]
fn traces_open_from_list_and_logs() {
    let mut app = fixtures::app();
    app.show(View::Traces);
    press(&mut app, "j");
    enter(&mut app);
    assert!(matches!(
        &app.model.traces.open,
        Some(OpenTrace::Loaded(t)) if t.id == "a3ce929d0e0e4736"
    ));
    app.on_key(key(KeyCode::Esc));
    assert!(app.model.traces.open.is_none());

    app.show(View::Logs);
    press(&mut app, "G");
    enter(&mut app);
    assert_eq!(app.view, View::Traces);
    assert_eq!(
        actions(&mut app),
        vec![Action::OpenTrace {
            id: "ffffffffffffffff".into()
        }]
    );
    assert_eq!(last_cli(&app), "platform trace ffffffffffffffff");
    app.apply(Update::Trace {
        id: "ffffffffffffffff".into(),
        result: Ok(Some(crate::model::traces::tests::order_trace(
            "ffffffffffffffff",
            false,
        ))),
    });
    assert!(matches!(app.model.traces.open, Some(OpenTrace::Loaded(_))));
}

/// The logs filter takes a level and a trace id; moving up stops following, G follows again.
#[test]
fn logs_follow_and_filter() {
    let mut app = fixtures::app();
    app.show(View::Logs);
    assert!(app.follow_logs);
    press(&mut app, "k");
    assert!(!app.follow_logs);
    press(&mut app, "G");
    assert!(app.follow_logs);
    press(&mut app, "/level:warn");
    enter(&mut app);
    assert_eq!(
        crate::rows::logs(&app.model, app.filter(View::Logs)).len(),
        1
    );
    assert_eq!(app.log_level(), Some(Level::Warn));
    command(&mut app, "logs order-service-2");
    assert_eq!(
        actions(&mut app),
        vec![Action::FollowLogs {
            target: Some(LogTarget {
                service: "order-service".into(),
                instance: Some(2)
            })
        }]
    );
    assert!(app.model.logs.is_empty(), "retargeting drops the old lines");
    command(&mut app, "logs nosuch");
    assert!(app.flash.as_ref().unwrap().text.contains("no service"));
}

/// `S` offers the scenarios; running one asks first, then shows the timeline.
#[test]
fn scenario_from_the_menu() {
    let mut app = fixtures::app();
    press(&mut app, "S");
    enter(&mut app);
    assert_eq!(app.view, View::Events);
    press(&mut app, "y");
    assert_eq!(
        actions(&mut app),
        vec![Action::Scenario {
            name: "inventory-down".into(),
            file: "stacks/scenarios/inventory-down.toml".into()
        }]
    );
    assert_eq!(
        last_cli(&app),
        "platform scenario run stacks/scenarios/inventory-down.toml"
    );
    command(&mut app, "scenario nosuch");
    assert!(app.flash.as_ref().unwrap().text.contains("no scenario"));
}

/// `q` and Ctrl-C quit; Ctrl-C in a prompt only closes it; key releases are ignored.
#[test]
fn quitting() {
    let mut app = fixtures::app();
    press(&mut app, ":");
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(app.mode, Mode::Normal);
    assert!(!app.should_quit());
    app.on_key(KeyEvent {
        code: KeyCode::Char('q'),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Release,
        state: KeyEventState::NONE,
    });
    assert!(!app.should_quit());
    press(&mut app, "q");
    assert!(app.should_quit());
    let mut app = fixtures::app();
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.should_quit());
}

/// With another stack, every CLI equivalent names it.
#[test]
fn cli_equivalents_name_the_stack() {
    let mut app = fixtures::app();
    app.stack_flag = Some("/tmp/e2e.toml".into());
    command(&mut app, "heal");
    assert_eq!(last_cli(&app), "platform heal --all --stack /tmp/e2e.toml");
    assert_eq!(app.model.commands[0].at, t(0));
}
