//! Unit tests of the rendering on small stacks written here (the shipped stacks have golden
//! and property tests in `cli/tests/cli/kubernetes.rs`).

use std::path::Path;

use super::*;
use crate::stack::validate::validate;

/// A stack called `t` with the `[services.*]` tables in `services`.
fn stack_in(dir: &Path, services: &str) -> Stack {
    let text = format!("[stack]\nname = \"t\"\n{services}");
    let path = dir.join("stack.toml");
    std::fs::write(&path, &text).unwrap();
    let report = validate(&text, &path, "stack.toml");
    report
        .stack
        .unwrap_or_else(|| panic!("invalid test stack: {:?}", report.diagnostics))
}

fn stack(text: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    stack_in(dir.path(), text)
}

fn docs(stack: &Stack, options: &Options) -> Vec<Value> {
    kubernetes(stack, options)
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.value)
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn env_of<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// Names with PASSWORD/SECRET/TOKEN/... are secret, others are not.
#[test]
fn secret_names() {
    for n in [
        "MYSQL_ROOT_PASSWORD",
        "CLIENT_SECRET",
        "ADMIN_TOKEN",
        "db_passwd",
        "AWS_CREDENTIALS",
    ] {
        assert!(is_secret_name(n), "{n}");
    }
    for n in [
        "PORT",
        "CLIENT_ID",
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
    ] {
        assert!(!is_secret_name(n), "{n}");
    }
}

const WEB: &str = r#"

[services.db]
image = "mysql:8.4"
port = 3306
volumes = ["db-data:/var/lib/mysql"]
env = { MYSQL_ROOT_PASSWORD = "hunter22", MYSQL_DATABASES = "a:a:apass1234", SERVER_ID = "${self.index}" }

[services.web]
image = "web:1"
port = 80
instances = 2
depends_on = { db = "started" }
health = { http = "/ready", port = 80, interval = "1500ms", timeout = "1s", retries = 5, start_period = "10s" }
resources = { memory = "96m", cpus = 0.25 }
env = { DB = "mysql://a:apass1234@${db}:${db.port}/a", HOST = "${self.host}", ID = "${self.id}", PRICE = "$(cents)", PLAIN = "${db.host}" }
"#;

/// Secrets (by name, as a URL password, and values containing one) go to the Secret and are
/// referenced; `${db}` becomes the Service name; `${self.host}` the pod IP through the
/// downward API, defined first; a literal `$(` is escaped.
#[test]
fn env_translation() {
    let s = stack(WEB);
    let docs = docs(&s, &Options::default());
    let web = find(&docs, "Deployment", "web");
    assert_eq!(
        env_of(web, "DB")["valueFrom"]["secretKeyRef"],
        json!({ "name": "web-env", "key": "DB" })
    );
    assert_eq!(
        find(&docs, "Secret", "web-env")["stringData"]["DB"],
        "mysql://a:apass1234@db:3306/a"
    );
    assert_eq!(env_of(web, "PLAIN")["value"], "db");
    assert_eq!(env_of(web, "HOST")["value"], "$(K8S_POD_IP)");
    assert_eq!(env_of(web, "ID")["value"], "$(K8S_POD_NAME)");
    assert_eq!(env_of(web, "PRICE")["value"], "$$(cents)");
    let env = web["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert_eq!(env[0]["name"], "K8S_POD_IP");
    assert_eq!(env[1]["name"], "K8S_POD_NAME");
    let db = find(&docs, "StatefulSet", "db");
    // Contains the URL password of another service: secret too.
    assert!(env_of(db, "MYSQL_DATABASES")["valueFrom"]["secretKeyRef"].is_object());
    assert!(env_of(db, "MYSQL_ROOT_PASSWORD")["valueFrom"]["secretKeyRef"].is_object());
    // A StatefulSet's pods have an index.
    assert_eq!(env_of(db, "SERVER_ID")["value"], "$(K8S_POD_INDEX)");
}

/// A `start_interval` sets the startup probe's period (quick readiness at start) while readiness
/// and liveness keep the slower `interval`.
#[test]
fn startup_probe_runs_at_the_start_interval() {
    let s = stack(
        r#"
[services.web]
image = "web:1"
port = 80
health = { http = "/ready", port = 80, interval = "10s", start_interval = "500ms", start_period = "40s", retries = 3 }
"#,
    );
    let docs = docs(&s, &Options::default());
    let c = &find(&docs, "Deployment", "web")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["startupProbe"]["periodSeconds"], 1);
    // 40 s at 1 s + 3 retries.
    assert_eq!(c["startupProbe"]["failureThreshold"], 43);
    assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
    assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
}

