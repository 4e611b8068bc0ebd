//! The dev stack's life through the `platform` binary, checked against Docker's own view.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::docker::{self, Owned};
use e2e::shop::{Shop, instance_urls};
use e2e::{Platform, TestStack};
use serde_json::Value;

use crate::{eventually, setup};

/// `up` from nothing: a cold MariaDB image build (debootstrap, ~2.5 min on 2 cores) plus the
/// service images and the start itself; a warm `up` takes 8-20 s (BENCHMARKS.md, platform).
const UP_LIMIT: Duration = Duration::from_secs(600);
/// `up` of a stack that is already up (nothing to create).
const UP_AGAIN_LIMIT: Duration = Duration::from_secs(120);
/// `smoke` (its own `--timeout` is 120 s).
const SMOKE_LIMIT: Duration = Duration::from_secs(150);
/// `scale` (its own `--timeout` is 150 s).
const SCALE_LIMIT: Duration = Duration::from_secs(180);
/// Read commands (`status`, `token`).
const READ_LIMIT: Duration = Duration::from_secs(30);
/// `down --volumes`.
const DOWN_LIMIT: Duration = Duration::from_secs(180);
/// How many orders the spread check places, one at a time.
const ORDERS: u64 = 30;
/// The service that is scaled and spread over.
const ORDER_SERVICE: &str = "order-service";
/// Where stock for the spread check is set.
const INVENTORY_SERVICE: &str = "inventory-service";
/// Instances `scale` runs.
const INSTANCES: usize = 3;

/// `up` brings the whole dev stack up and a second `up` changes nothing; `smoke` passes;
/// `scale order-service 3` leaves three registered instances and the gateway sends orders to
/// each of them; `down --volumes` leaves no container, network or volume with the stack's label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_stack_up_smoke_scale_spread_down() {
    let (platform, docker) = setup().await;
    let mut stack = TestStack::dev_copy(&platform, "life").unwrap();
    eprintln!(
        "stack {} ({}), gateway on {}",
        stack.name,
        stack.file.display(),
        stack.gateway_url()
    );
    if let Err(e) = walk(&platform, &docker, &mut stack).await {
        panic!("{e:#}");
    }
}

