//! The scheduler and the requests: request `i` is due at `start + i / rate`; the scheduler
//! wakes at each due time (batching the ones due in the same tick), starts a task per request
//! and moves on, so a slow answer never delays the next request. Each task measures from its
//! due time to the end of the answer's body and records the outcome in the shared counters,
//! which [`LoadHandle`] reads while the run goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::report::{
    self, AcceptedOrder, Counts, KindReport, Latency, LoadReport, Outcome, SecondReport,
};
use super::{Fixture, Kind, LoadConfig, LoadError, TokenPool};

/// What one kind has measured so far.
struct KindStats {
    counts: Counts,
    /// Microseconds from due time to the end of the answer.
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    transport: BTreeMap<&'static str, u64>,
}

impl KindStats {
    fn new() -> Self {
        KindStats {
            counts: Counts::default(),
            histogram: report::histogram(),
            statuses: BTreeMap::new(),
            transport: BTreeMap::new(),
        }
    }
}

/// One second of intended send time, per kind.
#[derive(Clone, Default)]
struct Second {
    counts: [Counts; 5],
    max_us: u64,
}

/// The counters behind one lock: every answer takes it once, briefly.
struct Stats {
    kinds: [KindStats; 5],
    seconds: Vec<Second>,
    orders: Vec<AcceptedOrder>,
    /// When the last request ended.
    last_end: Option<Instant>,
}

/// Everything the scheduler, the request tasks and the handle share.
struct Shared {
    config: LoadConfig,
    fixture: Fixture,
    /// Precomputed request targets, so a request builds no URL.
    urls: Urls,
    http: reqwest::Client,
    /// The due time of request 0.
    start: Instant,
    /// Stops the schedule early.
    cancel: CancellationToken,
    /// Requests whose due time has come (sent or dropped).
    scheduled: AtomicU64,
    /// Requests handed to the HTTP client.
    sent: AtomicU64,
    /// Requests sent and not yet ended.
    outstanding: AtomicU64,
    /// Requests of each kind so far, so each kind takes the users in turn.
    per_kind: [AtomicU64; 5],
    /// Set once the schedule is over (duration reached or stopped).
    schedule_done: AtomicBool,
    /// Woken when `outstanding` drops to zero.
    drained: Notify,
    stats: Mutex<Stats>,
}

/// Request targets, built once.
struct Urls {
    orders: String,
    order_reads: String,
    health: String,
    /// Per product: `GET` of the product, of its stock, and the order body.
    products: Vec<(String, String, Bytes)>,
}

impl Urls {
    fn new(f: &Fixture) -> Urls {
        let base = f.gateway.as_str().trim_end_matches('/');
        Urls {
            orders: format!("{base}/api/order"),
            order_reads: format!("{base}/api/order?page=0&size=5"),
            health: format!("{base}/health/live"),
            products: f
                .products
                .iter()
                .map(|p| {
                    let body = serde_json::json!({
                        "lines": [{ "skuCode": p.sku, "price": super::fixture::PRICE, "quantity": 1 }]
                    });
                    (
                        format!("{base}/api/product/{}", p.id),
                        format!("{base}/api/inventory/{}", p.sku),
                        Bytes::from(body.to_string()),
                    )
                })
                .collect(),
        }
    }
}

/// A running load; cheap to share by reference, consumed by [`LoadHandle::finish`].
pub struct LoadHandle {
    shared: Arc<Shared>,
    /// Taken by [`LoadHandle::finish`].
    scheduler: Option<tokio::task::JoinHandle<()>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// Live counters.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Seconds since the start.
    pub elapsed_s: f64,
    /// Requests planned in all.
    pub planned: u64,
    pub scheduled: u64,
    pub sent: u64,
    /// Requests sent and not yet ended.
    pub in_flight: u64,
    /// Ended requests by outcome.
    pub counts: Counts,
    /// Latency of every answer so far.
    pub latency_ms: Latency,
    /// Answers in the last whole second.
    pub last_second: Counts,
    /// Whether the run is over (every request ended).
    pub done: bool,
}

