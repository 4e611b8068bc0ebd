//! `platform render kubernetes`: golden manifests of the shipped stacks, round-trip properties
//! (every service rendered, every `${service}` reference resolved to a Service, no secret in a
//! ConfigMap or env literal), bad input, and schema validation of every document with
//! `kubernetes-validate --strict` (pinned in install.sh's venv; offline, no cluster).
//!
//! The golden files are plain YAML under `tests/cli/golden/`, readable and appliable as they
//! are; `UPDATE_GOLDEN=1` rewrites them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use platform::render::{self, Exposure, Options, SecretScan, is_secret_name};
use platform::stack::env::Reference;
use platform::stack::{Stack, StackFile};
use serde_json::Value;

/// The Kubernetes version the manifests are validated against (kubernetes-validate ships its
/// schemas; this is a current release of it).
const KUBERNETES_VERSION: &str = "1.34.0";

fn repo() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

fn stack(name: &str) -> Stack {
    StackFile::at(repo().join(format!("stacks/{name}.toml")))
        .load()
        .unwrap_or_else(|e| panic!("stack {name}: {e}"))
}

/// Options the golden files are rendered with: a fixed tag, so a version bump does not touch them.
fn golden_options() -> Options {
    Options {
        image_tag: "golden".to_string(),
        ..Options::default()
    }
}

fn render(stack: &Stack, options: &Options) -> String {
    render::kubernetes(stack, options)
        .unwrap_or_else(|e| panic!("render {}: {e}", stack.name))
        .to_yaml()
}

/// The documents of a YAML stream as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str(d).unwrap_or_else(|e| panic!("YAML: {e}\n{d}")))
        .collect()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/cli/golden/{name}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_GOLDEN=1 writes it", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering at line {}: expected {:?}, got {:?}; \
             if the change is intended, UPDATE_GOLDEN=1 rewrites it",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// The dev stack renders to exactly the golden manifests, twice the same (deterministic).
#[test]
fn golden_dev() {
    let dev = stack("dev");
    let yaml = render(&dev, &golden_options());
    assert_eq!(
        yaml,
        render(&dev, &golden_options()),
        "rendering is not deterministic"
    );
    golden("kubernetes-dev.yaml", &yaml);
}

/// The full stack, in a namespace, with a registry prefix and the gateway behind an Ingress,
/// renders to exactly the golden manifests.
#[test]
fn golden_full() {
    let options = Options {
        namespace: Some("shop".to_string()),
        image_prefix: "registry.example:5000/platform/".to_string(),
        exposure: Exposure::Ingress {
            host: Some("shop.example".to_string()),
            class: Some("nginx".to_string()),
        },
        scale: [("order-service".to_string(), 3)].into(),
        ..golden_options()
    };
    golden("kubernetes-full.yaml", &render(&stack("full"), &options));
}

fn kind_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn containers(doc: &Value) -> Vec<&Value> {
    let spec = &doc["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[k].as_array())
        .flatten()
        .collect()
}

/// The Service `name` exists and has `port`; `why` says who needs it.
fn assert_service_port(docs: &[Value], name: &str, port: u16, why: &str) {
    let svc =
        kind_named(docs, "Service", name).unwrap_or_else(|| panic!("{why}: no Service `{name}`"));
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == port),
        "{why}: Service `{name}` has no port {port}"
    );
}