async fn walk(
    platform: &Platform,
    docker: &bollard::Docker,
    stack: &mut TestStack,
) -> anyhow::Result<()> {
    let s = stack.arg().to_string();
    let started = Instant::now();

    // ---- up: every service of the file runs, on one network, with its volumes
    let up = platform
        .run(&["up", "--stack", &s], UP_LIMIT)
        .await?
        .success()?;
    eprintln!("timing: up {:.1}s", up.seconds());
    anyhow::ensure!(
        up.stdout.contains(&format!("stack {} is up", stack.name)),
        "up printed: {}",
        up.stdout
    );
    let first = docker::owned(docker, &stack.name).await?;
    check_up(stack, &first)?;

    // ---- up again: converges, duplicates nothing, keeps every container
    let again = platform
        .run(&["up", "--stack", &s], UP_AGAIN_LIMIT)
        .await?
        .success()?;
    eprintln!("timing: up again {:.1}s", again.seconds());
    let second = docker::owned(docker, &stack.name).await?;
    anyhow::ensure!(
        second == first,
        "a second `up` changed what runs:\nbefore {first:#?}\nafter {second:#?}"
    );

    // ---- smoke: the scripted end-to-end check passes, with a JUnit report
    let junit = stack.file.with_extension("junit.xml");
    let junit_arg = junit.display().to_string();
    let smoke = platform
        .run(
            &[
                "smoke",
                "--stack",
                &s,
                "--timeout",
                "120s",
                "--junit",
                &junit_arg,
            ],
            SMOKE_LIMIT,
        )
        .await?
        .success()?;
    eprintln!("timing: smoke {:.1}s", smoke.seconds());
    anyhow::ensure!(smoke.stdout.contains("smoke passed"), "{}", smoke.stdout);
    let report = std::fs::read_to_string(&junit).context("read the smoke's JUnit report")?;
    anyhow::ensure!(
        report.contains("failures=\"0\"") && report.contains("tests=\"7\""),
        "{report}"
    );

    // ---- scale: three order-service instances, each healthy and UP in the registry
    let scale = platform
        .run(
            &[
                "scale",
                ORDER_SERVICE,
                &INSTANCES.to_string(),
                "--timeout",
                "150s",
                "--json",
                "--stack",
                &s,
            ],
            SCALE_LIMIT,
        )
        .await?
        .success()?;
    eprintln!(
        "timing: scale {ORDER_SERVICE} 1 -> {INSTANCES} {:.1}s",
        scale.seconds()
    );
    let view = scale.json()?;
    anyhow::ensure!(
        view["started"].as_array().map(Vec::len) == Some(INSTANCES - 1),
        "scale --json: {view}"
    );
    let owned = docker::owned(docker, &stack.name).await?;
    let running: Vec<_> = owned
        .of(ORDER_SERVICE)
        .into_iter()
        .filter(|c| c.state == "running")
        .collect();
    anyhow::ensure!(running.len() == INSTANCES, "{owned:#?}");
    let status = eventually(
        "status: three order-service instances UP in the registry, no drift",
        Duration::from_secs(60),
        || status_settled(platform, &s),
    )
    .await;

    // ---- spread: the gateway sends orders to each of the three
    spread(platform, stack, &status).await?;

    // ---- down --volumes: nothing with the stack's label is left
    let down = platform
        .run(&["down", "--volumes", "--stack", &s], DOWN_LIMIT)
        .await?
        .success()?;
    eprintln!("timing: down --volumes {:.1}s", down.seconds());
    let left = docker::owned(docker, &stack.name).await?;
    anyhow::ensure!(
        left.is_empty(),
        "`down --volumes` left objects labelled platform.stack={}: {left:#?}",
        stack.name
    );
    stack.disarm();
    eprintln!("timing: whole walk {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// After `up`: one running container per service (the file's instance counts are 1), named
/// `platform-<stack>-<service>-1`, one network, and the file's named volumes.
fn check_up(stack: &TestStack, owned: &Owned) -> anyhow::Result<()> {
    let services: BTreeSet<&str> = owned
        .containers
        .iter()
        .map(|c| c.service.as_str())
        .collect();
    let wanted: BTreeSet<&str> = stack.services().iter().map(String::as_str).collect();
    anyhow::ensure!(
        services == wanted,
        "services {services:?}, wanted {wanted:?}"
    );
    anyhow::ensure!(
        owned.containers.len() == wanted.len(),
        "one container per service: {:#?}",
        owned.containers
    );
    for c in &owned.containers {
        anyhow::ensure!(c.state == "running", "{} is {}", c.name, c.state);
        anyhow::ensure!(
            c.name == format!("platform-{}-{}-1", stack.name, c.service) && c.instance == 1,
            "unexpected container {c:?}"
        );
    }
    anyhow::ensure!(
        owned.networks == vec![format!("platform-{}", stack.name)],
        "networks {:?}",
        owned.networks
    );
    let volumes: Vec<String> = stack
        .volumes()
        .iter()
        .map(|v| format!("platform-{}-{v}", stack.name))
        .collect();
    anyhow::ensure!(owned.volumes == volumes, "volumes {:?}", owned.volumes);
    Ok(())
}

/// `platform status --json` once every order-service instance is UP and nothing drifts.
async fn status_settled(platform: &Platform, stack: &str) -> anyhow::Result<Option<Value>> {
    let run = platform
        .run(&["status", "--json", "--stack", stack], READ_LIMIT)
        .await?
        .success()?;
    let view = run.json()?;
    let containers = view["containers"].as_array().context("no containers")?;
    let up = containers
        .iter()
        .filter(|c| {
            c["service"] == ORDER_SERVICE
                && c["state"] == "running"
                && c["registered"]["status"] == "UP"
        })
        .count();
    let drift = view["drift"].as_array().map_or(0, Vec::len);
    if up == INSTANCES && drift == 0 && view["registry"]["reachable"] == true {
        Ok(Some(view))
    } else {
        anyhow::bail!(
            "{up} order-service instances UP, {drift} drift: {}",
            view["drift"]
        )
    }
}

/// Places [`ORDERS`] orders through the gateway and proves two ways that every order-service
/// instance got some: the gateway's per-instance request counts (`/admin/upstreams`) and each
/// instance's own count of placed orders (`/metrics`), which together must add up to the orders.
async fn spread(platform: &Platform, stack: &TestStack, status: &Value) -> anyhow::Result<()> {
    let token = e2e::shop::token(platform, stack, &[], READ_LIMIT).await?;
    let shop = Shop::new(&stack.gateway_url(), &token)?;

    // The gateway learns instances from the registry's watch: wait until it balances over three.
    eventually(
        "the gateway balancing over three order-service instances",
        Duration::from_secs(30),
        || {
            let shop = &shop;
            async move {
                let n = shop.upstream_requests(ORDER_SERVICE).await?.len();
                anyhow::Ok((n == INSTANCES).then_some(()))
            }
        },
    )
    .await;

    let inventory = instance_urls(status, INVENTORY_SERVICE, stack.port_of(INVENTORY_SERVICE)?);
    let sku = format!(
        "{}-{}",
        stack.name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    match inventory.values().next() {
        Some(base) => shop.offer(base, &sku, ORDERS + 5).await?,
        None => anyhow::bail!(
            "the host cannot reach container addresses here (route {}), so the test cannot set \
             stock through inventory-service's admin API",
            status["route"]
        ),
    }
    let orders = instance_urls(status, ORDER_SERVICE, stack.port_of(ORDER_SERVICE)?);
    anyhow::ensure!(
        orders.len() == INSTANCES,
        "order-service instances: {orders:?}"
    );

    let gateway_before = shop.upstream_requests(ORDER_SERVICE).await?;
    let mut placed_before = BTreeMap::new();
    for (name, base) in &orders {
        placed_before.insert(name.clone(), shop.placed_orders(base).await?);
    }
    let t = Instant::now();
    for n in 0..ORDERS {
        shop.place_order(&sku)
            .await
            .with_context(|| format!("order {} of {ORDERS}", n + 1))?;
    }
    eprintln!(
        "timing: {ORDERS} orders through the gateway {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let gateway_after = shop.upstream_requests(ORDER_SERVICE).await?;
    let mut placed = BTreeMap::new();
    for (name, base) in &orders {
        let after = shop.placed_orders(base).await?;
        placed.insert(name.clone(), after - placed_before[name]);
    }
    let sent: BTreeMap<String, u64> = gateway_after
        .iter()
        .map(|(id, after)| {
            let before = gateway_before.get(id).copied().unwrap_or(0);
            (id.clone(), after - before)
        })
        .collect();
    eprintln!("spread: gateway requests per instance {sent:?}");
    eprintln!("spread: orders placed per instance {placed:?}");
    anyhow::ensure!(
        placed.values().sum::<u64>() == ORDERS,
        "the instances placed {placed:?}, not {ORDERS} orders in all"
    );
    anyhow::ensure!(
        placed.values().all(|&n| n > 0),
        "an order-service instance placed no order: {placed:?}"
    );
    anyhow::ensure!(
        sent.len() == INSTANCES && sent.values().all(|&n| n > 0),
        "the gateway did not send to every instance: {sent:?}"
    );
    anyhow::ensure!(
        sent.values().sum::<u64>() >= ORDERS,
        "the gateway counted fewer requests than orders: {sent:?}"
    );
    // Both views name the same instances: the registry's instance id starts with the container.
    for name in placed.keys() {
        anyhow::ensure!(
            sent.keys().any(|id| id.starts_with(&format!("{name}:"))),
            "container {name} is not among the gateway's instances {sent:?}"
        );
    }
    Ok(())
}
