//! One test per validation rule: each feeds a small stack with one mistake and checks that the
//! diagnostic names the right line and key and says what is wrong.

use std::path::Path;

use super::*;

const HEAD: &str = "[stack]\nname = \"t\"\n";

fn check(body: &str) -> Report {
    let text = format!("{HEAD}{body}");
    validate(&text, Path::new("/nonexistent/stacks/t.toml"), "t.toml")
}

/// Returns the only error, failing when there are none or several.
fn one_error(body: &str) -> Diagnostic {
    let report = check(body);
    let errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .collect();
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert!(!report.is_valid());
    errors[0].clone()
}

fn assert_diag(d: &Diagnostic, line: usize, key: &str, needle: &str) {
    assert_eq!(d.file, "t.toml");
    assert_eq!(d.line, line, "line of {d}");
    assert_eq!(d.key, key, "key of {d}");
    assert!(
        d.message.contains(needle),
        "`{needle}` not in: {}",
        d.message
    );
}

const OK_SERVICE: &str = "[services.a]\nimage = \"x:1\"\n";

/// A minimal stack is valid and yields the model.
#[test]
fn minimal_stack_is_valid() {
    let r = check(OK_SERVICE);
    assert!(r.is_valid(), "{:#?}", r.diagnostics);
    assert!(r.diagnostics.is_empty());
    let stack = r.stack.unwrap();
    assert_eq!(stack.name, "t");
    assert_eq!(stack.services["a"].instances, 1);
}

/// A TOML syntax error reports its line.
#[test]
fn syntax_error() {
    let d = one_error("[services.a\nimage = 1\n");
    assert_eq!(d.line, 3);
}

/// Unknown keys name the key path, in a service table and in an inline table.
#[test]
fn unknown_keys() {
    let d = one_error("[services.a]\nimage = \"x\"\nimgae = \"y\"\n");
    assert_diag(&d, 5, "services.a.imgae", "unknown field `imgae`");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { tcp = 1, intervall = \"1s\" }\n");
    assert_diag(
        &d,
        5,
        "services.a.health.intervall",
        "unknown field `intervall`",
    );
    let d = one_error("colour = 1\n[services.a]\nimage = \"x\"\n");
    // After `[stack]`, a new key belongs to that table.
    assert_diag(&d, 3, "stack.colour", "unknown field `colour`");
    let text = "top = 1\n[stack]\nname = \"t\"\n[services.a]\nimage = \"x\"\n";
    let r = validate(text, Path::new("t.toml"), "t.toml");
    assert_diag(&r.diagnostics[0], 1, "top", "unknown field `top`");
}

/// Values of the wrong type or out of range name their key.
#[test]
fn wrong_types() {
    let d = one_error("[services.a]\nimage = \"x\"\ninstances = \"two\"\n");
    assert_diag(&d, 5, "services.a.instances", "invalid type");
    let d = one_error("[services.a]\nimage = \"x\"\nport = 70000\n");
    assert_diag(&d, 5, "services.a.port", "70000");
}

/// Stack and service names must be DNS labels.
#[test]
fn bad_names() {
    let text = "[stack]\nname = \"Dev Stack\"\n[services.a]\nimage = \"x\"\n";
    let r = validate(text, Path::new("t.toml"), "t.toml");
    assert_diag(&r.diagnostics[0], 2, "stack.name", "not a valid stack name");
    let d = one_error("[services.Order_Service]\nimage = \"x\"\n");
    assert_diag(&d, 3, "services.Order_Service", "not a valid service name");
}

/// A stack needs services.
#[test]
fn no_services() {
    let d = one_error("");
    assert_eq!(d.key, "services");
    assert!(d.message.contains("no services"));
}

/// Image source rules: one of image/build, build needs one of binary/recipe, known recipes.
#[test]
fn image_sources() {
    let d = one_error("[services.a]\nport = 1\n");
    assert_diag(&d, 3, "services.a", "needs an `image` or a `build`");
    let d = one_error("[services.a]\nimage = \"x\"\nbuild = { recipe = \"nisshi\" }\n");
    assert_diag(&d, 4, "services.a.image", "not both");
    let d = one_error("[services.a]\nbuild = { }\n");
    assert_diag(
        &d,
        4,
        "services.a.build",
        "exactly one of `binary` or `recipe`",
    );
    let d = one_error("[services.a]\nbuild = { recipe = \"postgres\" }\n");
    assert_diag(
        &d,
        4,
        "services.a.build.recipe",
        "unknown recipe `postgres`",
    );
    let d = one_error("[services.a]\nimage = \"has space\"\n");
    assert_diag(&d, 4, "services.a.image", "not an image reference");
}

