//! The schedule and the requests: request `i` is due at `start + i / rate`. Drivers (one
//! thread each, with its own single-threaded runtime, HTTP client and connections, like wrk's
//! threads: one per 10,000 requests/s, at most one per core) take the next index from a shared
//! counter, wait for its due time (batching the ones already due), start the request or count
//! it as dropped, and move on, so a slow answer never delays the next request: each driver
//! keeps its requests in flight in its own set and polls them between due times, with no task
//! spawned per request and no wake-up crossing threads. Each request measures from its due
//! time to the end of the answer's body; each driver records outcomes in its own counters (a
//! lock only it and the readers take), which [`LoadHandle`] merges while the run goes on.
//!
//! Requests are built from parts made once per run (parsed URIs, static headers, a bearer
//! header per user, rebuilt only when the user's token changes) and sent with a plain
//! HTTP/1 client, so the generator's own CPU per request stays well below the gateway's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::report::{
    self, AcceptedOrder, Counts, KindReport, Latency, LoadReport, Outcome, SecondReport,
};
use super::{Fixture, Kind, LoadConfig, LoadError, TokenPool};

/// The HTTP client of the hot path.
type Http = Client<HttpConnector, Full<Bytes>>;

/// Most driver threads, whatever the rate and the cores.
const MAX_DRIVERS: usize = 8;
/// Requests per second one driver thread is planned for.
const RATE_PER_DRIVER: f64 = 10_000.0;

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

/// One driver's counters: only that driver writes them, readers merge every driver's.
struct Stats {
    kinds: [KindStats; 5],
    seconds: Vec<Second>,
    /// When the driver's last request ended.
    last_end: Option<Instant>,
}

impl Stats {
    fn new(seconds: usize) -> Stats {
        Stats {
            kinds: std::array::from_fn(|_| KindStats::new()),
            seconds: vec![Second::default(); seconds],
            last_end: None,
        }
    }
}

/// Everything the drivers and the handle share.
struct Shared {
    config: LoadConfig,
    fixture: Fixture,
    /// Request parts made once, so a request parses and formats next to nothing.
    targets: Targets,
    /// The due time of request 0.
    start: Instant,
    /// Stops the schedule early.
    cancel: CancellationToken,
    /// The next request index a driver takes.
    next: AtomicU64,
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
    /// One set of counters per driver.
    stats: Vec<Mutex<Stats>>,
    /// Accepted orders in the order their answers ended.
    orders: Mutex<Vec<AcceptedOrder>>,
    /// How long each driver's thread is held up before its first request (tests only: a
    /// generator that falls behind its schedule).
    stall: Duration,
}

impl Shared {
    /// When request `i` is due.
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.config.rate)
    }

    /// Takes the next request index, `None` once the plan is used up.
    fn claim(&self, planned: u64) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < planned).then_some(i)
    }
}

/// Request targets, parsed once.
struct Targets {
    orders: Uri,
    order_reads: Uri,
    health: Uri,
    /// Per product: `GET` of the product, of its stock, and the order body.
    products: Vec<(Uri, Uri, Bytes)>,
    /// `load-{run id}-`, the prefix of every idempotency key.
    key_prefix: String,
}

