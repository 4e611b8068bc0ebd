//! The schedule and the requests: request `i` is due at `start + i / rate`. Drivers (one
//! thread each with its own event loop and connections, like wrk's threads: one per
//! [`RATE_PER_DRIVER`] requests/s, at most one per core) take the next index from a shared
//! counter, wait for its due time (batching the ones already due), start the request or count
//! it as dropped, and move on, so a slow answer never delays the next request. Each request
//! measures from its due time to the end of the answer's body; each driver records outcomes in
//! its own counters (a lock only it and the readers take), which [`LoadHandle`] merges while
//! the run goes on.
//!
//! **The client.** Each driver is an `epoll` loop (mio) over keep-alive HTTP/1.1 connections
//! to the gateway: a request is written whole from bytes made once per run (request line,
//! `Host`, each product's order body, each user's `Authorization` line, remade only when the
//! token changes), and the answer is read in place by [`super::http::Answer`], which looks at
//! the status line and the headers that frame the body and keeps the body only when it
//! matters (a 503 problem+json for fallback detection, an accepted order's number). A request
//! takes an idle connection, else opens one while the driver has fewer than its share of
//! `connections` open, else waits in the driver's queue (in due order) for the next connection
//! that frees up; so the pool is as large as the requests in flight at once (rate × latency), at
//! most `connections`, and a stall of the server does not open hundreds of connections through
//! Docker's proxy just as it recovers (wrk2 keeps a fixed `-c` for the same reason). Queued
//! requests count as in flight and time out like sent ones. Nothing is allocated per request and
//! there is no task, future or timer per request: timeouts are a queue in send order. This
//! keeps the generator's CPU per request near wrk's, so on a small machine the generator does
//! not take the CPU the system under test needs.
//!
//! **Failures are the server's or the network's.** A request only fails when its answer is not
//! complete within the timeout (`timeout`; `connect` when the connection was never made), the
//! connection is refused or breaks (`connect`, `broken`), or the answer is not HTTP/1.1
//! (`protocol`: a malformed or oversized head, bad chunked framing, bytes after the answer). A
//! kept-alive connection the server closed while it was idle is opened again and the request
//! sent once more, as browsers do (the request was never read). Requests due while
//! `max_in_flight` are out are `dropped`, counted apart.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::http::{Answer, MAX_HEAD};
use super::report::{
    self, AcceptedOrder, Counts, KindReport, Latency, LoadReport, Outcome, SecondReport,
};
use super::{Fixture, Kind, LoadConfig, LoadError, TokenPool};

/// Most driver threads, whatever the rate and the cores.
const MAX_DRIVERS: usize = 8;
/// Requests per second one driver thread is planned for.
const RATE_PER_DRIVER: f64 = 20_000.0;
/// Longest a driver sleeps without looking at the schedule and the stop signal.
const MAX_WAIT: Duration = Duration::from_millis(50);

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
    /// Request bytes made once, so a request formats next to nothing.
    targets: Targets,
    /// The due time of request 0.
    start: Instant,
    /// Stops the schedule early.
    cancel: CancellationToken,
    /// The next request index a driver takes.
    next: AtomicU64,
    /// Requests whose due time has come (sent or dropped).
    scheduled: AtomicU64,
    /// Requests written to a connection (or being connected for).
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

/// The requests of one product: its `GET`, its stock's `GET` and an order of it, each up to
/// the headers that change per request, and the order's body.
struct ProductRequests {
    get: Vec<u8>,
    stock: Vec<u8>,
    order: Vec<u8>,
    body: Vec<u8>,
}

/// Where requests go and their bytes, made once per run.
struct Targets {
    addr: SocketAddr,
    /// `GET /health/live`, whole.
    health: Vec<u8>,
    /// `GET` of the user's latest orders, up to the `Authorization` line.
    order_reads: Vec<u8>,
    products: Vec<ProductRequests>,
    /// `Idempotency-Key: load-{run id}-`, completed by the request's index.
    key_prefix: Vec<u8>,
}

/// Whether `s` may stand in a request target as it is (no space, control or non-ASCII
/// byte, nothing that ends the path).
fn plain_target(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@".contains(&b))
}

/// Whether `s` may stand in a header value as it is.
fn plain_header(s: &[u8]) -> bool {
    s.iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b) || *b >= 0x80)
}