/// Probe timing follows the health check: startup allows start_period + retries, readiness
/// every interval (rounded up to whole seconds), liveness at most every 10 s on the port.
#[test]
fn probes_and_resources() {
    let s = stack(WEB);
    let docs = docs(&s, &Options::default());
    let c = &find(&docs, "Deployment", "web")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["readinessProbe"],
        json!({ "httpGet": { "path": "/ready", "port": 80 }, "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 3 })
    );
    assert_eq!(
        c["livenessProbe"],
        json!({ "tcpSocket": { "port": 80 }, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3 })
    );
    // 10 s / 2 s + 5 retries = 10, raised to the 30 s floor: 15 periods.
    assert_eq!(c["startupProbe"]["failureThreshold"], 15);
    assert_eq!(
        c["resources"],
        json!({ "limits": { "memory": "96Mi", "cpu": "250m" }, "requests": { "memory": "96Mi", "cpu": "250m" } })
    );
    assert_eq!(find(&docs, "Deployment", "web")["spec"]["replicas"], 2);
    // An official image has no wait mode: its init container waits in the wait image.
    let init = &find(&docs, "Deployment", "web")["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["image"], DEFAULT_WAIT_IMAGE);
    assert_eq!(
        init["command"][2],
        "until nc -z -w 2 db 3306; do echo waiting for db:3306; sleep 2; done"
    );
}

/// Our services wait for their dependencies with their own binary (`--wait-for`), in their own
/// image: no shell image is needed.
#[test]
fn our_services_wait_with_their_own_binary() {
    let s = stack(
        r#"

[services.registry]
build = { binary = "discovery-server" }
port = 8761

[services.orders]
build = { binary = "order-service" }
port = 8082
depends_on = { registry = "started" }
"#,
    );
    let docs = docs(
        &s,
        &Options {
            image_prefix: "reg.example/p/".to_string(),
            image_tag: "1.2.3".to_string(),
            ..Options::default()
        },
    );
    let init =
        &find(&docs, "Deployment", "orders")["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "wait-for-registry");
    assert_eq!(init["image"], "reg.example/p/order-service:1.2.3");
    assert_eq!(init["args"], json!(["--wait-for", "registry:8761"]));
    assert!(init.get("command").is_none());
}

/// `${self.index}` in a Deployment and a writable host file have no Kubernetes form: errors
/// naming service and key, warnings with `allow_lossy`.
#[test]
fn lossy_features() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf.txt"), "x = 1\n").unwrap();
    let s = stack_in(
        dir.path(),
        r#"

[services.app]
image = "app:1"
port = 80
volumes = ["./conf.txt:/etc/app/conf.txt"]
env = { N = "${self.index}" }
"#,
    );
    let err = kubernetes(&s, &Options::default()).unwrap_err();
    let RenderError::NoKubernetesForm { issues } = &err else {
        panic!("{err}");
    };
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["services.app.volumes", "services.app.env.N"],
        "{err}"
    );
    let rendered = kubernetes(
        &s,
        &Options {
            allow_lossy: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(rendered.warnings.len(), 2);
    let docs: Vec<Value> = rendered.objects.into_iter().map(|o| o.value).collect();
    assert_eq!(
        find(&docs, "ConfigMap", "app-files")["data"]["conf.txt"],
        "x = 1\n"
    );
}

/// Secrets are found as whole words only.
#[test]
fn secrets_are_whole_words() {
    let s = stack("[services.a]\nimage = \"a:1\"\nenv = { ADMIN_PASSWORD = \"admin\" }\n");
    let scan = SecretScan::of(&s);
    assert!(scan.contains_secret("user admin"));
    assert!(scan.contains_secret("\"admin\","));
    assert!(!scan.contains_secret("mysqladmin ping"));
    assert!(!scan.contains_secret("db.adminCommand('ping')"));
}

/// A secret in `command` has no safe form: an error naming the key.
#[test]
fn secret_in_command() {
    let s = stack(
        r#"

[services.app]
image = "app:1"
command = ["--password", "s3cr3t-pw"]
env = { APP_PASSWORD = "s3cr3t-pw" }
"#,
    );
    let err = kubernetes(&s, &Options::default()).unwrap_err().to_string();
    assert!(
        err.contains("service `app`, key `services.app.command`: contains a secret value"),
        "{err}"
    );
    let lossy = Options {
        allow_lossy: true,
        ..Options::default()
    };
    let err = kubernetes(&s, &lossy).unwrap_err();
    assert!(
        matches!(err, super::RenderError::SecretInPodSpec { .. }),
        "{err}"
    );
}

/// Quantities: whole binary units where they divide, bytes otherwise.
#[test]
fn memory_quantities() {
    let mem = |text: &str| {
        let s = stack(&format!(
            "[services.a]\nimage = \"a:1\"\nresources = {{ memory = \"{text}\" }}\n"
        ));
        let docs = docs(&s, &Options::default());
        find(&docs, "Deployment", "a")["spec"]["template"]["spec"]["containers"][0]["resources"]
            ["limits"]["memory"]
            .clone()
    };
    assert_eq!(mem("1g"), "1Gi");
    assert_eq!(mem("512m"), "512Mi");
    assert_eq!(mem("7168k"), "7Mi");
    assert_eq!(mem("10000k"), "10000Ki");
}

/// The exposed service must have a port whether `--expose` names it or it is the default
/// (`api-gateway`): an Ingress or LoadBalancer to port 0 would be rendered otherwise.
#[test]
fn the_default_exposed_service_needs_a_port() {
    let s = stack(
        r#"
[services.api-gateway]
image = "gw:1"
"#,
    );
    for exposure in [
        Exposure::LoadBalancer,
        Exposure::Ingress {
            host: None,
            class: None,
        },
    ] {
        let options = Options {
            exposure: exposure.clone(),
            ..Options::default()
        };
        let err = kubernetes(&s, &options).unwrap_err();
        assert!(
            matches!(&err, RenderError::NoPort { service } if service == "api-gateway"),
            "{exposure:?}: {err}"
        );
        assert_eq!(err.exit_code(), 2);
        let explicit = Options {
            expose: Some("api-gateway".to_string()),
            ..options
        };
        assert!(matches!(
            kubernetes(&s, &explicit),
            Err(RenderError::NoPort { .. })
        ));
    }
}