/// Instances must be within bounds.
#[test]
fn instances_bounds() {
    let d = one_error("[services.a]\nimage = \"x\"\ninstances = 0\n");
    assert_diag(&d, 5, "services.a.instances", "between 1 and 16");
    let d = one_error("[services.a]\nimage = \"x\"\ninstances = 99\n");
    assert_diag(&d, 5, "services.a.instances", "not 99");
}

/// Published ports: syntax, a fixed host port with several instances, and clashes between
/// services (naming the first publisher and its line).
#[test]
fn published_ports() {
    let d = one_error("[services.a]\nimage = \"x\"\nports = [\"80\"]\n");
    assert_diag(&d, 5, "services.a.ports", "HOST:CONTAINER");
    let d = one_error("[services.a]\nimage = \"x\"\nports = [\"nope:8080:80\"]\n");
    assert_diag(&d, 5, "services.a.ports", "not an IP address");
    let d = one_error("[services.a]\nimage = \"x\"\ninstances = 2\nports = [\"8080:80\"]\n");
    assert_diag(&d, 6, "services.a.ports", "2 instances");
    let d = one_error(
        "[services.a]\nimage = \"x\"\nports = [\"8080:80\"]\n\
         [services.b]\nimage = \"x\"\nports = [\"127.0.0.1:8080:81\"]\n",
    );
    assert_diag(
        &d,
        8,
        "services.b.ports",
        "already published by `a` (line 5)",
    );
    // Different addresses do not clash.
    let r = check(
        "[services.a]\nimage = \"x\"\nports = [\"127.0.0.1:8080:80\"]\n\
         [services.b]\nimage = \"x\"\nports = [\"127.0.0.2:8080:81\"]\n",
    );
    assert!(r.is_valid(), "{:#?}", r.diagnostics);
}

/// Environment names and `${...}` references are checked against the stack.
#[test]
fn env_references() {
    let d = one_error("[services.a]\nimage = \"x\"\nenv = { \"1X\" = \"v\" }\n");
    assert_diag(
        &d,
        5,
        "services.a.env.1X",
        "not an environment variable name",
    );
    let d = one_error("[services.a]\nimage = \"x\"\nenv = { U = \"http://${nope}:1\" }\n");
    assert_diag(
        &d,
        5,
        "services.a.env.U",
        "unknown service `nope` (services: a)",
    );
    let d = one_error(
        "[services.a]\nimage = \"x\"\nenv = { U = \"${b.port}\" }\n[services.b]\nimage = \"y\"\n",
    );
    assert_diag(&d, 5, "services.a.env.U", "service `b` has no `port`");
    let d = one_error("[services.a]\nimage = \"x\"\nenv = { P = \"${self.port}\" }\n");
    assert_diag(&d, 5, "services.a.env.P", "`${self.port}`");
    let d = one_error("[services.a]\nimage = \"x\"\n[services.a.env]\nU = \"ab${a\"\n");
    assert_diag(&d, 6, "services.a.env.U", "unterminated");
    assert_eq!(d.column, 8, "points at the `$`");
}

/// Dependencies: unknown services, unknown conditions, `healthy` without a probe.
#[test]
fn dependencies() {
    let d = one_error("[services.a]\nimage = \"x\"\ndepends_on = { b = \"started\" }\n");
    assert_diag(&d, 5, "services.a.depends_on.b", "unknown service `b`");
    let d = one_error(
        "[services.a]\nimage = \"x\"\ndepends_on = { b = \"ready\" }\n[services.b]\nimage = \"y\"\n",
    );
    assert_diag(
        &d,
        5,
        "services.a.depends_on.b",
        "unknown condition `ready`",
    );
    let d = one_error(
        "[services.a]\nimage = \"x\"\ndepends_on = { b = \"healthy\" }\n[services.b]\nimage = \"y\"\n",
    );
    assert_diag(&d, 5, "services.a.depends_on.b", "`b` has no health probe");
}

/// A dependency cycle is reported once, showing the whole cycle.
#[test]
fn dependency_cycle() {
    let d = one_error(
        "[services.a]\nimage = \"x\"\ndepends_on = { b = \"started\" }\n\
         [services.b]\nimage = \"x\"\ndepends_on = { c = \"started\" }\n\
         [services.c]\nimage = \"x\"\ndepends_on = { a = \"started\" }\n",
    );
    assert_diag(
        &d,
        5,
        "services.a.depends_on.b",
        "dependency cycle: a → b → c → a",
    );
}