impl Progress {
    /// One line for a terminal.
    pub fn line(&self) -> String {
        format!(
            "{:>6.1}s  sent {:>7}/{}  in flight {:>4}  ok {:>7}  failed {:>5}  fallback {:>5}  last second {:>6}/s  p99 {:.1}ms",
            self.elapsed_s,
            self.sent,
            self.planned,
            self.in_flight,
            self.counts.ok,
            self.counts.failed(true),
            self.counts.fallback,
            self.last_second.total,
            self.latency_ms.p99
        )
    }
}

/// Starts sending at once and returns the handle to watch, stop and finish the run.
pub fn start(config: LoadConfig, fixture: Fixture) -> Result<LoadHandle, LoadError> {
    config.validate()?;
    if config.mix.needs_products() && fixture.products.is_empty() {
        return Err(LoadError::Config(
            "the mix needs products and the fixture has none".into(),
        ));
    }
    if config.mix.needs_tokens() && fixture.tokens.as_ref().is_none_or(|t| t.is_empty()) {
        return Err(LoadError::Config(
            "the mix needs tokens and the fixture has none".into(),
        ));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.max_in_flight)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| LoadError::Config(format!("cannot make an HTTP client: {e}")))?;
    let seconds = (config.duration.as_secs() + 2) as usize;
    let cancel = CancellationToken::new();
    let renewer = fixture
        .tokens
        .as_ref()
        .map(|t| t.spawn_renewer(cancel.child_token()));
    let shared = Arc::new(Shared {
        urls: Urls::new(&fixture),
        config,
        fixture,
        http,
        start: Instant::now(),
        cancel,
        scheduled: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        outstanding: AtomicU64::new(0),
        per_kind: std::array::from_fn(|_| AtomicU64::new(0)),
        schedule_done: AtomicBool::new(false),
        drained: Notify::new(),
        stats: Mutex::new(Stats {
            kinds: std::array::from_fn(|_| KindStats::new()),
            seconds: vec![Second::default(); seconds],
            orders: Vec::new(),
            last_end: None,
        }),
    });
    let scheduler = tokio::spawn(schedule(shared.clone()));
    Ok(LoadHandle {
        shared,
        scheduler: Some(scheduler),
        renewer,
    })
}

/// Sends every request at its due time until the plan is done or the run is stopped.
async fn schedule(shared: Arc<Shared>) {
    let planned = shared.config.planned();
    let period = 1.0 / shared.config.rate;
    let due = |i: u64| shared.start + Duration::from_secs_f64(i as f64 * period);
    let max = shared.config.max_in_flight as u64;
    let mut i = 0;
    while i < planned {
        let next = due(i);
        if next > Instant::now() {
            tokio::select! {
                () = shared.cancel.cancelled() => break,
                () = tokio::time::sleep_until(next.into()) => {}
            }
        } else if shared.cancel.is_cancelled() {
            break;
        }
        let now = Instant::now();
        while i < planned && due(i) <= now {
            let at = due(i);
            let kind = shared.config.mix.pick(i);
            shared.scheduled.fetch_add(1, Ordering::Relaxed);
            if shared.outstanding.load(Ordering::Relaxed) >= max {
                record(&shared, kind, at, Outcome::Dropped, None, None);
            } else {
                shared.outstanding.fetch_add(1, Ordering::Relaxed);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(one(shared.clone(), i, kind, at));
            }
            i += 1;
        }
    }
    shared.schedule_done.store(true, Ordering::Release);
    // A waiter that looked before the schedule was over must look again.
    shared.drained.notify_waiters();
    // Wait for the requests still out (each is bounded by the request timeout).
    loop {
        let drained = shared.drained.notified();
        if shared.outstanding.load(Ordering::Acquire) == 0 {
            break;
        }
        drained.await;
    }
    shared.cancel.cancel();
    shared.drained.notify_waiters();
}

/// One request, from its due time to its recorded outcome.
async fn one(shared: Arc<Shared>, i: u64, kind: Kind, due: Instant) {
    let (outcome, order) =
        match tokio::time::timeout(shared.config.timeout, send(&shared, i, kind)).await {
            Ok(r) => r,
            Err(_) => (Outcome::Timeout, None),
        };
    let latency = matches!(outcome, Outcome::Answer { .. }).then(|| due.elapsed());
    record(&shared, kind, due, outcome, latency, order);
    if shared.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.drained.notify_waiters();
    }
}