impl Targets {
    fn new(f: &Fixture) -> Result<Targets, LoadError> {
        if f.gateway.scheme() != "http" {
            return Err(LoadError::Config(format!(
                "load sends plain HTTP; `{}` is not an http:// URL",
                f.gateway
            )));
        }
        let base = f.gateway.as_str().trim_end_matches('/');
        let uri = |s: String| {
            s.parse::<Uri>()
                .map_err(|e| LoadError::Config(format!("`{s}` is not a request target: {e}")))
        };
        let products = f
            .products
            .iter()
            .map(|p| {
                let body = serde_json::json!({
                    "lines": [{ "skuCode": p.sku, "price": super::fixture::PRICE, "quantity": 1 }]
                });
                Ok((
                    uri(format!("{base}/api/product/{}", p.id))?,
                    uri(format!("{base}/api/inventory/{}", p.sku))?,
                    Bytes::from(body.to_string()),
                ))
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        Ok(Targets {
            orders: uri(format!("{base}/api/order"))?,
            order_reads: uri(format!("{base}/api/order?page=0&size=5"))?,
            health: uri(format!("{base}/health/live"))?,
            products,
            key_prefix: format!("load-{}-", f.run_id),
        })
    }
}

/// A driver's `Authorization` values, one per user, remade only when the token changes.
#[derive(Default)]
struct Bearers {
    cached: Vec<Option<(Arc<str>, HeaderValue)>>,
}

impl Bearers {
    fn header(&mut self, user: usize, token: Arc<str>) -> Option<HeaderValue> {
        if self.cached.len() <= user {
            self.cached.resize(user + 1, None);
        }
        match &self.cached[user] {
            Some((t, v)) if Arc::ptr_eq(t, &token) || **t == *token => Some(v.clone()),
            _ => {
                let value =
                    HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {token}"))).ok()?;
                self.cached[user] = Some((token, value.clone()));
                Some(value)
            }
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

/// Starts sending at once and returns the handle to watch, stop and finish the run (which
/// needs a Tokio runtime: the handle's own task runs on it).
pub fn start(config: LoadConfig, fixture: Fixture) -> Result<LoadHandle, LoadError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let drivers =
        ((config.rate / RATE_PER_DRIVER).ceil() as usize).clamp(1, cores.clamp(1, MAX_DRIVERS));
    launch(config, fixture, drivers, Duration::ZERO)
}

/// [`start`] with `drivers` driver threads, each held up by `stall` before its first request.
fn launch(
    config: LoadConfig,
    fixture: Fixture,
    drivers: usize,
    stall: Duration,
) -> Result<LoadHandle, LoadError> {
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
    let targets = Targets::new(&fixture)?;
    let drivers = drivers.clamp(1, MAX_DRIVERS);
    let runtimes = (0..drivers)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LoadError::Config(format!("cannot make the load runtime: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let seconds = (config.duration.as_secs() + 2) as usize;
    let cancel = CancellationToken::new();
    let renewer = fixture
        .tokens
        .as_ref()
        .map(|t| t.spawn_renewer(cancel.child_token()));
    let shared = Arc::new(Shared {
        targets,
        config,
        fixture,
        start: Instant::now(),
        cancel,
        next: AtomicU64::new(0),
        scheduled: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        outstanding: AtomicU64::new(0),
        per_kind: std::array::from_fn(|_| AtomicU64::new(0)),
        schedule_done: AtomicBool::new(false),
        drained: Notify::new(),
        stats: (0..drivers)
            .map(|_| Mutex::new(Stats::new(seconds)))
            .collect(),
        orders: Mutex::new(Vec::new()),
        stall,
    });
    let mut ended = Vec::with_capacity(drivers);
    for (d, runtime) in runtimes.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("load-{d}"))
            .spawn(move || {
                // A task rather than the `block_on` future itself: waking the latter from
                // its own thread signals the runtime's event fd, once per answer.
                let _ = runtime.block_on(async move { tokio::spawn(drive(sh, d)).await });
                let _ = tx.send(());
            });
        if let Err(e) = spawned {
            shared.cancel.cancel();
            return Err(LoadError::Config(format!(
                "cannot start a load thread: {e}"
            )));
        }
        ended.push(rx);
    }
    let scheduler = tokio::spawn(schedule(shared.clone(), ended));
    Ok(LoadHandle {
        shared,
        scheduler: Some(scheduler),
        renewer,
    })
}

/// Waits until every driver is over (each after its last request ended), then marks the
/// run done.
async fn schedule(shared: Arc<Shared>, drivers: Vec<tokio::sync::oneshot::Receiver<()>>) {
    for d in drivers {
        let _ = d.await;
    }
    shared.schedule_done.store(true, Ordering::Release);
    shared.cancel.cancel();
    shared.drained.notify_waiters();
}

/// How one request ended, as its future reports it.
struct Ended {
    kind: Kind,
    due: Instant,
    outcome: Outcome,
    /// From the due time to the end of the answer (answers only).
    latency: Option<Duration>,
    order: Option<AcceptedOrder>,
}

/// One driver: takes due request indices from the shared counter, starts each request at its
/// due time (or counts it as dropped when `max_in_flight` are outstanding) and polls its
/// requests in flight in between, until the plan is done or the run is stopped and its last
/// request has ended.
async fn drive(shared: Arc<Shared>, d: usize) {
    let shared = &*shared;
    if !shared.stall.is_zero() {
        std::thread::sleep(shared.stall);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(shared.config.max_in_flight)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .build(connector);
    let http = &http;
    let planned = shared.config.planned();
    let max = shared.config.max_in_flight as u64;
    let mut inflight = FuturesUnordered::new();
    let mut bearers = Bearers::default();
    let mut next = shared.claim(planned);
    let sleep = tokio::time::sleep_until(shared.start.into());
    let cancelled = shared.cancel.cancelled();
    tokio::pin!(sleep, cancelled);
    let mut armed: Option<u64> = None;
    while let Some(i) = next {
        let at = shared.due(i);
        if at > Instant::now() {
            if armed != Some(i) {
                sleep.as_mut().reset(at.into());
                armed = Some(i);
            }
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                () = &mut sleep => {}
                Some(ended) = inflight.next(), if !inflight.is_empty() => {
                    record(shared, d, ended);
                    continue;
                }
            }
        } else if shared.cancel.is_cancelled() {
            break;
        }
        // Start `i` and every further request already due.
        let now = Instant::now();
        let mut i = i;
        loop {
            let at = shared.due(i);
            let kind = shared.config.mix.pick(i);
            shared.scheduled.fetch_add(1, Ordering::Relaxed);
            // Taking the slot first keeps the bound exact with several drivers.
            if shared.outstanding.fetch_add(1, Ordering::AcqRel) >= max {
                shared.outstanding.fetch_sub(1, Ordering::AcqRel);
                record(
                    shared,
                    d,
                    Ended {
                        kind,
                        due: at,
                        outcome: Outcome::Dropped,
                        latency: None,
                        order: None,
                    },
                );
            } else {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let (req, user) = build(shared, &mut bearers, i, kind);
                inflight.push(one(shared, http, req, user, kind, at));
            }
            next = shared.claim(planned);
            match next {
                Some(j) if shared.due(j) <= now => i = j,
                _ => break,
            }
        }
    }
    // The schedule is over for this driver: wait for its requests still out (each is
    // bounded by the request timeout).
    while let Some(ended) = inflight.next().await {
        record(shared, d, ended);
    }
}

/// One request, from its due time to its outcome; ends the request's `outstanding` share.
async fn one(
    shared: &Shared,
    http: &Http,
    req: Request<Full<Bytes>>,
    user: Option<usize>,
    kind: Kind,
    due: Instant,
) -> Ended {
    let (outcome, order) = match tokio::time::timeout(
        shared.config.timeout,
        send(shared, http, req, user, kind),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => (Outcome::Timeout, None),
    };
    let latency = matches!(outcome, Outcome::Answer { .. }).then(|| due.elapsed());
    Ended {
        kind,
        due,
        outcome,
        latency,
        order,
    }
}

/// Builds request `i` of `kind` from the prepared parts; the user whose token it carries.
fn build(
    shared: &Shared,
    bearers: &mut Bearers,
    i: u64,
    kind: Kind,
) -> (Request<Full<Bytes>>, Option<usize>) {
    let t = &shared.targets;
    let product =
        (!t.products.is_empty()).then(|| &t.products[(i % t.products.len() as u64) as usize]);
    let (method, uri, body) = match (kind, product) {
        (Kind::Orders, Some((_, _, body))) => (Method::POST, &t.orders, body.clone()),
        (Kind::Products, Some((uri, _, _))) => (Method::GET, uri, Bytes::new()),
        (Kind::Stock, Some((_, uri, _))) => (Method::GET, uri, Bytes::new()),
        (Kind::OrderReads, _) => (Method::GET, &t.order_reads, Bytes::new()),
        _ => (Method::GET, &t.health, Bytes::new()),
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri.clone();
    let headers = req.headers_mut();
    if kind == Kind::Orders && product.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let key = format!("{}{i}", t.key_prefix);
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(key)) {
            headers.insert(HeaderName::from_static("idempotency-key"), v);
        }
    }
    let mut user = None;
    if kind.needs_token()
        && let Some(pool) = &shared.fixture.tokens
    {
        let n = shared.per_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
        let (who, token) = pool.pick(n);
        user = Some(who);
        if let Some(v) = bearers.header(who, token) {
            headers.insert(AUTHORIZATION, v);
        }
    }
    (req, user)
}

/// Sends a request and reads its whole answer.
async fn send(
    shared: &Shared,
    http: &Http,
    req: Request<Full<Bytes>>,
    user: Option<usize>,
    kind: Kind,
) -> (Outcome, Option<AcceptedOrder>) {
    let res = match http.request(req).await {
        Ok(res) => res,
        Err(e) if e.is_connect() => return (Outcome::Connect, None),
        Err(_) => return (Outcome::Broken, None),
    };
    let status = res.status().as_u16();
    let problem = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let want_order = kind == Kind::Orders && status == 201 && shared.config.record_orders;
    let want_body = want_order || (status == 503 && problem);
    let mut body = res.into_body();
    // Only the answers whose body matters are kept; the rest is read and dropped.
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if want_body && let Some(data) = f.data_ref() {
                    kept.extend_from_slice(data);
                }
            }
            Err(_) => return (Outcome::Broken, None),
        }
    }
    let fallback = status == 503 && problem && is_fallback(&kept);
    let order = want_order
        .then(|| order_number(&kept))
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

/// Adds one outcome to driver `d`'s counters; a sent request's end also lowers
/// `outstanding`.
fn record(shared: &Shared, d: usize, ended: Ended) {
    let Ended {
        kind,
        due,
        outcome,
        latency,
        order,
    } = ended;
    if let Some(o) = order
        && let Ok(mut orders) = shared.orders.lock()
    {
        orders.push(o);
    }
    if let Some(Ok(mut stats)) = shared.stats.get(d).map(|s| s.lock()) {
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
        stats.last_end = Some(Instant::now());
    }
    if outcome != Outcome::Dropped && shared.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.drained.notify_waiters();
    }
}