/// Every string anywhere inside `v`.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Round trip, for both shipped stacks: every service has its workload (with the stack's
/// replicas) and, when it has a port, its Service; every `${service}` reference names a
/// Service that exists with that port, and no `${` is left; every env var named like a secret,
/// and every secret of the stack, reaches the pod only through a Secret: no secret value is in
/// a ConfigMap or an env literal.
#[test]
fn round_trip_properties() {
    for name in ["dev", "full"] {
        let stack = stack(name);
        let docs = documents(&render(&stack, &golden_options()));
        let scan = SecretScan::of(&stack);
        assert!(
            scan.fragments().count() >= 3,
            "{name}: the stack's secrets were not found"
        );
        for service in stack.services.values() {
            let workload = ["Deployment", "StatefulSet"]
                .iter()
                .find_map(|k| kind_named(&docs, k, &service.name))
                .unwrap_or_else(|| panic!("{name}: no workload for {}", service.name));
            assert_eq!(workload["spec"]["replicas"], service.instances);
            if let Some(port) = service.port {
                assert_service_port(&docs, &service.name, port, name);
            }
            for (var, template) in &service.env {
                for r in template.references() {
                    if let Reference::ServiceHost(target) | Reference::ServicePort(target) = r {
                        let port = stack.services[target].port.unwrap();
                        let why = format!("{name}: {}.env.{var}", service.name);
                        assert_service_port(&docs, target, port, &why);
                    }
                }
            }
            let env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap();
            for var in service.env.keys() {
                let entry = env.iter().find(|e| e["name"] == var.as_str()).unwrap();
                if is_secret_name(var) {
                    assert_eq!(
                        entry["valueFrom"]["secretKeyRef"]["name"],
                        format!("{}-env", service.name),
                        "{name}: {}.{var} is not taken from its Secret",
                        service.name
                    );
                }
            }
        }
        // No secret in a ConfigMap or an env literal, nor any unresolved reference.
        let mut secret_values: Vec<String> = scan.fragments().map(str::to_string).collect();
        for doc in docs.iter().filter(|d| d["kind"] == "Secret") {
            for v in doc["stringData"].as_object().unwrap().values() {
                secret_values.push(v.as_str().unwrap().to_string());
            }
        }
        let mut exposed = Vec::new();
        for doc in &docs {
            if doc["kind"] == "ConfigMap" {
                strings(&doc["data"], &mut exposed);
            }
            for c in containers(doc) {
                for e in c["env"].as_array().into_iter().flatten() {
                    strings(&e["value"], &mut exposed);
                }
                strings(&c["command"], &mut exposed);
                strings(&c["args"], &mut exposed);
            }
        }
        for text in &exposed {
            assert!(
                !text.contains("${"),
                "{name}: unresolved reference in {text:?}"
            );
            for secret in secret_values.iter().filter(|s| s.len() >= 4) {
                assert!(
                    !text.contains(secret.as_str()),
                    "{name}: secret {secret:?} appears in plain text {text:?}"
                );
            }
        }
    }
}

/// `--scale` sets replicas of a stateless service; a stateful one, or one others reach by
/// name, refuses more than one.
#[test]
fn scale_option() {
    let dev = stack("dev");
    let options = Options {
        scale: [("order-service".to_string(), 4)].into(),
        ..golden_options()
    };
    let docs = documents(&render(&dev, &options));
    assert_eq!(
        kind_named(&docs, "Deployment", "order-service").unwrap()["spec"]["replicas"],
        4
    );
    for service in ["mariadb", "discovery-server"] {
        let options = Options {
            scale: [(service.to_string(), 2)].into(),
            ..golden_options()
        };
        let err = render::kubernetes(&dev, &options).unwrap_err();
        assert!(err.to_string().contains(service), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}

fn platform(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_platform"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PLATFORM_STACK")
        .output()
        .expect("run platform")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `<dir>/<name>.toml`: stack `name` with the `[services.*]` tables in `services`.
fn write_stack(dir: &Path, name: &str, services: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("[stack]\nname = \"{name}\"\n{services}")).unwrap();
    path
}

/// A stack whose service mounts a host directory (no Kubernetes form) and has `restart = "no"`.
fn lossy_stack(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_stack(
        dir,
        "lossy",
        r#"
[services.web]
image = "nginx:1"
port = 80
volumes = ["./data:/usr/share/nginx/html"]
restart = "no"
"#,
    )
}

/// A host directory mount and an inexpressible restart policy exit 2, naming service and key;
/// `--allow-lossy` renders anyway with a warning per feature on stderr and exits 0.
#[test]
fn lossy_features_are_errors_or_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let file = lossy_stack(dir.path());
    let file = file.to_str().unwrap();
    let out = platform(&["render", "kubernetes", "--stack", file], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("service `web`, key `services.web.volumes`") && err.contains("host directory"),
        "{err}"
    );
    assert!(err.contains("key `services.web.restart`"), "{err}");
    assert!(out.stdout.is_empty());

    let out = platform(
        &["render", "kubernetes", "--stack", file, "--allow-lossy"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("warning: service `web`").count(), 2, "{err}");
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    assert!(kind_named(&docs, "Deployment", "web").is_some());
}

/// A secret value in a service's `command` or `exec` health check would stand in the pod spec as
/// plain text: exit 2 naming the service and key, and `--allow-lossy` does not render it either.
#[test]
fn secrets_in_commands_are_errors_even_when_lossy() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_stack(
        dir.path(),
        "leaky",
        r#"
[services.db]
image = "mariadb:11"
port = 3306
env = { MARIADB_ROOT_PASSWORD = "r00t-pw-1234" }
health = { exec = ["mariadb-admin", "ping", "--user=root", "--password=r00t-pw-1234"] }

[services.app]
image = "app:1"
command = ["--db-password", "r00t-pw-1234"]
"#,
    );
    let file = path.to_str().unwrap();
    for lossy in [false, true] {
        let mut args = vec!["render", "kubernetes", "--stack", file];
        if lossy {
            args.push("--allow-lossy");
        }
        let out = platform(&args, dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "lossy {lossy}: {err}");
        assert!(out.stdout.is_empty(), "lossy {lossy}: rendered anyway");
        assert!(
            err.contains("service `app`, key `services.app.command`"),
            "lossy {lossy}: {err}"
        );
        assert!(
            err.contains("service `db`, key `services.db.health.exec`"),
            "lossy {lossy}: {err}"
        );
        assert!(!err.contains("warning:"), "lossy {lossy}: {err}");
        assert!(!err.contains("r00t-pw-1234"), "lossy {lossy}: {err}");
    }
}

