//! The Docker facade against the real engine: networks, volumes and a nisshi container on a
//! project-made network, probed over the Kafka protocol from outside; exec, logs, stats; and
//! the rule that nothing without our labels is touched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::StreamExt;
use platform::runtime::build::{Builder, Silent};
use platform::runtime::{ContainerSpec, LogOptions, MountSpec, RuntimeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::images::{assert_nisshi_binary, nisshi};
use crate::support::{eventually, runtime, unique_stack, with_stack, workspace};

/// Sends a Kafka ApiVersions (v0) request and returns the error code of the answer, which
/// must echo our correlation id.
async fn kafka_api_versions(addr: SocketAddr) -> Option<i16> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let client = b"platform-test";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // version 0
    body.extend_from_slice(&4242i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.ok()?;
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut size))
        .await
        .ok()?
        .ok()?;
    let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut answer).await.ok()?;
    let correlation = i32::from_be_bytes(answer[0..4].try_into().ok()?);
    assert_eq!(correlation, 4242);
    Some(i16::from_be_bytes(answer[4..6].try_into().ok()?))
}

/// nisshi in a FROM-scratch image runs on a project-made network with its data on a named
/// volume, answers Kafka ApiVersions on its container address, and the facade reads its
/// state, logs, stats and runs a command in it; `up`-style calls are idempotent and
/// everything is removed afterwards.
#[tokio::test]
async fn nisshi_container_lifecycle() {
    let rt = runtime().await;
    let builder = Builder::new(&rt, workspace());
    assert_nisshi_binary(&builder);
    let image = builder.build(&nisshi(), false, &Silent).await.unwrap().tag;
    let stack = unique_stack("rt");
    with_stack(&rt, &stack, || async {
        let network = format!("platform-{stack}");
        let volume = format!("platform-{stack}-nisshi-data");
        rt.ensure_network(&network, &stack).await.unwrap();
        rt.ensure_network(&network, &stack).await.unwrap(); // idempotent
        rt.ensure_volume(&volume, &stack).await.unwrap();
        rt.ensure_volume(&volume, &stack).await.unwrap();
        assert_eq!(
            rt.list_networks(Some(&stack)).await.unwrap(),
            vec![network.clone()]
        );
        assert_eq!(
            rt.list_volumes(Some(&stack)).await.unwrap(),
            vec![volume.clone()]
        );

        let name = format!("platform-{stack}-nisshi-1");
        rt.create_container(&ContainerSpec {
            name: name.clone(),
            image: image.clone(),
            stack: stack.clone(),
            service: "nisshi".into(),
            instance: 1,
            cmd: vec!["broker".into()],
            env: vec![
                ("LISTENER_URL".into(), "tcp://0.0.0.0:9092".into()),
                (
                    "ADVERTISED_LISTENER_URL".into(),
                    format!("tcp://{name}:9092"),
                ),
                ("STORAGE_ENGINE".into(), "sqlite://nisshi.db".into()),
            ],
            network: network.clone(),
            aliases: vec!["nisshi".into()],
            mounts: vec![MountSpec::Volume {
                name: volume.clone(),
                target: "/data".into(),
                read_only: false,
            }],
            memory_bytes: Some(256 << 20),
            ..Default::default()
        })
        .await
        .unwrap();
        rt.start_container(&name).await.unwrap();

        let info = rt.inspect_container(&name).await.unwrap();
        assert_eq!(
            (info.stack.as_str(), info.service.as_str(), info.instance),
            (stack.as_str(), "nisshi", 1)
        );
        let ip = info
            .addresses
            .get(&network)
            .cloned()
            .expect("an address on the stack network");
        let addr: SocketAddr = format!("{ip}:9092").parse().unwrap();
        let code = eventually(
            "nisshi to answer ApiVersions",
            Duration::from_secs(30),
            || async move { kafka_api_versions(addr).await },
        )
        .await;
        assert_eq!(code, 0);

        // The data went to the named volume (nisshi's SQLite file), owned by the image's user.
        let docker = bollard::Docker::connect_with_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        let mountpoint = docker.inspect_volume(&volume).await.unwrap().mountpoint;
        let db = std::path::Path::new(&mountpoint).join("nisshi.db");
        let meta = eventually("nisshi.db on the volume", Duration::from_secs(10), || {
            let db = db.clone();
            async move { std::fs::metadata(&db).ok() }
        })
        .await;
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(meta.uid(), platform::runtime::build::scratch::RUN_AS);
        let out = rt.exec(&name, &["/app/nisshi", "--version"]).await.unwrap();
        assert_eq!(out.exit_code, 0);
        assert!(out.stdout.contains("0.6.0"), "{out:?}");

        let listed = rt
            .list_containers(Some(&stack), Some("nisshi"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, "running");

        let stats = rt.stats(&name).await.unwrap();
        assert!(stats.memory_bytes > 0);
        assert_eq!(stats.memory_limit_bytes, 256 << 20);

        rt.stop_container(&name, Duration::from_secs(5))
            .await
            .unwrap();
        rt.stop_container(&name, Duration::from_secs(5))
            .await
            .unwrap(); // already stopped
        let info = rt.inspect_container(&name).await.unwrap();
        assert_eq!(info.state, "exited");
        let logs: Vec<_> = rt.logs(&name, &LogOptions::default()).collect().await;
        assert!(!logs.is_empty(), "nisshi writes at least one line");
        assert!(
            logs.iter()
                .all(|l| l.as_ref().is_ok_and(|l| l.timestamp.starts_with("20")))
        );

        rt.remove_container(&name).await.unwrap();
        rt.remove_container(&name).await.unwrap(); // already gone
        assert!(matches!(
            rt.inspect_container(&name).await,
            Err(RuntimeError::NotFound { .. })
        ));
    })
    .await;
    assert!(rt.list_networks(Some(&stack)).await.unwrap().is_empty());
    assert!(rt.list_volumes(Some(&stack)).await.unwrap().is_empty());
}

/// A container, network and volume without our labels are refused by every mutating call.
#[tokio::test]
async fn refuses_what_is_not_ours() {
    let rt = runtime().await;
    let builder = Builder::new(&rt, workspace());
    assert_nisshi_binary(&builder);
    let image = builder.build(&nisshi(), false, &Silent).await.unwrap().tag;
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let name = unique_stack("foreign");
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(image),
                labels: Some(HashMap::from([("someone".into(), "else".into())])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let not_ours = |r: Result<(), RuntimeError>| matches!(r, Err(RuntimeError::NotOurs { .. }));
    assert!(not_ours(rt.start_container(&name).await));
    assert!(not_ours(
        rt.stop_container(&name, Duration::from_secs(1)).await
    ));
    assert!(not_ours(rt.kill_container(&name, "SIGKILL").await));
    assert!(not_ours(rt.remove_container(&name).await));
    assert!(not_ours(rt.remove_volume(&name).await));
    assert!(not_ours(rt.ensure_volume(&name, "x").await));
    assert!(rt.exec(&name, &["true"]).await.is_err());
    // Still there, untouched.
    assert!(docker.inspect_container(&name, None).await.is_ok());
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .unwrap();
    docker
        .remove_volume(
            &name,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap();
}
