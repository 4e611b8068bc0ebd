//! `platform up` / `platform down` against the real engine with a small stack of the images
//! that exist today (nisshi and MariaDB): dependency order and health waits, idempotent
//! re-runs, replacing only what changed, cleanup after a failed start, and `down --volumes`
//! leaving nothing with the stack's label.

use std::path::Path;
use std::time::Duration;

use platform::commands::Global;
use platform::commands::down::{self, DownArgs};
use platform::commands::up::{self, UpArgs};
use platform::stack::StackFile;

use crate::support::{cleanup, runtime, unique_stack, with_stack};

fn stack_text(name: &str, broker_extra_env: &str, broker_command: &str) -> String {
    format!(
        r#"
[stack]
name = "{name}"

[services.broker]
build = {{ recipe = "nisshi" }}
command = [{broker_command}]
port = 9092
volumes = ["broker-data:/data"]
health = {{ tcp = 9092, interval = "200ms", retries = 100 }}
depends_on = {{ db = "healthy" }}

[services.broker.env]
LISTENER_URL = "tcp://0.0.0.0:${{self.port}}"
ADVERTISED_LISTENER_URL = "tcp://${{self.host}}:${{self.port}}"
STORAGE_ENGINE = "sqlite://nisshi.db"
{broker_extra_env}

[services.db]
build = {{ recipe = "mariadb" }}
port = 3306
volumes = ["db-data:/var/lib/mysql"]
health = {{ exec = ["/usr/bin/mariadb-admin", "--protocol=tcp", "--host=127.0.0.1", "--user=healthcheck", "ping"], interval = "500ms", retries = 240 }}
env = {{ MARIADB_DATABASES = "app:app:app-secret" }}
"#
    )
}

fn global(file: &Path) -> Global {
    Global {
        json: false,
        stack: file.display().to_string(),
        verbose: 0,
    }
}

fn up_args() -> UpArgs {
    UpArgs {
        services: vec![],
        build: false,
        timeout: Duration::from_secs(120),
        keep_on_failure: false,
        publish_address: None,
    }
}

async fn started_at(name: &str) -> String {
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let c = docker.inspect_container(name, None).await.unwrap();
    c.state.unwrap().started_at.unwrap()
}