/// Bad `--scale` values and unknown services are usage errors (exit 2) that say what is wrong.
#[test]
fn bad_options_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let dev = repo().join("stacks/dev.toml");
    let dev = dev.to_str().unwrap();
    for (args, says) in [
        (vec!["--scale", "order-service"], "SERVICE=N"),
        (vec!["--scale", "order-service=x"], "number of replicas"),
        (vec!["--scale", "order-service=99"], "number of replicas"),
        (vec!["--scale", "nope=2"], "unknown service `nope`"),
        (vec!["--scale", "mariadb=2"], "`mariadb` cannot be scaled"),
        (vec!["--expose", "nope"], "unknown service `nope`"),
        (vec!["--namespace", "Bad_NS"], "invalid --namespace"),
        (vec!["--volume-size", "1 GB"], "invalid --volume-size"),
        (vec!["--ingress", "--load-balancer"], "cannot be used with"),
    ] {
        let mut all = vec!["render", "kubernetes", "--stack", dev];
        all.extend(&args);
        let out = platform(&all, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// `--out DIR` writes one file per object, ordered for `kubectl apply -f DIR`, with the same
/// documents as the stream on stdout; files of an earlier rendering that this one does not
/// write are removed, the user's own files stay.
#[test]
fn out_dir_writes_one_file_per_object() {
    let dir = tempfile::tempdir().unwrap();
    let dev = repo().join("stacks/dev.toml");
    let out_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let stale = out_dir.join("40-deployment-removed-service.yaml");
    std::fs::write(
        &stale,
        "metadata:\n  labels:\n    app.kubernetes.io/managed-by: platform\n",
    )
    .unwrap();
    let own = out_dir.join("99-mine.yaml");
    std::fs::write(&own, "kind: ConfigMap\n").unwrap();
    let out = platform(
        &[
            "render",
            "kubernetes",
            "--stack",
            dev.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stale.exists(), "the stale file was kept");
    std::fs::remove_file(&own).expect("the user's own file was removed");
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.contains(&"40-deployment-order-service.yaml".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"40-statefulset-mariadb.yaml".to_string()));
    assert!(names.contains(&"20-secret-order-service-env.yaml".to_string()));
    let joined: String = names
        .iter()
        .map(|n| format!("---\n{}", std::fs::read_to_string(out_dir.join(n)).unwrap()))
        .collect();
    let stdout = platform(
        &["render", "kubernetes", "--stack", dev.to_str().unwrap()],
        dir.path(),
    );
    let mut from_files = documents(&joined);
    let mut from_stdout = documents(&String::from_utf8(stdout.stdout).unwrap());
    let key = |v: &Value| format!("{}/{}", v["kind"], v["metadata"]["name"]);
    from_files.sort_by_key(key);
    from_stdout.sort_by_key(key);
    assert_eq!(from_files, from_stdout);
}

/// Every document of the rendered dev and full stacks (and of the Ingress/namespace variant)
/// validates against Kubernetes' OpenAPI schemas in strict mode (unknown fields rejected).
#[test]
fn manifests_validate_against_kubernetes_schemas() {
    let Some(python) = testkit::python_venv(&["kubernetes_validate"]) else {
        return;
    };
    let validate = python.with_file_name("kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    let ingress = Options {
        namespace: Some("shop".to_string()),
        exposure: Exposure::Ingress {
            host: None,
            class: None,
        },
        ..golden_options()
    };
    let mut files = Vec::new();
    for (name, options) in [
        ("dev", golden_options()),
        ("full", golden_options()),
        ("dev", ingress.clone()),
        ("full", ingress),
    ] {
        let yaml = render(&stack(name), &options);
        let path = dir.path().join(format!("{name}-{}.yaml", files.len()));
        std::fs::write(&path, &yaml).unwrap();
        files.push((path, documents(&yaml).len()));
    }
    let out = Command::new(&validate)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(files.iter().map(|(p, _)| p))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", validate.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}\n{}",
        stderr(&out)
    );
    // One INFO line per valid document: nothing was skipped.
    let documents: usize = files.iter().map(|(_, n)| n).sum();
    assert_eq!(
        report.matches(" passed for resource ").count(),
        documents,
        "{report}"
    );
}
