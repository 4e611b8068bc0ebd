//! Unit tests of the pure parts of the facade: the container create request.

use super::*;

fn spec() -> ContainerSpec {
    ContainerSpec {
        name: "platform-dev-api-gateway-1".into(),
        image: "platform/api-gateway:abc".into(),
        stack: "dev".into(),
        service: "api-gateway".into(),
        instance: 1,
        cmd: vec![],
        env: vec![("PORT".into(), "8080".into())],
        network: "platform-dev".into(),
        aliases: vec!["api-gateway".into()],
        ports: vec![PortSpec {
            host_ip: None,
            host_port: 18080,
            container_port: 8080,
        }],
        mounts: vec![MountSpec::Volume {
            name: "platform-dev-data".into(),
            target: "/data".into(),
            read_only: false,
        }],
        healthcheck: Some(HealthcheckSpec {
            command: vec!["/app/api-gateway".into(), "--probe".into()],
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            retries: 60,
            start_period: Duration::from_secs(60),
            start_interval: Duration::from_millis(250),
        }),
        memory_bytes: Some(64 << 20),
        cpus: Some(0.5),
        restart: Restart::OnFailure {
            max_retries: Some(5),
        },
        labels: std::collections::BTreeMap::from([(
            labels::SPEC_HASH.to_string(),
            "abc".to_string(),
        )]),
    }
}

/// The create request carries our labels, the network alias, port bindings, mounts, limits
/// and an exec-form health check in nanoseconds.
#[test]
fn create_body_carries_everything() {
    let body = container_body(&spec(), true);
    let labels = body.labels.clone().unwrap();
    assert_eq!(labels[labels::STACK], "dev");
    assert_eq!(labels[labels::SERVICE], "api-gateway");
    assert_eq!(labels[labels::INSTANCE], "1");
    assert_eq!(
        labels[labels::SPEC_HASH],
        "abc",
        "extra labels are merged in"
    );
    assert_eq!(body.env.clone().unwrap(), vec!["PORT=8080"]);
    assert_eq!(body.cmd, None, "an empty command keeps the image's");
    assert_eq!(body.exposed_ports.clone().unwrap(), vec!["8080/tcp"]);
    let host = body.host_config.clone().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("platform-dev"));
    assert_eq!(
        host.restart_policy,
        Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(5),
        }),
        "the stack's restart policy"
    );
    assert_eq!(
        labels[labels::RESTART],
        "on-failure:5",
        "kept in a label for faults to restore"
    );
    let binding = &host.port_bindings.unwrap()["8080/tcp"].clone().unwrap()[0];
    assert_eq!(binding.host_port.as_deref(), Some("18080"));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    let mount = &host.mounts.unwrap()[0];
    assert_eq!(mount.typ, Some(MountType::VOLUME));
    assert_eq!(mount.source.as_deref(), Some("platform-dev-data"));
    let hc = body.healthcheck.clone().unwrap();
    assert_eq!(hc.test.unwrap(), vec!["CMD", "/app/api-gateway", "--probe"]);
    assert_eq!(hc.interval, Some(500_000_000));
    assert_eq!(hc.start_period, Some(60_000_000_000));
    assert_eq!(hc.start_interval, Some(250_000_000));
    // An empty command switches the image's HEALTHCHECK off.
    let mut none = spec();
    none.healthcheck.as_mut().unwrap().command.clear();
    let hc = container_body(&none, true).healthcheck.unwrap();
    assert_eq!(hc.test.unwrap(), vec!["NONE"]);
    assert_eq!(hc.interval, None);
    // An engine without start intervals gets the real interval and retries (one exec per
    // interval, not per start interval: the CLI probes while Docker says starting), and no
    // start interval it would reject.
    let old = container_body(&spec(), false).healthcheck.unwrap();
    assert_eq!(
        (old.interval, old.retries, old.start_interval),
        (Some(500_000_000), Some(60), None)
    );
    let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
    assert_eq!(
        endpoints["platform-dev"].aliases.clone().unwrap(),
        vec!["api-gateway"]
    );
}

/// Port maps from inspect become sorted host/container pairs; unbound ports are skipped.
#[test]
fn ports_from_inspect() {
    let map: bollard::models::PortMap = HashMap::from([
        (
            "8080/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some("18080".into()),
            }]),
        ),
        ("9092/tcp".to_string(), None),
    ]);
    assert_eq!(
        ports_of(&map),
        vec![PortSpec {
            host_ip: Some("0.0.0.0".into()),
            host_port: 18080,
            container_port: 8080
        }]
    );
}

/// Every policy maps to Docker's name; on-failure without a limit retries forever (0).
#[test]
fn restart_policies_in_docker_form() {
    let cases = [
        (Restart::No, RestartPolicyNameEnum::NO, None),
        (
            Restart::OnFailure { max_retries: None },
            RestartPolicyNameEnum::ON_FAILURE,
            Some(0),
        ),
        (Restart::Always, RestartPolicyNameEnum::ALWAYS, None),
        (
            Restart::UnlessStopped,
            RestartPolicyNameEnum::UNLESS_STOPPED,
            None,
        ),
    ];
    for (restart, name, max) in cases {
        let p = restart_policy(restart);
        assert_eq!(p.name, Some(name), "{restart}");
        assert_eq!(p.maximum_retry_count, max, "{restart}");
    }
    // The label written at create time reads back as the same policy.
    for r in [
        Restart::No,
        Restart::Always,
        Restart::OnFailure {
            max_retries: Some(3),
        },
    ] {
        assert_eq!(Restart::parse(&r.to_string()), Ok(r));
    }
}

/// The dev stack's `probe` timing on both kinds of engine: the same interval and retries (one
/// exec per 10 s once healthy, unhealthy after three failures), the start interval only where
/// the engine takes it.
#[test]
fn health_timing_by_engine() {
    let h = HealthcheckSpec {
        command: vec!["/app/order-service".into(), "--probe".into()],
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        retries: 3,
        start_period: Duration::from_secs(120),
        start_interval: Duration::from_millis(500),
    };
    assert_eq!(
        engine_health_timing(&h, true),
        (Duration::from_secs(10), 3, Some(Duration::from_millis(500)))
    );
    assert_eq!(
        engine_health_timing(&h, false),
        (Duration::from_secs(10), 3, None)
    );
}