/// Starts db then broker (waiting for MariaDB's health before nisshi), converges on a re-run
/// without restarting anything, replaces only the changed service, and `down --volumes`
/// removes every container, the network and the volumes.
#[tokio::test]
async fn up_is_ordered_idempotent_and_down_cleans_up() {
    let rt = runtime().await;
    let name = unique_stack("up");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    std::fs::write(&file, stack_text(&name, "", "\"broker\"")).unwrap();
    let g = global(&file);
    with_stack(&rt, &name, || async {
        up::run(&g, up_args()).await.unwrap();
        let containers = rt.list_containers(Some(&name), None).await.unwrap();
        let names: Vec<_> = containers
            .iter()
            .map(|c| (c.service.as_str(), c.state.as_str()))
            .collect();
        assert_eq!(names, vec![("broker", "running"), ("db", "running")]);
        let broker = format!("platform-{name}-broker-1");
        let db = format!("platform-{name}-db-1");
        // The broker started only after the database was healthy.
        assert!(started_at(&broker).await > started_at(&db).await);

        let (b1, d1) = (started_at(&broker).await, started_at(&db).await);
        up::run(&g, up_args()).await.unwrap();
        assert_eq!(
            (started_at(&broker).await, started_at(&db).await),
            (b1.clone(), d1.clone()),
            "a re-run restarts nothing"
        );

        std::fs::write(
            &file,
            stack_text(&name, "CLUSTER_ID = \"changed\"", "\"broker\""),
        )
        .unwrap();
        up::run(&g, up_args()).await.unwrap();
        assert_ne!(
            started_at(&broker).await,
            b1,
            "the changed service is replaced"
        );
        assert_eq!(started_at(&db).await, d1, "the unchanged one is kept");

        let stack = StackFile::at(file.clone()).load().unwrap();
        let view = down::down(
            &rt,
            &stack,
            &DownArgs {
                volumes: true,
                timeout: Duration::from_secs(5),
            },
        )
        .await
        .unwrap();
        assert_eq!(view.containers.len(), 2);
        assert_eq!(view.volumes.len(), 2);
        assert!(
            rt.list_containers(Some(&name), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(rt.list_networks(Some(&name)).await.unwrap().is_empty());
        assert!(rt.list_volumes(Some(&name)).await.unwrap().is_empty());
    })
    .await;
}

/// A service that exits during start fails `up` with a clear error, and what that run created
/// (containers, network, volumes) is removed again.
#[tokio::test]
async fn failed_up_removes_what_it_created() {
    let rt = runtime().await;
    let name = unique_stack("upfail");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    // nisshi rejects an unknown subcommand and exits.
    std::fs::write(&file, stack_text(&name, "", "\"no-such-subcommand\"")).unwrap();
    let g = global(&file);
    let err = up::run(&g, up_args()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("broker-1") && text.contains("exited"),
        "{text}"
    );
    assert!(
        rt.list_containers(Some(&name), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(rt.list_networks(Some(&name)).await.unwrap().is_empty());
    assert!(rt.list_volumes(Some(&name)).await.unwrap().is_empty());
    cleanup(&rt, &name).await;
}

/// A published host port that another process holds fails `up` with a conflict that says so
/// and how to fix it, and nothing of the run is left behind.
#[tokio::test]
async fn taken_host_port_is_a_clear_error() {
    let rt = runtime().await;
    let name = unique_stack("port");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    let text = format!(
        "[stack]\nname = \"{name}\"\n[services.broker]\nbuild = {{ recipe = \"nisshi\" }}\n\
         command = [\"broker\"]\nports = [\"127.0.0.1:{port}:9092\"]\n"
    );
    std::fs::write(&file, text).unwrap();
    let err = up::run(&global(&file), up_args()).await.unwrap_err();
    assert!(err.to_string().contains("address already in use"), "{err}");
    assert!(
        err.hint().unwrap_or_default().contains("host port"),
        "{:?}",
        err.hint()
    );
    assert!(
        rt.list_containers(Some(&name), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(rt.list_networks(Some(&name)).await.unwrap().is_empty());
    drop(holder);
    cleanup(&rt, &name).await;
}

/// Instances follow the stack file: three containers named `-1..-3` with the per-instance
/// environment resolved, and lowering the count removes the surplus without touching the rest.
#[tokio::test]
async fn instance_count_converges() {
    let rt = runtime().await;
    let name = unique_stack("inst");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    let text = |n: u32| {
        format!(
            "[stack]\nname = \"{name}\"\n[services.broker]\nbuild = {{ recipe = \"nisshi\" }}\n\
             command = [\"broker\"]\nport = 9092\ninstances = {n}\n\
             health = {{ tcp = 9092, interval = \"200ms\" }}\n\
             env = {{ ADVERTISED_LISTENER_URL = \"tcp://${{self.host}}:${{self.port}}\", CLUSTER_ID = \"${{self.id}}\", STORAGE_ENGINE = \"sqlite://nisshi.db\" }}\n"
        )
    };
    std::fs::write(&file, text(3)).unwrap();
    let g = global(&file);
    with_stack(&rt, &name, || async {
        up::run(&g, up_args()).await.unwrap();
        let containers = rt
            .list_containers(Some(&name), Some("broker"))
            .await
            .unwrap();
        let names: Vec<_> = containers.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            names,
            (1..=3)
                .map(|i| format!("platform-{name}-broker-{i}"))
                .collect::<Vec<_>>()
        );
        let first = names[0].clone();
        let before = started_at(&first).await;
        let docker = bollard::Docker::connect_with_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        let env = docker
            .inspect_container(&names[1], None)
            .await
            .unwrap()
            .config
            .unwrap()
            .env
            .unwrap();
        assert!(
            env.contains(&format!("ADVERTISED_LISTENER_URL=tcp://{}:9092", names[1])),
            "{env:?}"
        );
        assert!(env.contains(&"CLUSTER_ID=broker-2".to_string()), "{env:?}");

        std::fs::write(&file, text(1)).unwrap();
        up::run(&g, up_args()).await.unwrap();
        let left = rt
            .list_containers(Some(&name), Some("broker"))
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, first);
        assert_eq!(started_at(&first).await, before, "instance 1 is kept");
    })
    .await;
}