/// Every driver's counters added up.
struct Merged {
    kinds: [KindStats; 5],
    seconds: Vec<Second>,
    last_end: Option<Instant>,
}

impl Merged {
    /// Adds up the drivers' counters; `seconds` only the first `upto` seconds.
    fn of(s: &Shared, upto: usize) -> Merged {
        let mut m = Merged {
            kinds: std::array::from_fn(|_| KindStats::new()),
            seconds: Vec::new(),
            last_end: None,
        };
        for stats in &s.stats {
            let Ok(st) = stats.lock() else { continue };
            for (into, from) in m.kinds.iter_mut().zip(&st.kinds) {
                into.counts.merge(&from.counts);
                let _ = into.histogram.add(&from.histogram);
                for (k, n) in &from.statuses {
                    *into.statuses.entry(*k).or_default() += n;
                }
                for (k, n) in &from.transport {
                    *into.transport.entry(*k).or_default() += n;
                }
            }
            let n = upto.min(st.seconds.len());
            if m.seconds.len() < n {
                m.seconds.resize(n, Second::default());
            }
            for (into, from) in m.seconds.iter_mut().zip(&st.seconds[..n]) {
                for (c, f) in into.counts.iter_mut().zip(&from.counts) {
                    c.merge(f);
                }
                into.max_us = into.max_us.max(from.max_us);
            }
            m.last_end = m.last_end.max(st.last_end);
        }
        m
    }
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
        let last = elapsed.as_secs().saturating_sub(1) as usize;
        let stats = Merged::of(s, last + 1);
        for k in &stats.kinds {
            counts.merge(&k.counts);
            let _ = latency.add(&k.histogram);
        }
        if let Some(sec) = stats.seconds.get(last) {
            for c in &sec.counts {
                last_second.merge(c);
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
        for stats in &s.stats {
            let Ok(stats) = stats.lock() else { continue };
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
            .orders
            .lock()
            .map(|o| o.clone())
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
    if s.stats.iter().any(|st| st.is_poisoned()) {
        return empty_report(s);
    }
    let stats = Merged::of(s, usize::MAX);
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

    /// Several drivers share the schedule: every request is still sent and counted once,
    /// accepted orders are all recorded and users still take turns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_drivers_count_every_request_once() {
        let gateway = fake_gateway(50, Duration::ZERO).await;
        let mut config = LoadConfig::new(
            400.0,
            Duration::from_millis(500),
            "orders=1,products=1".parse::<Mix>().unwrap(),
        );
        config.record_orders = true;
        let handle = launch(config, fixture(gateway), 3, Duration::ZERO).unwrap();
        let started = handle.started();
        handle.done().await;
        let orders = handle.accepted_orders();
        let all = handle.counts_between(started, Instant::now(), None);
        let report = handle.finish(false).await;
        assert_eq!(report.scheduled, 200);
        assert_eq!(report.sent, 200);
        assert_eq!(report.counts.total, 200);
        assert_eq!(report.counts.ok, 100 + 50, "{:?}", report.counts);
        assert_eq!(report.counts.fallback, 50);
        assert_eq!(report.latency_ms.count, 200);
        assert_eq!(orders.len(), 50);
        assert_eq!(all.total, 200);
        assert_eq!(
            report.timeline.iter().map(|s| s.counts.total).sum::<u64>(),
            200
        );
    }

    /// The `max_in_flight` bound is exact with several drivers: no more than that many are
    /// sent while the answers are slow, the rest are dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_drivers_keep_the_in_flight_bound() {
        let gateway = fake_gateway(0, Duration::from_millis(400)).await;
        let mut config =
            LoadConfig::new(100.0, Duration::from_millis(200), Mix::only(Kind::Health));
        config.max_in_flight = 3;
        let handle = launch(config, Fixture::bare(gateway), 3, Duration::ZERO).unwrap();
        let report = handle.finish(false).await;
        assert_eq!(report.scheduled, 20);
        assert_eq!(report.sent, 3);
        assert_eq!(report.counts.dropped, 17);
        assert_eq!(report.counts.ok, 3);
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

    /// A mix that needs tokens or products is refused without them, and a gateway that is not
    /// plain HTTP is refused.
    #[tokio::test]
    async fn refuses_a_fixture_that_does_not_fit() {
        let gateway = Url::parse("http://127.0.0.1:9/").unwrap();
        let config = LoadConfig::new(1.0, Duration::from_secs(1), Mix::default());
        assert!(start(config, Fixture::bare(gateway)).is_err());
        let tls = Url::parse("https://127.0.0.1:9/").unwrap();
        let config = LoadConfig::new(1.0, Duration::from_secs(1), Mix::only(Kind::Health));
        let Err(e) = start(config, Fixture::bare(tls)) else {
            panic!("an https gateway was taken");
        };
        assert!(e.to_string().contains("http://"), "{e}");
    }

    /// Latency runs from each request's due time even when the generator itself is late:
    /// with the driver's thread held up past every due time, every request is still sent
    /// (nothing was outstanding, so nothing is dropped) and its latency includes the time it
    /// waited to be sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn latency_counts_from_the_due_time_when_the_generator_is_late() {
        let gateway = fake_gateway(0, Duration::ZERO).await;
        let config = LoadConfig::new(10.0, Duration::from_millis(300), Mix::only(Kind::Health));
        // Requests are due at 0, 100 and 200 ms; the driver starts at 400 ms.
        let handle = launch(
            config,
            Fixture::bare(gateway),
            1,
            Duration::from_millis(400),
        )
        .unwrap();
        let report = handle.finish(false).await;
        assert_eq!(report.scheduled, 3);
        assert_eq!(report.sent, 3);
        assert_eq!(report.counts.ok, 3, "{:?}", report.counts);
        assert!(report.latency_ms.max >= 399.0, "{:?}", report.latency_ms);
        assert!(report.latency_ms.p50 >= 299.0, "{:?}", report.latency_ms);
    }

    /// A request that outlives the timeout ends as a transport failure (`timeout`), without
    /// a latency, and the run still ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_answers_time_out() {
        let gateway = fake_gateway(0, Duration::from_secs(5)).await;
        let mut config = LoadConfig::new(10.0, Duration::from_millis(200), Mix::only(Kind::Health));
        config.timeout = Duration::from_millis(200);
        let handle = start(config, Fixture::bare(gateway)).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(3), handle.finish(false))
            .await
            .expect("the run ends within its timeouts");
        assert_eq!(report.sent, 2);
        assert_eq!(report.counts.transport, 2, "{:?}", report.counts);
        assert_eq!(report.transport_errors.get("timeout"), Some(&2));
        assert_eq!(report.latency_ms.count, 0);
    }

    /// A user's bearer header is made once and made again only when the token changes.
    #[test]
    fn bearer_headers_follow_the_token() {
        let mut b = Bearers::default();
        let a: Arc<str> = Arc::from("t-a");
        assert_eq!(b.header(1, a.clone()).unwrap(), "Bearer t-a");
        assert_eq!(b.header(1, a).unwrap(), "Bearer t-a");
        assert_eq!(b.header(1, Arc::from("t-b")).unwrap(), "Bearer t-b");
        assert_eq!(b.header(0, Arc::from("t-c")).unwrap(), "Bearer t-c");
        assert!(b.header(0, Arc::from("bad\nvalue")).is_none());
    }
}