/// Health probes: exactly one kind, `probe` only for our binaries, ports, paths, durations.
#[test]
fn health_rules() {
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { interval = \"1s\" }\n");
    assert_diag(&d, 5, "services.a.health", "exactly one of");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { tcp = 1, http = \"/\" }\n");
    assert_diag(&d, 5, "services.a.health", "exactly one of");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { probe = true }\n");
    assert_diag(
        &d,
        5,
        "services.a.health.probe",
        "only this workspace's binaries",
    );
    let d = one_error("[services.a]\nbuild = { binary = \"a\" }\nhealth = { probe = false }\n");
    assert_diag(&d, 5, "services.a.health.probe", "not a probe");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { http = \"/health\" }\n");
    assert_diag(&d, 5, "services.a.health.http", "needs a port");
    let d = one_error("[services.a]\nimage = \"x\"\nport = 80\nhealth = { http = \"health\" }\n");
    assert_diag(&d, 6, "services.a.health.http", "must start with `/`");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { tcp = 80, interval = \"soon\" }\n");
    assert_diag(&d, 5, "services.a.health.interval", "not a duration");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { tcp = 80, retries = 0 }\n");
    assert_diag(&d, 5, "services.a.health.retries", "between 1 and 1000");
    let r = check(
        "[services.a]\nimage = \"x\"\nport = 80\nhealth = { http = \"/h\", timeout = \"500ms\" }\n",
    );
    let h = r.stack.unwrap().services["a"].health.clone().unwrap();
    assert_eq!(
        h.check,
        Check::Http {
            path: "/h".into(),
            port: 80
        }
    );
    assert_eq!(h.timeout, Duration::from_millis(500));
    // Without `start_interval` the start cadence is the interval; with it, its own.
    assert_eq!(h.start_interval, h.interval);
    let r = check(
        "[services.a]\nimage = \"x\"\nhealth = { tcp = 80, interval = \"10s\", start_interval = \"250ms\" }\n",
    );
    let h = r.stack.unwrap().services["a"].health.clone().unwrap();
    assert_eq!(
        (h.interval, h.start_interval),
        (Duration::from_secs(10), Duration::from_millis(250))
    );
    let d = one_error(
        "[services.a]\nimage = \"x\"\nhealth = { tcp = 80, start_interval = \"often\" }\n",
    );
    assert_diag(&d, 5, "services.a.health.start_interval", "not a duration");
    // Who runs the check: Docker for `exec` unless `docker = false`; never for `tcp`/`http`.
    let h = |text: &str| {
        check(text).stack.unwrap().services["a"]
            .health
            .clone()
            .unwrap()
    };
    let exec = h("[services.a]\nimage = \"x\"\nhealth = { exec = [\"true\"] }\n");
    assert!(exec.docker && exec.run_by_docker());
    let outside = h(
        "[services.a]\nimage = \"x\"\nport = 5\nhealth = { exec = [\"true\"], docker = false }\n",
    );
    assert!(!outside.docker && !outside.run_by_docker());
    let tcp = h("[services.a]\nimage = \"x\"\nhealth = { tcp = 80 }\n");
    assert!(!tcp.run_by_docker());
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { tcp = 80, docker = true }\n");
    assert_diag(&d, 5, "services.a.health.docker", "Docker cannot run");
    let d = one_error("[services.a]\nimage = \"x\"\nhealth = { tcp = 80, docker = \"no\" }\n");
    assert_diag(&d, 5, "services.a.health.docker", "expected a boolean");
}

/// Mounts: syntax, absolute targets, volume names; a missing bind source only warns.
#[test]
fn mounts() {
    let d = one_error("[services.a]\nimage = \"x\"\nvolumes = [\"data\"]\n");
    assert_diag(&d, 5, "services.a.volumes", "not a mount");
    let d = one_error("[services.a]\nimage = \"x\"\nvolumes = [\"data:var/lib\"]\n");
    assert_diag(&d, 5, "services.a.volumes", "must be an absolute path");
    let d = one_error("[services.a]\nimage = \"x\"\nvolumes = [\"My_Data:/d\"]\n");
    assert_diag(&d, 5, "services.a.volumes", "neither a volume name");
    let r = check("[services.a]\nimage = \"x\"\nvolumes = [\"../missing.json:/f:ro\", \"d:/d\"]\n");
    assert!(r.is_valid());
    assert_eq!(r.diagnostics.len(), 1);
    assert_eq!(r.diagnostics[0].severity, Severity::Warning);
    assert!(
        r.diagnostics[0]
            .message
            .contains("/nonexistent/missing.json")
    );
    let svc = &r.stack.unwrap().services["a"];
    assert_eq!(
        svc.volumes[1],
        Mount::Volume {
            name: "d".into(),
            target: "/d".into(),
            read_only: false
        }
    );
}