impl Targets {
    fn new(f: &Fixture) -> Result<Targets, LoadError> {
        let bad = |m: String| Err(LoadError::Config(m));
        if f.gateway.scheme() != "http" {
            return bad(format!(
                "load sends plain HTTP; `{}` is not an http:// URL",
                f.gateway
            ));
        }
        let Some(host) = f.gateway.host_str() else {
            return bad(format!("`{}` names no host", f.gateway));
        };
        let port = f.gateway.port_or_known_default().unwrap_or(80);
        let addrs = f
            .gateway
            .socket_addrs(|| Some(80))
            .map_err(|e| LoadError::Config(format!("cannot resolve `{}`: {e}", f.gateway)))?;
        let Some(addr) = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
        else {
            return bad(format!("`{}` resolves to no address", f.gateway));
        };
        let base = f.gateway.path().trim_end_matches('/');
        let head = |method: &str, path: &str| -> Vec<u8> {
            format!("{method} {base}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes()
        };
        let mut products = Vec::with_capacity(f.products.len());
        for p in &f.products {
            for part in [&p.id, &p.sku] {
                if !plain_target(part) {
                    return bad(format!(
                        "product `{part}` cannot stand in a request path as it is"
                    ));
                }
            }
            let body = serde_json::json!({
                "lines": [{ "skuCode": p.sku, "price": super::fixture::PRICE, "quantity": 1 }]
            })
            .to_string()
            .into_bytes();
            let mut order = head("POST", "/api/order");
            order.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            products.push(ProductRequests {
                get: head("GET", &format!("/api/product/{}", p.id)),
                stock: head("GET", &format!("/api/inventory/{}", p.sku)),
                order,
                body,
            });
        }
        let key_prefix = format!("Idempotency-Key: load-{}-", f.run_id).into_bytes();
        if !plain_header(&key_prefix) {
            return bad(format!(
                "run id `{}` cannot stand in a header as it is",
                f.run_id
            ));
        }
        let mut health = head("GET", "/health/live");
        health.extend_from_slice(b"\r\n");
        Ok(Targets {
            addr,
            health,
            order_reads: head("GET", "/api/order?page=0&size=5"),
            products,
            key_prefix,
        })
    }
}

/// A user's token and its `Authorization` line (`None` when it cannot stand in a header).
type Bearer = (Arc<str>, Option<Vec<u8>>);

/// A driver's `Authorization` lines, one per user, remade only when the token changes.
#[derive(Default)]
struct Bearers {
    cached: Vec<Option<Bearer>>,
}

impl Bearers {
    /// User `user`'s `Authorization: Bearer …` line for `token`; `None` when the token
    /// cannot stand in a header (the request then goes without one).
    fn line(&mut self, user: usize, token: Arc<str>) -> Option<&[u8]> {
        if self.cached.len() <= user {
            self.cached.resize(user + 1, None);
        }
        let fresh = match &self.cached[user] {
            Some((t, _)) => !(Arc::ptr_eq(t, &token) || **t == *token),
            None => true,
        };
        if fresh {
            let line = plain_header(token.as_bytes())
                .then(|| format!("Authorization: Bearer {token}\r\n").into_bytes());
            self.cached[user] = Some((token, line));
        }
        self.cached[user].as_ref().and_then(|(_, l)| l.as_deref())
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
    let polls = (0..drivers)
        .map(|_| {
            Poll::new()
                .map_err(|e| LoadError::Config(format!("cannot make the load event loop: {e}")))
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
    for (d, poll) in polls.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("load-{d}"))
            .spawn(move || {
                Driver::new(&sh, d, poll).run();
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

/// How one request ended.
struct Ended {
    kind: Kind,
    due: Instant,
    outcome: Outcome,
    /// From the due time to the end of the answer (answers only).
    latency: Option<Duration>,
    order: Option<AcceptedOrder>,
}

/// A request on a connection.
#[derive(Clone, Copy)]
struct Req {
    kind: Kind,
    due: Instant,
    user: Option<usize>,
}

/// One keep-alive connection to the gateway.
struct Conn {
    stream: TcpStream,
    connected: bool,
    /// Answers completed on it (a reused connection may have been closed while idle).
    answered: u64,
    /// Whether its request was already sent once more on a new connection.
    retried: bool,
    /// The request's bytes and how many are written.
    out: Vec<u8>,
    written: usize,
    /// Bytes received and not yet taken by `answer` (a head in pieces).
    buf: Box<[u8]>,
    filled: usize,
    answer: Answer,
    /// The request in flight, if any.
    req: Option<Req>,
    /// The request's number on this driver (matches its timeout entry).
    seq: u64,
}

/// One driver thread: its event loop, connections and requests in flight.
struct Driver<'a> {
    shared: &'a Shared,
    d: usize,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    /// Slots of `conns` without a connection.
    free: Vec<usize>,
    /// Connections without a request, the last used on top.
    idle: Vec<usize>,
    /// `(slot, seq, deadline)` of each request sent, in send order (so in deadline order).
    deadlines: VecDeque<(usize, u64, Instant)>,
    /// Requests in flight on this driver (sent, not queued).
    busy: usize,
    /// Requests due while every connection this driver may open was busy: `(i, kind, due)`, in
    /// due order.
    waiting: VecDeque<(u64, Kind, Instant)>,
    /// Most connections this driver keeps open (its share of `connections`).
    max_conns: usize,
    seq: u64,
    bearers: Bearers,
}

impl<'a> Driver<'a> {
    fn new(shared: &'a Shared, d: usize, poll: Poll) -> Self {
        let drivers = shared.stats.len().max(1);
        Driver {
            shared,
            d,
            poll,
            conns: Vec::new(),
            free: Vec::new(),
            idle: Vec::new(),
            deadlines: VecDeque::new(),
            busy: 0,
            waiting: VecDeque::new(),
            max_conns: shared.config.connections.div_ceil(drivers).max(1),
            seq: 0,
            bearers: Bearers::default(),
        }
    }

    /// Takes due request indices from the shared counter and starts each at its due time (or
    /// counts it as dropped when `max_in_flight` are outstanding), handling answers in
    /// between, until the plan is done or the run is stopped and its last request has ended.
    fn run(mut self) {
        let shared = self.shared;
        if !shared.stall.is_zero() {
            std::thread::sleep(shared.stall);
        }
        let planned = shared.config.planned();
        let mut next = shared.claim(planned);
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if next.is_some() && shared.cancel.is_cancelled() {
                next = None;
            }
            while let Some(i) = next {
                let at = shared.due(i);
                if at > now {
                    break;
                }
                self.schedule(i, at);
                next = shared.claim(planned);
            }
            self.expire(now);
            self.start_waiting();
            if next.is_none() && self.busy == 0 && self.waiting.is_empty() {
                break;
            }
            let mut wait = MAX_WAIT;
            if let Some(i) = next {
                wait = wait.min(shared.due(i).saturating_duration_since(now));
            }
            if let Some((_, _, deadline)) = self.deadlines.front() {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            if let Some((_, _, due)) = self.waiting.front() {
                wait = wait.min((*due + shared.config.timeout).saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                // The event loop itself failed: end what is out and stop.
                self.abort();
                break;
            }
            for ev in events.iter() {
                self.on_event(ev.token().0, ev.is_read_closed() || ev.is_error());
            }
            // Connections freed by those answers take the queued requests first.
            self.start_waiting();
        }
    }

    /// Connections open on this driver.
    fn open_conns(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Starts queued requests while a connection is idle or may be opened.
    fn start_waiting(&mut self) {
        while let Some((i, kind, at)) = self.waiting.pop_front() {
            if !self.dispatch(i, kind, at) {
                self.waiting.push_front((i, kind, at));
                return;
            }
        }
    }

    /// Request `i` of `kind`, due at `at`, on a connection: the last idle one, or a new one while
    /// fewer than `max_conns` are open (a connection that cannot be opened ends the request as a
    /// connect failure). `false`, and nothing done, when every connection is busy at the cap.
    fn dispatch(&mut self, i: u64, kind: Kind, at: Instant) -> bool {
        let slot = match self.idle.pop() {
            Some(s) => s,
            None if self.open_conns() < self.max_conns => match self.open() {
                Some(s) => s,
                None => {
                    record(self.shared, self.d, ended(kind, at, Outcome::Connect));
                    return true;
                }
            },
            None => return false,
        };
        self.send(slot, i, kind, at);
        true
    }

    /// Request `i`, due at `at`: sent, or dropped when `max_in_flight` are outstanding.
    fn schedule(&mut self, i: u64, at: Instant) {
        let shared = self.shared;
        let kind = shared.config.mix.pick(i);
        shared.scheduled.fetch_add(1, Ordering::Relaxed);
        // Taking the slot first keeps the bound exact with several drivers.
        if shared.outstanding.fetch_add(1, Ordering::AcqRel) >= shared.config.max_in_flight as u64 {
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            record(shared, self.d, ended(kind, at, Outcome::Dropped));
            return;
        }
        // Requests queued earlier go first: wait behind them.
        if !self.waiting.is_empty() || !self.dispatch(i, kind, at) {
            self.waiting.push_back((i, kind, at));
        }
    }

    /// Sends request `i` of `kind`, due at `at`, on `slot`'s connection (idle or just opened).
    /// Requests are sent in due order, so their deadlines queue in order too.
    fn send(&mut self, slot: usize, i: u64, kind: Kind, at: Instant) {
        let shared = self.shared;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        self.seq += 1;
        let seq = self.seq;
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let user = build(shared, &mut self.bearers, &mut conn.out, i, kind);
        conn.written = 0;
        conn.filled = 0;
        conn.retried = false;
        conn.answer
            .reset(kind == Kind::Orders && shared.config.record_orders);
        conn.req = Some(Req {
            kind,
            due: at,
            user,
        });
        conn.seq = seq;
        let connected = conn.connected;
        self.busy += 1;
        // The timeout runs from the due time, like the latency: a request that waited for a
        // connection has that much less left.
        self.deadlines
            .push_back((slot, seq, at + shared.config.timeout));
        if connected {
            self.flush(slot);
        }
    }

    /// Opens a connection in a free slot; `None` when it cannot even be started.
    fn open(&mut self) -> Option<usize> {
        let mut stream = TcpStream::connect(self.shared.targets.addr).ok()?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.free.push(slot);
            return None;
        }
        self.conns[slot] = Some(Conn {
            stream,
            connected: false,
            answered: 0,
            retried: false,
            out: Vec::with_capacity(512),
            written: 0,
            buf: vec![0; MAX_HEAD].into_boxed_slice(),
            filled: 0,
            answer: Answer::default(),
            req: None,
            seq: 0,
        });
        Some(slot)
    }

    /// Sends the request of `slot`'s connection again on a new connection (the old one was
    /// closed by the server before it read the request).
    fn reopen(&mut self, slot: usize) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let stream = match TcpStream::connect(self.shared.targets.addr) {
            Ok(s) => s,
            Err(_) => return self.fail(slot, Outcome::Connect),
        };
        conn.stream = stream;
        conn.connected = false;
        conn.answered = 0;
        conn.retried = true;
        conn.written = 0;
        conn.filled = 0;
        let keep = conn
            .req
            .is_some_and(|r| r.kind == Kind::Orders && self.shared.config.record_orders);
        conn.answer.reset(keep);
        if self
            .poll
            .registry()
            .register(
                &mut conn.stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.fail(slot, Outcome::Connect);
        }
    }

    /// Whether a failure of `slot`'s request is the server closing a kept-alive connection
    /// before it read the request, which is worth one more try.
    fn stale(&self, slot: usize) -> bool {
        self.conns[slot].as_ref().is_some_and(|c| {
            c.answered > 0 && !c.retried && c.filled == 0 && c.answer.is_untouched()
        })
    }

    /// Something happened on `slot`'s connection; `closed` when the server ended it (or it
    /// failed).
    fn on_event(&mut self, slot: usize, closed: bool) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if conn.req.is_none() {
            // An idle connection: the server closed it, or sent what nobody asked for.
            let mut byte = [0u8; 1];
            match conn.stream.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => {
                    self.idle.retain(|s| *s != slot);
                    self.close(slot);
                }
            }
            return;
        }
        if !conn.connected {
            match conn.stream.take_error() {
                Ok(None) => {}
                _ => return self.fail(slot, Outcome::Connect),
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    conn.connected = true;
                    let _ = conn.stream.set_nodelay(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.fail(slot, Outcome::Connect),
            }
        }
        if conn.written < conn.out.len() {
            self.flush(slot);
        }
        self.receive(slot, closed);
    }

    /// Writes what is left of `slot`'s request.
    fn flush(&mut self, slot: usize) {
        loop {
            let Some(conn) = self.conns[slot].as_mut() else {
                return;
            };
            if conn.written >= conn.out.len() {
                return;
            }
            match conn.stream.write(&conn.out[conn.written..]) {
                Ok(0) => return self.fail(slot, Outcome::Broken),
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.stale(slot) => return self.reopen(slot),
                Err(_) => return self.fail(slot, Outcome::Broken),
            }
        }
    }

    /// Reads what has arrived on `slot`'s connection and ends its request when the answer is
    /// complete; `closed` reads on to the end of the connection.
    fn receive(&mut self, slot: usize, closed: bool) {
        loop {
            let Some(conn) = self.conns[slot].as_mut() else {
                return;
            };
            if conn.req.is_none() {
                return;
            }
            let spare = conn.buf.len() - conn.filled;
            match conn.stream.read(&mut conn.buf[conn.filled..]) {
                Ok(0) => {
                    if self.stale(slot) {
                        return self.reopen(slot);
                    }
                    let Some(conn) = self.conns[slot].as_mut() else {
                        return;
                    };
                    return match conn.answer.eof() {
                        Ok(()) => self.complete(slot),
                        Err(_) => self.fail(slot, Outcome::Broken),
                    };
                }
                Ok(n) => {
                    let total = conn.filled + n;
                    match conn.answer.feed(&conn.buf[..total]) {
                        Err(_) => return self.fail(slot, Outcome::Protocol),
                        Ok(taken) if conn.answer.is_done() => {
                            // One answer per request: anything more is not HTTP.
                            return if taken < total {
                                self.fail(slot, Outcome::Protocol)
                            } else {
                                self.complete(slot)
                            };
                        }
                        Ok(taken) => {
                            conn.buf.copy_within(taken..total, 0);
                            conn.filled = total - taken;
                        }
                    }
                    // Edge-triggered: a read that did not fill the buffer emptied the socket,
                    // and whatever arrives next is a new event; but the end of the connection
                    // may have come with the data, and then no event follows.
                    if n < spare && !closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.stale(slot) => return self.reopen(slot),
                Err(_) => return self.fail(slot, Outcome::Broken),
            }
        }
    }

    /// `slot`'s answer is complete: records it; the connection goes idle, or is closed when
    /// the server said so.
    fn complete(&mut self, slot: usize) {
        let shared = self.shared;
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let Some(req) = conn.req.take() else {
            return;
        };
        self.busy -= 1;
        conn.answered += 1;
        conn.filled = 0;
        let a = &conn.answer;
        let status = a.status;
        let fallback = status == 503 && a.problem && is_fallback(&a.body);
        let order = (req.kind == Kind::Orders && status == 201 && shared.config.record_orders)
            .then(|| order_number(&a.body))
            .flatten()
            .map(|order_number| AcceptedOrder {
                order_number,
                user: req.user.unwrap_or(0),
            });
        let close = a.close;
        record(
            shared,
            self.d,
            Ended {
                kind: req.kind,
                due: req.due,
                outcome: Outcome::Answer { status, fallback },
                latency: Some(req.due.elapsed()),
                order,
            },
        );
        if close {
            self.close(slot);
        } else {
            self.idle.push(slot);
        }
    }

    /// `slot`'s request failed: records it and closes the connection.
    fn fail(&mut self, slot: usize, outcome: Outcome) {
        if let Some(req) = self.conns[slot].as_mut().and_then(|c| c.req.take()) {
            self.busy -= 1;
            record(self.shared, self.d, ended(req.kind, req.due, outcome));
        }
        self.close(slot);
    }

    fn close(&mut self, slot: usize) {
        if self.conns[slot].take().is_some() {
            self.free.push(slot);
        }
    }

    /// Ends requests whose timeout has passed (`connect` when their connection was never
    /// made; `timeout` for queued ones, from their due time), dropping queue entries of
    /// requests that already ended.
    fn expire(&mut self, now: Instant) {
        let timeout = self.shared.config.timeout;
        while let Some(&(_, kind, at)) = self.waiting.front() {
            if at + timeout > now {
                break;
            }
            self.waiting.pop_front();
            record(self.shared, self.d, ended(kind, at, Outcome::Timeout));
        }
        while let Some(&(slot, seq, deadline)) = self.deadlines.front() {
            let live = self.conns[slot]
                .as_ref()
                .filter(|c| c.seq == seq && c.req.is_some());
            match live {
                None => {}
                Some(_) if deadline > now => return,
                Some(c) => {
                    let outcome = if c.connected {
                        Outcome::Timeout
                    } else {
                        Outcome::Connect
                    };
                    self.fail(slot, outcome);
                }
            }
            self.deadlines.pop_front();
        }
    }

    /// Ends every request in flight as broken (the event loop failed).
    fn abort(&mut self) {
        for slot in 0..self.conns.len() {
            self.fail(slot, Outcome::Broken);
        }
        while let Some((_, kind, at)) = self.waiting.pop_front() {
            record(self.shared, self.d, ended(kind, at, Outcome::Broken));
        }
    }
}

/// A request that ended without an answer.
fn ended(kind: Kind, due: Instant, outcome: Outcome) -> Ended {
    Ended {
        kind,
        due,
        outcome,
        latency: None,
        order: None,
    }
}

/// Writes request `i` of `kind` into `out` from the prepared parts; the user whose token it
/// carries.
fn build(
    shared: &Shared,
    bearers: &mut Bearers,
    out: &mut Vec<u8>,
    i: u64,
    kind: Kind,
) -> Option<usize> {
    let t = &shared.targets;
    out.clear();
    let product =
        (!t.products.is_empty()).then(|| &t.products[(i % t.products.len() as u64) as usize]);
    let mut body: &[u8] = &[];
    match (kind, product) {
        (Kind::Orders, Some(p)) => {
            out.extend_from_slice(&p.order);
            out.extend_from_slice(&t.key_prefix);
            let _ = write!(out, "{i}\r\n");
            body = &p.body;
        }
        (Kind::Products, Some(p)) => out.extend_from_slice(&p.get),
        (Kind::Stock, Some(p)) => out.extend_from_slice(&p.stock),
        (Kind::OrderReads, _) => out.extend_from_slice(&t.order_reads),
        _ => {
            out.extend_from_slice(&t.health);
            return None;
        }
    }
    let mut user = None;
    if kind.needs_token()
        && let Some(pool) = &shared.fixture.tokens
    {
        let n = shared.per_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
        let (who, token) = pool.pick(n);
        user = Some(who);
        if let Some(line) = bearers.line(who, token) {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    user
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
            Outcome::Protocol => *ks.transport.entry("protocol").or_default() += 1,
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

    /// At most `connections` are opened: requests due while every one is busy wait for one (none
    /// dropped, none failed) and their latency includes the wait; a queued request that cannot
    /// get a connection within the timeout times out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_bounded_and_waits_count() {
        use std::io::Write;
        static ACCEPTED: AtomicU64 = AtomicU64::new(0);
        let slow = raw_server(|mut s| {
            ACCEPTED.fetch_add(1, Ordering::SeqCst);
            while read_request(&mut s) {
                std::thread::sleep(Duration::from_millis(100));
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nUP")
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut config = LoadConfig::new(50.0, Duration::from_millis(200), Mix::only(Kind::Health));
        config.connections = 2;
        let handle = launch(
            config.clone(),
            Fixture::bare(slow.clone()),
            1,
            Duration::ZERO,
        )
        .unwrap();
        let report = tokio::time::timeout(Duration::from_secs(10), handle.finish(false))
            .await
            .expect("the run ends");
        assert_eq!(report.scheduled, 10);
        assert_eq!(report.sent, 10);
        assert_eq!(report.counts.ok, 10, "{:?}", report.counts);
        assert_eq!(ACCEPTED.load(Ordering::SeqCst), 2);
        // Ten answers of 100 ms on two connections: the last is answered ~500 ms after the
        // first was due, ~320 ms after its own due time.
        assert!(report.latency_ms.max >= 250.0, "{:?}", report.latency_ms);
        // With a timeout shorter than the queue, the requests at its end time out waiting.
        config.timeout = Duration::from_millis(250);
        let handle = launch(config, Fixture::bare(slow), 1, Duration::ZERO).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(10), handle.finish(false))
            .await
            .expect("the run ends");
        assert_eq!(report.counts.total, 10, "{:?}", report.counts);
        assert!(report.counts.ok >= 4, "{:?}", report.counts);
        assert!(
            report.transport_errors.get("timeout").copied().unwrap_or(0) >= 2,
            "{report:?}"
        );
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

    /// A server on the loopback that hands every connection to `handle` on its own thread.
    fn raw_server(handle: fn(std::net::TcpStream)) -> Url {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || handle(stream));
            }
        });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    /// Reads one request head (ours have no body for `health`); false at the end.
    fn read_request(s: &mut std::net::TcpStream) -> bool {
        use std::io::Read;
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        true
    }

    async fn run_health(gateway: Url, rate: f64, ms: u64) -> LoadReport {
        let mut config = LoadConfig::new(rate, Duration::from_millis(ms), Mix::only(Kind::Health));
        config.timeout = Duration::from_secs(2);
        let handle = start(config, Fixture::bare(gateway)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle.finish(false))
            .await
            .expect("the run ends")
    }

    /// A server that answers with something that is not HTTP, or with a head that never
    /// ends, gives `protocol` failures, never a hang or a panic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_answers_are_protocol_failures() {
        use std::io::Write;
        let garbage = raw_server(|mut s| {
            while read_request(&mut s) {
                let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n");
            }
        });
        let report = run_health(garbage, 20.0, 250).await;
        assert_eq!(report.counts.total, 5);
        assert_eq!(
            report.transport_errors.get("protocol"),
            Some(&5),
            "{report:?}"
        );
        let endless = raw_server(|mut s| {
            if read_request(&mut s) {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nx-long: ");
                let junk = vec![b'a'; 4096];
                while s.write_all(&junk).is_ok() {}
            }
        });
        let report = run_health(endless, 20.0, 100).await;
        assert_eq!(report.counts.total, 2);
        assert_eq!(
            report.transport_errors.get("protocol"),
            Some(&2),
            "{report:?}"
        );
        // Two answers for one request.
        let twice = raw_server(|mut s| {
            while read_request(&mut s) {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nUPHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nUP",
                );
            }
        });
        let report = run_health(twice, 20.0, 100).await;
        assert_eq!(
            report.transport_errors.get("protocol"),
            Some(&2),
            "{report:?}"
        );
    }

    /// A server that closes a kept-alive connection instead of answering its next request
    /// (an idle timeout racing the request) gets the request again on a new connection; one
    /// that closes in the middle of an answer gives `broken`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_connections_are_reopened_or_broken() {
        use std::io::Write;
        let once = raw_server(|mut s| {
            if read_request(&mut s) {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nUP\r\n0\r\n\r\n",
                );
            }
            // The next request on this connection is read and never answered.
            let _ = read_request(&mut s);
        });
        let report = run_health(once, 20.0, 300).await;
        assert_eq!(report.counts.total, 6);
        assert_eq!(report.counts.ok, 6, "{report:?}");
        let cut = raw_server(|mut s| {
            if read_request(&mut s) {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nUP");
            }
        });
        let report = run_health(cut, 20.0, 100).await;
        assert_eq!(
            report.transport_errors.get("broken"),
            Some(&2),
            "{report:?}"
        );
    }

    /// A user's `Authorization` line is made once and made again only when the token
    /// changes; a token that cannot stand in a header gives none.
    #[test]
    fn bearer_lines_follow_the_token() {
        let mut b = Bearers::default();
        let a: Arc<str> = Arc::from("t-a");
        let line = |t: &str| format!("Authorization: Bearer {t}\r\n").into_bytes();
        assert_eq!(b.line(1, a.clone()).unwrap(), line("t-a"));
        assert_eq!(b.line(1, a).unwrap(), line("t-a"));
        assert_eq!(b.line(1, Arc::from("t-b")).unwrap(), line("t-b"));
        assert_eq!(b.line(0, Arc::from("t-c")).unwrap(), line("t-c"));
        assert!(b.line(0, Arc::from("bad\nvalue")).is_none());
        assert!(b.line(0, Arc::from("bad\r\nx: y")).is_none());
    }
}
