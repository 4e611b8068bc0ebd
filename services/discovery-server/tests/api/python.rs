//! A third-party Eureka client from PyPI (py-eureka-client 0.13.3, in the
//! venv `.tools/venv` that install.sh creates) against our registry: it
//! registers and heartbeats, discovers a kit-based instance and calls it,
//! follows a new instance through `apps/delta` (XML, with Eureka's hash
//! code check), and our kit client discovers the Python instance.
//!
//! py-eureka-client registers with JSON but reads the registry as XML (it
//! sends no JSON `Accept` header and parses with ElementTree), so this also
//! proves our XML shapes.

use std::process::Stdio;
use std::time::Duration;

use kit::config::ServiceSpec;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use crate::helpers::{KitInstance, TestApp, eventually, spec};

static KIT_ECHO: ServiceSpec = spec("kit-echo");

/// The client, driven line by line over stdin/stdout.
const SCRIPT: &str = r#"
import asyncio, json, sys
import py_eureka_client.eureka_client as ec

def say(**kw):
    print(json.dumps(kw), flush=True)

async def main():
    url, port = sys.argv[1], int(sys.argv[2])
    client = ec.EurekaClient(
        eureka_server=url, app_name="py-service", instance_id="py-1",
        instance_host="127.0.0.1", instance_ip="127.0.0.1", instance_port=port,
        renewal_interval_in_secs=1, duration_in_secs=3, metadata={"lang": "python"})
    await client.start()
    # Discovery: call the kit-based instance's /info through the registry.
    info = await client.do_service("KIT-ECHO", "/info", return_type="json", prefer_ip=True)
    say(event="started", info=info)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "" or line == "stop":
            break
        cmd, app, count = line.split()
        # Polls its own view for up to 20 s (the test waits 30 s for the answer).
        for _ in range(200):
            ups = client.applications.get_application(app).up_instances
            if len(ups) == int(count):
                break
            await asyncio.sleep(0.1)
        say(event="seen", app=app, ids=sorted(i.instanceId for i in ups),
            ports=sorted(i.port.port for i in ups))
    await client.stop()
    say(event="stopped")

asyncio.run(main())
"#;