/// Builds and sends request `i` of `kind`, reading its whole answer.
async fn send(shared: &Shared, i: u64, kind: Kind) -> (Outcome, Option<AcceptedOrder>) {
    let u = &shared.urls;
    let http = &shared.http;
    let product =
        (!u.products.is_empty()).then(|| &u.products[(i % u.products.len() as u64) as usize]);
    let mut req = match (kind, product) {
        (Kind::Orders, Some((_, _, body))) => http
            .post(&u.orders)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "idempotency-key",
                format!("load-{}-{i}", shared.fixture.run_id),
            )
            .body(body.clone()),
        (Kind::Products, Some((url, _, _))) => http.get(url),
        (Kind::Stock, Some((_, url, _))) => http.get(url),
        (Kind::OrderReads, _) => http.get(&u.order_reads),
        _ => http.get(&u.health),
    };
    let mut user = None;
    if kind.needs_token()
        && let Some(pool) = &shared.fixture.tokens
    {
        let n = shared.per_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
        let (who, token) = pool.pick(n);
        user = Some(who);
        req = req.bearer_auth(&*token);
    }
    let res = match req.send().await {
        Ok(res) => res,
        Err(e) if e.is_connect() => return (Outcome::Connect, None),
        Err(e) if e.is_timeout() => return (Outcome::Timeout, None),
        Err(_) => return (Outcome::Broken, None),
    };
    let status = res.status().as_u16();
    let problem = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let Ok(body) = res.bytes().await else {
        return (Outcome::Broken, None);
    };
    let fallback = status == 503 && problem && is_fallback(&body);
    let order = (kind == Kind::Orders && status == 201 && shared.config.record_orders)
        .then(|| order_number(&body))
        .flatten()
        .map(|order_number| AcceptedOrder {
            order_number,
            user: user.unwrap_or(0),
        });
    (Outcome::Answer { status, fallback }, order)
}

/// Whether a problem+json body is order-service's fallback.
fn is_fallback(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("detail")
                .and_then(|d| d.as_str())
                .map(|d| d == super::FALLBACK_DETAIL)
        })
        .unwrap_or(false)
}

fn order_number(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("orderNumber")?
        .as_str()
        .map(str::to_string)
}

/// Adds one outcome to the counters.
fn record(
    shared: &Shared,
    kind: Kind,
    due: Instant,
    outcome: Outcome,
    latency: Option<Duration>,
    order: Option<AcceptedOrder>,
) {
    let Ok(mut stats) = shared.stats.lock() else {
        return;
    };
    let k = kind.index();
    let ks = &mut stats.kinds[k];
    ks.counts.add(outcome);
    match outcome {
        Outcome::Answer { status, .. } => *ks.statuses.entry(status).or_default() += 1,
        Outcome::Timeout => *ks.transport.entry("timeout").or_default() += 1,
        Outcome::Connect => *ks.transport.entry("connect").or_default() += 1,
        Outcome::Broken => *ks.transport.entry("broken").or_default() += 1,
        Outcome::Dropped => {}
    }
    let us = latency.map(|l| (l.as_micros() as u64).max(1));
    if let Some(us) = us {
        ks.histogram.saturating_record(us);
    }
    let second = due.saturating_duration_since(shared.start).as_secs() as usize;
    if let Some(s) = stats.seconds.get_mut(second) {
        s.counts[k].add(outcome);
        s.max_us = s.max_us.max(us.unwrap_or(0));
    }
    if let Some(o) = order {
        stats.orders.push(o);
    }
    stats.last_end = Some(Instant::now());
}

impl LoadHandle {
    /// The due time of the first request.
    pub fn started(&self) -> Instant {
        self.shared.start
    }

    /// The run's configuration.
    pub fn config(&self) -> &LoadConfig {
        &self.shared.config
    }

    /// The users' tokens, when the mix uses them.
    pub fn tokens(&self) -> Option<&Arc<TokenPool>> {
        self.shared.fixture.tokens.as_ref()
    }

