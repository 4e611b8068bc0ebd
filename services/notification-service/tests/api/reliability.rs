//! The event path under load and broker trouble (issue 10): real MariaDB, the real broker
//! (testkit: nisshi, or `TESTKIT_BROKER=tansu`), order-service's binary and this service
//! in-process. Each test ends with every accepted order notified exactly once and the group's
//! lag, read from the broker, back at 0.
//!
//! The 120 s load test is in nextest's `long-load` group (`.config/nextest.toml`) so it does not
//! share the two cores with other tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_lag::BrokerClient;
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::helpers::{Infra, Publisher, TestApp, WAIT, event, poll_until};
use crate::order_flow::{OrderFlow, post_order};

/// What a paced order stream did.
#[derive(Debug, Default)]
struct Paced {
    accepted: Vec<String>,
    sent: u64,
    refused: u64,
}

/// Posts `rate` orders a second (open loop: a request leaves every 1/rate s whatever the
/// answers do, at most `max_in_flight` at once) until `stop` or `duration`.
fn paced_orders(
    base: String,
    rate: u32,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Paced> {
    const MAX_IN_FLIGHT: usize = 64;
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build()
            .unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let end = tokio::time::Instant::now() + duration;
        let mut sent = 0;
        let mut tasks = tokio::task::JoinSet::new();
        while tokio::time::Instant::now() < end && !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let permit = slots.clone().acquire_owned().await.unwrap();
            let (http, base, accepted, refused) = (
                http.clone(),
                base.clone(),
                accepted.clone(),
                refused.clone(),
            );
            sent += 1;
            tasks.spawn(async move {
                match post_order(&http, &base).await {
                    Some(n) => accepted.lock().push(n),
                    None => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let accepted = accepted.lock().clone();
        Paced {
            accepted,
            sent,
            refused: refused.load(Ordering::Relaxed),
        }
    })
}

/// 200 orders a second for 120 s through order-service: every accepted order is notified
/// exactly once, no group session timed out, the consumer was never rebuilt, and the group's
/// lag on the broker is 0 within 10 s of the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_200_orders_per_second_for_120_s() {
    // Runs against the platform's broker (kafka-broker, testkit's default). On nisshi 0.6.0
    // (TESTKIT_BROKER=nisshi) it is a known failure of that broker, kept and reported rather than
    // hidden (issue 10): run it there with RELIABILITY_SUSTAINED=1. Measured on 2026-12-07 (debug build, nisshi 0.6.0, 2 cores):
    // 22,058 orders accepted, the consumer received 3,873 and then nothing for 7 minutes, 13
    // rebuilds. Cause (the README's "nisshi 0.6.0 under sustained load", pinned in
    // `nisshi_fetch.rs`): nisshi reads each fetched record's headers with a scan of every header
    // it holds (its `header` table has no index), and with librdkafka's default fetch sizes one
    // fetch made thousands of such reads and never answered. `--fetch-max-bytes` (64 KiB) makes
    // fetches answer again, but at about 23 records/s the consumer still falls behind 200/s.
    // With the missing index created in the broker's database the test passed (23,019 orders,
    // lag 0 within 0.3 s). kafka-broker, which replaced nisshi in the dev stack, passes it.
    if testkit::BrokerKind::from_env().unwrap() == testkit::BrokerKind::Nisshi
        && std::env::var_os("RELIABILITY_SUSTAINED").is_none()
    {
        testkit::skip(
            "known broker failure, issue 10: nisshi 0.6.0 scans every stored header for each \
             record it fetches (no index on its header table, see nisshi_fetch.rs), so at 200 \
             orders/s the consumer falls behind for good; RELIABILITY_SUSTAINED=1 runs it",
        );
        return;
    }
    let rate: u32 = std::env::var("RELIABILITY_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let secs: u64 = std::env::var("RELIABILITY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let flow = OrderFlow::start_with(&[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let paced = paced_orders(
        flow.order_base.clone(),
        rate,
        Duration::from_secs(secs),
        stop,
    )
    .await
    .unwrap();
    let took = started.elapsed();
    let lag_zero = flow.wait_broker_lag_zero(Duration::from_secs(10)).await;
    let at_end = flow.notifications.consumer().await;
    println!(
        "{} orders sent in {:.1} s ({:.0}/s), {} accepted, {} refused; lag 0 within 10 s: {lag_zero:?}; \
         consumer at the end: {at_end:#}",
        paced.sent,
        took.as_secs_f64(),
        paced.sent as f64 / took.as_secs_f64(),
        paced.accepted.len(),
        paced.refused,
    );
    let outcome = flow
        .assert_each_order_notified_once(&paced.accepted, Duration::from_secs(300), WAIT)
        .await;
    let report = flow.notifications.consumer().await;
    println!(
        "{} notified once each; session timeouts {}, rebuilds {}",
        outcome.notified, report["sessionTimeouts"], report["rebuilds"]
    );
    assert!(lag_zero.is_ok(), "{lag_zero:?}");
    assert_eq!(report["sessionTimeouts"], 0, "{report:#}");
    assert_eq!(report["rebuilds"], 0, "{report:#}");
    flow.stop().await;
}

/// The broker restarted (SIGTERM, start again on the same storage) in the middle of a stream
/// of orders: order-service's relay and this consumer resume on their own; nothing is lost or
/// notified twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_mid_stream() {
    let mut flow = OrderFlow::start_with(&["--stall-timeout", "20s"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = paced_orders(
        flow.order_base.clone(),
        50,
        Duration::from_secs(60),
        stop.clone(),
    );
    wait_notified(&flow, 50).await;
    flow.kafka.stop().await.unwrap();
    flow.kafka.start_again().await.unwrap();
    let resumed = notified(&flow).await + 50;
    wait_notified(&flow, resumed).await;
    stop.store(true, Ordering::Relaxed);
    let paced = stream.await.unwrap();
    let outcome = flow
        .assert_each_order_notified_once(&paced.accepted, Duration::from_secs(90), WAIT)
        .await;
    let report = flow.notifications.consumer().await;
    println!(
        "broker restarted mid-stream: {} accepted, {} refused, {} notified once each; \
         rebuilds {}, session timeouts {}",
        paced.accepted.len(),
        paced.refused,
        outcome.notified,
        report["rebuilds"],
        report["sessionTimeouts"]
    );
    flow.stop().await;
}

/// The broker frozen for 20 s (SIGSTOP, then SIGCONT) in the middle of a stream of orders:
/// orders are still accepted (the outbox holds them), and once it thaws every one is notified
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_paused_20_s_mid_stream() {
    let mut flow = OrderFlow::start_with(&["--stall-timeout", "20s"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stream = paced_orders(
        flow.order_base.clone(),
        50,
        Duration::from_secs(90),
        stop.clone(),
    );
    wait_notified(&flow, 50).await;
    flow.kafka.pause().await.unwrap();
    let during = paced_count(&flow).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let accepted_while_paused = paced_count(&flow).await - during;
    flow.kafka.resume().await.unwrap();
    let resumed = notified(&flow).await + 50;
    wait_notified(&flow, resumed).await;
    stop.store(true, Ordering::Relaxed);
    let paced = stream.await.unwrap();
    let outcome = flow
        .assert_each_order_notified_once(&paced.accepted, Duration::from_secs(120), WAIT)
        .await;
    let report = flow.notifications.consumer().await;
    println!(
        "broker paused 20 s: {accepted_while_paused} orders stored while it was frozen; {} accepted, \
         {} refused, {} notified once each; rebuilds {}, session timeouts {}",
        paced.accepted.len(),
        paced.refused,
        outcome.notified,
        report["rebuilds"],
        report["sessionTimeouts"]
    );
    assert!(
        accepted_while_paused > 0,
        "orders are accepted while the broker is frozen"
    );
    flow.stop().await;
}

/// Orders stored so far.
async fn paced_count(flow: &OrderFlow) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&flow.orders_db)
        .await
        .unwrap()
}

/// Notifications stored so far.
async fn notified(flow: &OrderFlow) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(&flow.notifications_db)
        .await
        .unwrap_or(0)
}

/// Waits (up to two minutes) until `n` notifications are stored.
async fn wait_notified(flow: &OrderFlow, n: i64) {
    let reached = poll_until(
        Duration::from_secs(120),
        || notified(flow),
        |count| *count >= n,
    )
    .await;
    assert!(
        reached.is_some(),
        "never {n} notifications; consumer: {}",
        flow.notifications.consumer().await
    );
}

/// A group member speaking the protocol by hand, to put the group in states a broker should
/// never leave it in: it joins first (so it leads), assigns nobody anything, and keeps its
/// session alive by heartbeats. Once, when another member's join makes it rejoin, it leads
/// again and again assigns nothing; the next time it dies (stops heartbeating, as a crashed
/// process would). It never sends LeaveGroup mid-rebalance: nisshi 0.6.0 would then keep the
/// departed leader for good (see `leader_leaving_mid_rebalance_wedges_the_group`).
pub struct RogueLeader {
    broker: BrokerClient,
    group: GroupId,
    member_id: StrBytes,
    generation: i32,
}

impl RogueLeader {
    const SESSION_MS: i32 = 6000;

    async fn join(bootstrap: &str, group: &str) -> RogueLeader {
        let mut rogue = RogueLeader::new(bootstrap, group, "rogue");
        rogue.join_and_assign_nothing().await;
        rogue
    }

    fn new(bootstrap: &str, group: &str, client_id: &str) -> RogueLeader {
        let broker = BrokerClient::new(
            bootstrap,
            kafka_lag::Options {
                client_id: client_id.into(),
                request_timeout: Duration::from_secs(20),
                ..Default::default()
            },
        )
        .unwrap();
        RogueLeader {
            broker,
            group: GroupId(StrBytes::from_string(group.to_string())),
            member_id: StrBytes::from_static_str(""),
            generation: -1,
        }
    }

    /// JoinGroup (twice when the broker first hands out a member id), then SyncGroup giving
    /// every member an empty consumer-protocol assignment.
    async fn join_and_assign_nothing(&mut self) {
        let answer = self.join_group().await;
        assert_eq!(answer.leader, answer.member_id, "the rogue leads the group");
        self.sync_nothing(&answer).await;
    }

    /// JoinGroup until the broker answers with a generation (not MEMBER_ID_REQUIRED).
    async fn join_group(&mut self) -> kafka_protocol::messages::JoinGroupResponse {
        let metadata = {
            // ConsumerProtocolSubscription v0: version, topics ["order-placed"], user data null.
            let mut b = BytesMut::new();
            b.put_i16(0);
            b.put_i32(1);
            b.put_i16(events::ORDER_PLACED_TOPIC.len() as i16);
            b.put_slice(events::ORDER_PLACED_TOPIC.as_bytes());
            b.put_i32(-1);
            b.freeze()
        };
        let answer = loop {
            let request = JoinGroupRequest::default()
                .with_group_id(self.group.clone())
                .with_session_timeout_ms(Self::SESSION_MS)
                .with_rebalance_timeout_ms(Self::SESSION_MS)
                .with_member_id(self.member_id.clone())
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(metadata.clone()),
                ]);
            let (_, answer) = self.broker.send("JoinGroup", &request, 5).await.unwrap();
            self.member_id = answer.member_id.clone();
            // MEMBER_ID_REQUIRED: join again with the id.
            if answer.error_code == 79 {
                continue;
            }
            assert_eq!(answer.error_code, 0, "rogue join: {answer:?}");
            break answer;
        };
        self.generation = answer.generation_id;
        answer
    }

    /// SyncGroup as the leader, giving every member of `joined` nothing.
    async fn sync_nothing(&mut self, joined: &kafka_protocol::messages::JoinGroupResponse) {
        let nothing = {
            let mut b = BytesMut::new();
            b.put_i16(0);
            ConsumerProtocolAssignment::default()
                .encode(&mut b, 0)
                .unwrap();
            b.freeze()
        };
        let assignments = joined
            .members
            .iter()
            .map(|m| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(m.member_id.clone())
                    .with_assignment(nothing.clone())
            })
            .collect();
        let request = SyncGroupRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id(self.generation)
            .with_member_id(self.member_id.clone())
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(assignments);
        let (_, answer) = self.broker.send("SyncGroup", &request, 4).await.unwrap();
        assert_eq!(answer.error_code, 0, "rogue sync: {answer:?}");
    }

    /// One heartbeat; its error code (27 = REBALANCE_IN_PROGRESS).
    async fn heartbeat(&self) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id(self.generation)
            .with_member_id(self.member_id.clone());
        self.broker
            .send("Heartbeat", &request, 3)
            .await
            .map(|(_, a)| a.error_code)
            .unwrap_or(-1)
    }

    /// LeaveGroup; its error code.
    async fn leave(&self) -> i16 {
        let request = LeaveGroupRequest::default()
            .with_group_id(self.group.clone())
            .with_member_id(self.member_id.clone());
        self.broker
            .send("LeaveGroup", &request, 2)
            .await
            .map(|(_, a)| a.error_code)
            .unwrap_or(-1)
    }

    /// Heartbeats until `done`; the first rebalance it leads again (assigning nothing), the
    /// second it dies: no more requests, so the broker evicts it after its session timeout.
    async fn run(mut self, done: Arc<AtomicBool>) -> u32 {
        let mut rejoins = 0;
        while !done.load(Ordering::Relaxed) {
            if self.heartbeat().await == 27 {
                if rejoins == 0 {
                    rejoins += 1;
                    self.join_and_assign_nothing().await;
                } else {
                    return rejoins;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        rejoins
    }
}

/// A consumer left in its group with no partition while nobody holds any (the state tansu 0.6
/// left the platform in, simulated by a member that leads the group and assigns nothing):
/// the watchdog sees it, reports it in `/admin/consumer` and readiness, rebuilds the consumer
/// without a restart, and every event is then notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_without_assignment_is_rebuilt_without_a_restart() {
    let infra = Infra::start(3).await;
    let bootstrap = infra.kafka.bootstrap_servers();
    let rogue = RogueLeader::join(&bootstrap, "notification-service").await;
    let done = Arc::new(AtomicBool::new(false));
    let rogue = tokio::spawn(rogue.run(done.clone()));

    let publisher = Publisher::new(&infra);
    for n in 0..20 {
        publisher.send(&event(&format!("ord-stuck-{n}"))).await;
    }
    // Longer than nisshi takes to form a group (a join waits half the session timeout, a dead
    // member is evicted after the whole): a shorter one would rebuild a consumer mid-join.
    let app = TestApp::spawn_unready(infra.config(&["--stall-timeout", "20s"])).await;
    let stuck = app
        .wait_consumer(
            "joined with nothing assigned and the watchdog suspicious",
            |r| {
                r["joined"] == true
                    && r["assignedPartitions"] == json!([])
                    && r["totalLag"] == 20
                    && r["consumerHealth"]["reason"]
                        .as_str()
                        .is_some_and(|why| why.contains("holds no partition"))
            },
        )
        .await;
    println!("stuck: {}", stuck["consumerHealth"]);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503, "readiness reports the stuck consumer");
    let body: Value = ready.json().await.unwrap();
    assert!(body.to_string().contains("partition"), "{body}");

    let mut last = Value::Null;
    let report = poll_until(
        Duration::from_secs(150),
        || app.consumer(),
        |r| {
            last = r.clone();
            r["notificationsSent"] == 20 && r["totalLag"] == 0
        },
    )
    .await
    .unwrap_or_else(|| panic!("never recovered; last report {last:#}"));
    assert!(report["rebuilds"].as_u64().unwrap() >= 1, "{report:#}");
    assert!(
        report["lastRebuild"]["reason"]
            .as_str()
            .unwrap()
            .contains("holds no partition"),
        "{report:#}"
    );
    app.wait_ready().await;
    done.store(true, Ordering::Relaxed);
    let rejoins = rogue.await.unwrap();
    println!(
        "recovered by {} rebuild(s) ({}); the rogue led {} rebalance(s)",
        report["rebuilds"],
        report["lastRebuild"]["reason"],
        rejoins + 1
    );
    app.stop().await;
}

/// nisshi 0.6.0's group coordinator keeps a leader that sent LeaveGroup while the group was
/// rebalancing: `Inner<O, Forming>::leave` (`nisshi-broker/src/coordinator/group/administrator.rs`)
/// removes the member but not `state.leader`, and a leader is only replaced when it is unset or
/// evicted for missed heartbeats, which a departed member never is. So every later JoinGroup
/// names the departed member as leader, no SyncGroup ever brings assignments, and no member of
/// the group consumes again, whatever the consumers do (rebuilt, restarted). This pins that
/// behaviour down with the raw protocol; on another broker it only reports what it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_leaving_mid_rebalance_wedges_the_group() {
    let broker = testkit::Broker::start().await.unwrap();
    broker
        .create_topic(events::ORDER_PLACED_TOPIC, 1)
        .await
        .unwrap();
    let bootstrap = broker.bootstrap_servers();
    let mut leader = RogueLeader::new(&bootstrap, "wedge", "leader");
    leader.join_and_assign_nothing().await;
    let leader_id = leader.member_id.to_string();
    // A second member joins: the group rebalances (its JoinGroup waits in the broker).
    let mut follower = RogueLeader::new(&bootstrap, "wedge", "follower");
    let joining = tokio::spawn(async move {
        let answer = follower.join_group().await;
        (follower, answer)
    });
    // The leader learns of the rebalance from its heartbeat, and leaves instead of rejoining.
    let seen = poll_until(
        Duration::from_secs(30),
        || leader.heartbeat(),
        |code| *code == 27,
    )
    .await;
    assert!(seen.is_some(), "the leader never heard of the rebalance");
    assert_eq!(leader.leave().await, 0, "the leader left");
    let (mut follower, first) = joining.await.unwrap();
    // The follower is now the only member; every join still names the departed leader.
    let mut leaders = vec![first.leader.to_string()];
    for _ in 0..2 {
        let answer = follower.join_group().await;
        leaders.push(answer.leader.to_string());
    }
    println!(
        "{}: leader {leader_id} left mid-rebalance; the remaining member's joins name as leader: {leaders:?}",
        broker.kind()
    );
    if broker.kind() == testkit::BrokerKind::Nisshi {
        assert!(
            leaders.iter().all(|l| *l == leader_id),
            "nisshi 0.6.0 no longer keeps a departed leader (fixed?): {leaders:?}"
        );
    }
}