async fn next_event(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the Python client answers within 30 s")
        .unwrap()
        .expect("the Python client is still running");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// py-eureka-client registers, heartbeats, discovers and calls a kit-based instance, follows deltas, and is discovered by our kit client.
#[tokio::test]
async fn py_eureka_client_interoperates() {
    interoperate(None).await;
}

/// The same with the registry's writes behind HTTP Basic: py-eureka-client takes the credentials
/// from the userinfo of its `eureka_server` URL, as Spring clients from their defaultZone.
#[tokio::test]
async fn py_eureka_client_interoperates_with_credentials() {
    interoperate(Some(("eureka", "py-s3cret"))).await;
}

async fn interoperate(credentials: Option<(&str, &str)>) {
    let Some(python) = testkit::python_venv(&["py_eureka_client.eureka_client"]) else {
        return;
    };
    let app = TestApp::start_with(kit::clock::Clock::System, |c| {
        if let Some((user, password)) = credentials {
            c.common.registry_username = Some(user.into());
            c.common.registry_password = Some(password.to_string().into());
        }
    })
    .await;
    // Clients' registry URL: with the credentials in its userinfo when the registry wants them.
    let with_userinfo = |url: &str| match credentials {
        Some((user, password)) => url.replacen("://", &format!("://{user}:{password}@"), 1),
        None => url.to_string(),
    };
    let registry_url = with_userinfo(&app.url);
    let kit = KitInstance::start(&KIT_ECHO, &registry_url, Duration::from_secs(1)).await;
    eventually(
        "the kit instance to register",
        Duration::from_secs(5),
        || async { app.instance_count() == 1 },
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(format!("{registry_url}/eureka/"))
        .arg("9099")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // Registered (JSON) and discovered the kit instance (XML), then called it.
    let started = next_event(&mut lines).await;
    assert_eq!(started["event"], "started", "{started}");
    assert_eq!(started["info"]["service"], "kit-echo", "{started}");
    assert_eq!(started["info"]["instanceId"], kit.instance_id.as_str());
    let (status, v) = app.get_json(&app.eureka("apps/PY-SERVICE/py-1")).await;
    assert_eq!(status, 200);
    let py = &v["instance"];
    assert_eq!(py["status"], "UP");
    assert_eq!(py["port"]["$"], 9099);
    assert_eq!(py["metadata"]["lang"], "python");
    assert_eq!(py["leaseInfo"]["durationInSecs"], 3);
    let registered_at = py["leaseInfo"]["registrationTimestamp"].as_u64().unwrap();

    // Heartbeats arrive.
    eventually(
        "a heartbeat from the Python client",
        Duration::from_secs(5),
        || async {
            let (_, v) = app.get_json(&app.eureka("apps/PY-SERVICE/py-1")).await;
            v["instance"]["leaseInfo"]["lastRenewalTimestamp"].as_u64() > Some(registered_at + 500)
        },
    )
    .await;

    // Our kit client discovers the Python instance.
    let found = kit.discovery.instances("py-service").await.unwrap();
    let found = if found.is_empty() {
        eventually(
            "kit discovery of py-service",
            Duration::from_secs(3),
            || async { !kit.discovery.cached("py-service").is_empty() },
        )
        .await;
        kit.discovery.cached("py-service")
    } else {
        found
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, "py-1");
    assert_eq!(found[0].base_url(), "http://127.0.0.1:9099");
    assert_eq!(found[0].metadata["lang"], "python");

    // A second kit-echo instance reaches the Python client through a delta.
    let full_fetches = || async {
        let m = app.metrics().await;
        m.lines()
            .filter(|l| {
                l.starts_with("http_requests_total") && l.contains("route=\"/eureka/apps/\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let fetches_before = full_fetches().await;
    let second = KitInstance::start(&KIT_ECHO, &registry_url, Duration::from_secs(1)).await;
    stdin.write_all(b"wait KIT-ECHO 2\n").await.unwrap();
    let seen = next_event(&mut lines).await;
    assert_eq!(seen["event"], "seen");
    let mut want = vec![kit.instance_id.clone(), second.instance_id.clone()];
    want.sort();
    assert_eq!(seen["ids"], serde_json::json!(want), "{seen}");
    let deltas = app.metrics().await;
    assert!(
        deltas.contains("route=\"/eureka/apps/delta\""),
        "the client polled deltas"
    );
    assert_eq!(
        full_fetches().await,
        fetches_before,
        "the delta merged and its apps__hashcode matched: no full fetch needed"
    );

    // A status override reaches it too: the out-of-service instance is no longer offered. The
    // client's own loop waits (polling its view, which its delta fetch every heartbeat updates)
    // until it offers one instance.
    let mut put = app.http.put(app.eureka(&format!(
        "apps/KIT-ECHO/{}/status?value=OUT_OF_SERVICE",
        second.instance_id
    )));
    if let Some((user, password)) = credentials {
        put = put.basic_auth(user, Some(password));
    }
    let res = put.send().await.unwrap();
    assert_eq!(res.status(), 200);
    stdin.write_all(b"wait KIT-ECHO 1\n").await.unwrap();
    let seen = next_event(&mut lines).await;
    assert_eq!(
        seen["ids"],
        serde_json::json!([kit.instance_id.clone()]),
        "{seen}"
    );

    // Stopping deregisters.
    stdin.write_all(b"stop\n").await.unwrap();
    let stopped = next_event(&mut lines).await;
    assert_eq!(stopped["event"], "stopped");
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let (status, _) = app.get_json(&app.eureka("apps/PY-SERVICE/py-1")).await;
    assert_eq!(status, 404, "deregistered");
    second.stop().await;
    kit.stop().await;
}