    /// Stops scheduling; requests already sent still end (within the request timeout).
    pub fn stop(&self) {
        self.shared.cancel.cancel();
    }

    /// Whether every request has ended.
    pub fn is_done(&self) -> bool {
        self.shared.schedule_done.load(Ordering::Acquire)
            && self.shared.outstanding.load(Ordering::Acquire) == 0
    }

    /// Waits until every request has ended (the duration passed or [`LoadHandle::stop`]).
    pub async fn done(&self) {
        self.shared.cancel.cancelled().await;
        loop {
            let drained = self.shared.drained.notified();
            if self.is_done() {
                return;
            }
            drained.await;
        }
    }

    /// Live counters.
    pub fn progress(&self) -> Progress {
        let s = &self.shared;
        let elapsed = s.start.elapsed();
        let mut counts = Counts::default();
        let mut latency = report::histogram();
        let mut last_second = Counts::default();
        if let Ok(stats) = s.stats.lock() {
            for k in &stats.kinds {
                counts.merge(&k.counts);
                let _ = latency.add(&k.histogram);
            }
            let last = elapsed.as_secs().saturating_sub(1) as usize;
            if let Some(sec) = stats.seconds.get(last) {
                for c in &sec.counts {
                    last_second.merge(c);
                }
            }
        }
        Progress {
            elapsed_s: elapsed.as_secs_f64(),
            planned: s.config.planned(),
            scheduled: s.scheduled.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            in_flight: s.outstanding.load(Ordering::Relaxed),
            counts,
            latency_ms: Latency::of(&latency),
            last_second,
            done: self.is_done(),
        }
    }

    /// Counts of the requests due between `from` and `to` (whole seconds of intended send
    /// time that overlap the interval), of `kinds` only when given. Requests still out are
    /// not counted yet.
    pub fn counts_between(&self, from: Instant, to: Instant, kinds: Option<&[Kind]>) -> Counts {
        let s = &self.shared;
        let first = from.saturating_duration_since(s.start).as_secs() as usize;
        let last = to.saturating_duration_since(s.start).as_secs() as usize;
        let mut total = Counts::default();
        if let Ok(stats) = s.stats.lock() {
            for sec in stats.seconds.iter().take(last + 1).skip(first) {
                for kind in Kind::ALL {
                    if kinds.is_none_or(|ks| ks.contains(&kind)) {
                        total.merge(&sec.counts[kind.index()]);
                    }
                }
            }
        }
        total
    }

    /// The accepted orders so far (when the config records them).
    pub fn accepted_orders(&self) -> Vec<AcceptedOrder> {
        self.shared
            .stats
            .lock()
            .map(|s| s.orders.clone())
            .unwrap_or_default()
    }

    /// Waits for the end of the run (or stops it when `stop`) and reports.
    pub async fn finish(mut self, stop: bool) -> LoadReport {
        if stop {
            self.stop();
        }
        self.done().await;
        if let Some(s) = self.scheduler.take() {
            let _ = s.await;
        }
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        report_of(&self.shared)
    }
}

