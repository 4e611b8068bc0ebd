//! The MariaDB recipe for real: debootstrap-made base imported into Docker, entrypoint on top.
//! A container from it initialises its data directory on a named volume, creates the database
//! and user from the environment, and keeps the data when the container is replaced.

use std::time::Duration;

use platform::runtime::build::{Builder, ImageState, Silent};
use platform::runtime::{ContainerSpec, Health, HealthcheckSpec, MountSpec, Runtime};
use platform::stack::Recipe;

use crate::support::{eventually, runtime, unique_stack, with_stack, workspace};

fn spec(stack: &str, image: &str, index: u32) -> ContainerSpec {
    ContainerSpec {
        name: format!("platform-{stack}-mariadb-{index}"),
        image: image.to_string(),
        stack: stack.to_string(),
        service: "mariadb".into(),
        instance: index,
        env: vec![(
            "MARIADB_DATABASES".into(),
            "shop:shopper:s3cr'et,audit:auditor:other".into(),
        )],
        network: format!("platform-{stack}"),
        aliases: vec!["mariadb".into()],
        mounts: vec![MountSpec::Volume {
            name: format!("platform-{stack}-mariadb-data"),
            target: "/var/lib/mysql".into(),
            read_only: false,
        }],
        healthcheck: Some(HealthcheckSpec {
            command: vec![
                "/usr/bin/mariadb-admin".into(),
                "--protocol=tcp".into(),
                "--host=127.0.0.1".into(),
                "--user=healthcheck".into(),
                "ping".into(),
            ],
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(3),
            retries: 240,
            start_period: Duration::ZERO,
            start_interval: Duration::from_millis(500),
        }),
        memory_bytes: Some(512 << 20),
        ..Default::default()
    }
}

async fn sql(
    rt: &Runtime,
    container: &str,
    user: &str,
    password: &str,
    db: &str,
    query: &str,
) -> (i64, String) {
    let out = rt
        .exec(
            container,
            &[
                "mariadb",
                "--protocol=tcp",
                "-h127.0.0.1",
                "-u",
                user,
                &format!("-p{password}"),
                "-N",
                "-B",
                db,
                "-e",
                query,
            ],
        )
        .await
        .unwrap();
    (out.exit_code, format!("{}{}", out.stdout, out.stderr))
}

async fn start_healthy(rt: &Runtime, stack: &str, image: &str, index: u32) -> String {
    let s = spec(stack, image, index);
    rt.create_container(&s).await.unwrap();
    rt.start_container(&s.name).await.unwrap();
    let name = s.name.clone();
    eventually("mariadb to be healthy", Duration::from_secs(120), || {
        let name = name.clone();
        async move {
            let info = rt.inspect_container(&name).await.unwrap();
            assert_ne!(info.state, "exited", "mariadb exited: {info:?}");
            (rt.health(&name).await.unwrap() == Some(Health::Healthy)).then_some(())
        }
    })
    .await;
    s.name
}

/// Builds the MariaDB image (debootstrap on the first run, cached afterwards), then proves a
/// container initialises, provisions per-service databases and users (a password with a
/// quote included), keeps each user to its own database, and keeps data across a replaced
/// container on the same named volume.
#[tokio::test]
async fn mariadb_initialises_provisions_and_persists() {
    let rt = runtime().await;
    let builder = Builder::new(&rt, workspace());
    let built = builder
        .build(&Recipe::Mariadb, false, &Silent)
        .await
        .unwrap();
    eprintln!(
        "mariadb image {} ({}, {:.1}s)",
        built.tag,
        if built.built { "built" } else { "cached" },
        built.seconds
    );
    assert_eq!(
        builder.status(&Recipe::Mariadb).await.unwrap().state,
        ImageState::Current
    );
    let again = builder
        .build(&Recipe::Mariadb, false, &Silent)
        .await
        .unwrap();
    assert!(!again.built, "an unchanged recipe must not rebuild");

    let stack = unique_stack("mariadb");
    with_stack(&rt, &stack, || async {
        rt.ensure_network(&format!("platform-{stack}"), &stack)
            .await
            .unwrap();
        rt.ensure_volume(&format!("platform-{stack}-mariadb-data"), &stack)
            .await
            .unwrap();
        let first = start_healthy(&rt, &stack, &built.tag, 1).await;
        let (code, out) = sql(
            &rt,
            &first,
            "shopper",
            "s3cr'et",
            "shop",
            "CREATE TABLE t (x INT); INSERT INTO t VALUES (42);",
        )
        .await;
        assert_eq!(code, 0, "{out}");
        // Each user is confined to its own database.
        let (code, out) = sql(&rt, &first, "shopper", "s3cr'et", "audit", "SELECT 1").await;
        assert_ne!(code, 0, "shopper must not reach audit: {out}");
        let (code, out) = sql(&rt, &first, "shopper", "wrong", "shop", "SELECT 1").await;
        assert_ne!(code, 0, "a wrong password must fail: {out}");

        // Replace the container; the volume keeps the data and the provisioning.
        rt.remove_container(&first).await.unwrap();
        let second = start_healthy(&rt, &stack, &built.tag, 2).await;
        let (code, out) = sql(
            &rt,
            &second,
            "shopper",
            "s3cr'et",
            "shop",
            "SELECT x FROM t",
        )
        .await;
        assert_eq!((code, out.trim()), (0, "42"));
        let logs = rt
            .exec(&second, &["cat", "/var/lib/mysql/.platform-provisioned"])
            .await
            .unwrap();
        assert_eq!(logs.stdout.len(), 64, "provisioning marker is a sha256");
    })
    .await;
}