/// Resources: memory sizes and CPU bounds.
#[test]
fn resources() {
    let d = one_error("[services.a]\nimage = \"x\"\nresources = { memory = \"lots\" }\n");
    assert_diag(&d, 5, "services.a.resources.memory", "not a memory size");
    let d = one_error("[services.a]\nimage = \"x\"\nresources = { memory = \"1m\" }\n");
    assert_diag(&d, 5, "services.a.resources.memory", "minimum of 6m");
    let d = one_error("[services.a]\nimage = \"x\"\nresources = { cpus = 0.0 }\n");
    assert_diag(&d, 5, "services.a.resources.cpus", "more than 0");
    let r = check("[services.a]\nimage = \"x\"\nresources = { memory = \"128m\", cpus = 0.5 }\n");
    let res = r.stack.unwrap().services["a"].resources;
    assert_eq!(res.memory_bytes, Some(128 << 20));
    assert_eq!(res.cpus, Some(0.5));
}

/// Restart policies: compose's syntax, on-failure by default, bad values named.
#[test]
fn restart_policies() {
    let r = check(OK_SERVICE);
    assert_eq!(
        r.stack.unwrap().services["a"].restart,
        Restart::OnFailure { max_retries: None }
    );
    for (text, want) in [
        ("no", Restart::No),
        ("always", Restart::Always),
        ("unless-stopped", Restart::UnlessStopped),
        ("on-failure", Restart::OnFailure { max_retries: None }),
        (
            "on-failure:5",
            Restart::OnFailure {
                max_retries: Some(5),
            },
        ),
    ] {
        let r = check(&format!("{OK_SERVICE}restart = \"{text}\"\n"));
        let restart = r.stack.unwrap().services["a"].restart;
        assert_eq!(restart, want, "{text}");
        assert_eq!(restart.to_string(), text, "written back as read");
    }
    for bad in [
        "sometimes",
        "on-failure:0",
        "on-failure:x",
        "on-failure:",
        "No",
    ] {
        let d = one_error(&format!("{OK_SERVICE}restart = \"{bad}\"\n"));
        assert_diag(&d, 5, "services.a.restart", "not a restart policy");
    }
    let d = one_error(&format!("{OK_SERVICE}restart = 3\n"));
    assert_diag(&d, 5, "services.a.restart", "invalid type");
}

/// Several mistakes are all reported, in file order.
#[test]
fn reports_everything_at_once() {
    let r = check(
        "[services.a]\nimage = \"x\"\ninstances = 0\ndepends_on = { zz = \"started\" }\n\
         [services.b]\nimage = \"x\"\nresources = { cpus = 100.0 }\n",
    );
    let lines: Vec<usize> = r.diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![5, 6, 9]);
}

fn repo_stack(name: &str) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stacks")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    validate(&text, &path, &format!("stacks/{name}.toml"))
}

/// The shipped dev stack is valid without warnings and starts in three waves.
#[test]
fn dev_stack_is_valid() {
    let r = repo_stack("dev");
    assert!(r.diagnostics.is_empty(), "{:#?}", r.diagnostics);
    let stack = r.stack.unwrap();
    assert_eq!(stack.services.len(), 10);
    assert_eq!(
        stack.waves()[0],
        vec!["discovery-server", "kafka", "mariadb"]
    );
}

/// The shipped full stack parses and every reference resolves (it cannot run here: its
/// images need a registry). The only allowed findings are warnings about bind sources.
#[test]
fn full_stack_is_valid() {
    let r = repo_stack("full");
    for d in &r.diagnostics {
        assert_eq!(d.severity, Severity::Warning, "{d}");
        assert!(d.message.contains("bind mount source"), "{d}");
    }
    let stack = r.stack.unwrap();
    for image in [
        "mysql:8.4",
        "mongo:7",
        "apache/kafka:3.9.0",
        "quay.io/keycloak/keycloak:26.0",
        "openzipkin/zipkin:3",
    ] {
        assert!(
            stack
                .services
                .values()
                .any(|s| s.source == ImageSource::Image(image.to_string())),
            "{image} missing"
        );
    }
    let keycloak = &stack.services["keycloak"];
    assert_eq!(
        keycloak.command,
        vec!["start-dev", "--import-realm", "--http-port=8180"]
    );
    assert!(matches!(
        &keycloak.volumes[0],
        Mount::Bind { target, read_only: true, .. } if target == "/opt/keycloak/data/import/realm.json"
    ));
}