impl Drop for LoadHandle {
    /// A handle dropped without [`LoadHandle::finish`] (an error path) stops the run.
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// The final report.
fn report_of(s: &Shared) -> LoadReport {
    let stopped_early = s.scheduled.load(Ordering::Relaxed) < s.config.planned();
    let Ok(stats) = s.stats.lock() else {
        return empty_report(s);
    };
    let mut counts = Counts::default();
    let mut all = report::histogram();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut transport: BTreeMap<String, u64> = BTreeMap::new();
    let mut kinds = Vec::new();
    for kind in Kind::ALL {
        let k = &stats.kinds[kind.index()];
        if k.counts.total == 0 && s.config.mix.share(kind) == 0.0 {
            continue;
        }
        counts.merge(&k.counts);
        let _ = all.add(&k.histogram);
        for (st, n) in &k.statuses {
            *statuses.entry(*st).or_default() += n;
        }
        for (c, n) in &k.transport {
            *transport.entry((*c).to_string()).or_default() += n;
        }
        kinds.push(KindReport {
            kind,
            counts: k.counts,
            latency_ms: Latency::of(&k.histogram),
            statuses: k.statuses.clone(),
            transport_errors: k
                .transport
                .iter()
                .map(|(c, n)| ((*c).to_string(), *n))
                .collect(),
        });
    }
    let end = stats.last_end.unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(s.start).as_secs_f64();
    let scheduled = s.scheduled.load(Ordering::Relaxed);
    let sending = (scheduled as f64 / s.config.rate).max(1e-9);
    let sent = s.sent.load(Ordering::Relaxed);
    let used_seconds =
        ((scheduled as f64 / s.config.rate).ceil() as usize).min(stats.seconds.len());
    let timeline = stats.seconds[..used_seconds]
        .iter()
        .enumerate()
        .map(|(i, sec)| {
            let mut c = Counts::default();
            for k in &sec.counts {
                c.merge(k);
            }
            SecondReport {
                second: i as u64,
                counts: c,
                max_ms: sec.max_us as f64 / 1000.0,
            }
        })
        .collect();
    LoadReport {
        target: s.fixture.gateway.to_string(),
        config: s.config.clone(),
        scheduled,
        sent,
        elapsed_s: elapsed,
        achieved_rate: sent as f64 / sending,
        throughput: if elapsed > 0.0 {
            all.len() as f64 / elapsed
        } else {
            0.0
        },
        stopped_early,
        error_rate_pct: counts.error_rate(false),
        counts,
        latency_ms: Latency::of(&all),
        statuses,
        transport_errors: transport,
        kinds,
        tokens: s
            .fixture
            .tokens
            .as_ref()
            .map(|t| t.report())
            .unwrap_or_default(),
        products: s.fixture.products.iter().map(|p| p.sku.clone()).collect(),
        orders_accepted: stats.kinds[Kind::Orders.index()]
            .statuses
            .get(&201)
            .copied()
            .unwrap_or(0),
        timeline,
    }
}

fn empty_report(s: &Shared) -> LoadReport {
    LoadReport {
        target: s.fixture.gateway.to_string(),
        config: s.config.clone(),
        scheduled: 0,
        sent: 0,
        elapsed_s: 0.0,
        achieved_rate: 0.0,
        throughput: 0.0,
        stopped_early: true,
        counts: Counts::default(),
        error_rate_pct: 0.0,
        latency_ms: Latency::default(),
        statuses: BTreeMap::new(),
        transport_errors: BTreeMap::new(),
        kinds: Vec::new(),
        tokens: Default::default(),
        products: Vec::new(),
        orders_accepted: 0,
        timeline: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use url::Url;

    use super::*;
    use crate::chaos::load::fixture::Product;
    use crate::chaos::load::{Kind, Mix, TokenPool};

    /// A fake gateway: orders are accepted (201) until `accept` of them, then answered with
    /// order-service's fallback; products and health answer 200; every request but health
    /// must carry the bearer token.
    async fn fake_gateway(accept: u64, health_delay: Duration) -> Url {
        #[derive(Clone)]
        struct S {
            orders: Arc<AtomicU64>,
            accept: u64,
            delay: Duration,
        }
        async fn order(State(s): State<S>, h: HeaderMap) -> axum::response::Response {
            if h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some("Bearer t-alice")
                && h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
                    != Some("Bearer t-bob")
            {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            assert!(h.contains_key("idempotency-key"));
            let n = s.orders.fetch_add(1, Ordering::SeqCst);
            if n < s.accept {
                (
                    StatusCode::CREATED,
                    [(header::CONTENT_TYPE, "application/json")],
                    format!(r#"{{"orderNumber":"o-{n}"}}"#),
                )
                    .into_response()
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    r#"{"status":503,"detail":"Service is temporarily unavailable"}"#,
                )
                    .into_response()
            }
        }
        async fn health(State(s): State<S>) -> &'static str {
            tokio::time::sleep(s.delay).await;
            "UP"
        }
        let app = Router::new()
            .route("/api/order", post(order))
            .route("/api/product/{id}", get(|| async { "{}" }))
            .route("/health/live", get(health))
            .with_state(S {
                orders: Arc::new(AtomicU64::new(0)),
                accept,
                delay: health_delay,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn fixture(gateway: Url) -> Fixture {
        let tokens = TokenPool::fixed(
            reqwest::Client::new(),
            gateway.clone(),
            vec![
                ("alice".into(), "t-alice".into()),
                ("bob".into(), "t-bob".into()),
            ],
        );
        Fixture {
            gateway,
            tokens: Some(tokens),
            products: vec![Product {
                id: "p1".into(),
                sku: "sku-1".into(),
            }],
            run_id: "test".into(),
        }
    }

    /// Every scheduled request is sent and counted once: accepted orders are recorded with
    /// their user, fallback answers are counted apart, and windows and kinds filter the counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_every_request_once() {
        let gateway = fake_gateway(30, Duration::ZERO).await;
        let mut config = LoadConfig::new(
            200.0,
            Duration::from_millis(500),
            "orders=1,products=1".parse::<Mix>().unwrap(),
        );
        config.record_orders = true;
        let handle = start(config, fixture(gateway)).unwrap();
        let started = handle.started();
        handle.done().await;
        let orders = handle.accepted_orders();
        let all = handle.counts_between(started, Instant::now(), None);
        let products = handle.counts_between(started, Instant::now(), Some(&[Kind::Products]));
        let report = handle.finish(false).await;
        assert_eq!(report.scheduled, 100);
        assert_eq!(report.sent, 100);
        assert!(!report.stopped_early);
        assert_eq!(report.counts.total, 100);
        assert_eq!(report.counts.ok, 50 + 30, "{:?}", report.counts);
        assert_eq!(report.counts.fallback, 20);
        assert_eq!(report.orders_accepted, 30);
        assert_eq!(report.latency_ms.count, 100);
        assert_eq!(orders.len(), 30);
        assert_eq!(
            orders.iter().filter(|o| o.user == 0).count(),
            orders.iter().filter(|o| o.user == 1).count(),
            "users take turns"
        );
        assert_eq!(all.total, 100);
        assert_eq!(products.total, 50);
        assert_eq!(products.ok, 50);
        assert_eq!(report.statuses.get(&503), Some(&20));
        assert_eq!(report.kinds.len(), 2);
        assert_eq!(
            report.timeline.iter().map(|s| s.counts.total).sum::<u64>(),
            100
        );
        assert!(
            report.render().contains("fallback   20"),
            "{}",
            report.render()
        );
    }

    /// With `max_in_flight` requests outstanding, further due requests are dropped and
    /// counted as failures, never queued or skipped silently; latency runs from the due time,
    /// so it is at least the server's delay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saturation_drops_and_counts() {
        let gateway = fake_gateway(0, Duration::from_millis(300)).await;
        let mut config = LoadConfig::new(50.0, Duration::from_millis(200), Mix::only(Kind::Health));
        config.max_in_flight = 2;
        let handle = start(config, Fixture::bare(gateway)).unwrap();
        let report = handle.finish(false).await;
        assert_eq!(report.scheduled, 10);
        assert_eq!(report.sent, 2);
        assert_eq!(report.counts.dropped, 8);
        assert_eq!(report.counts.total, 10);
        assert_eq!(report.counts.failed(true), 8);
        assert!(report.latency_ms.p50 >= 300.0, "{:?}", report.latency_ms);
    }

    /// Stopping early ends the schedule at once and reports what was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_early() {
        let gateway = fake_gateway(0, Duration::ZERO).await;
        let config = LoadConfig::new(10.0, Duration::from_secs(600), Mix::only(Kind::Health));
        let handle = start(config, Fixture::bare(gateway)).unwrap();
        let report = handle.finish(true).await;
        assert!(report.stopped_early);
        assert!(report.scheduled < 6000);
        assert_eq!(report.counts.total, report.scheduled);
    }

    /// A mix that needs tokens or products is refused without them.
    #[tokio::test]
    async fn refuses_a_fixture_that_does_not_fit() {
        let gateway = Url::parse("http://127.0.0.1:9/").unwrap();
        let config = LoadConfig::new(1.0, Duration::from_secs(1), Mix::default());
        assert!(start(config, Fixture::bare(gateway)).is_err());
    }
}
