//! Network faults without netem: a userspace agent on an NFQUEUE.
//!
//! Where the kernel has no netem queueing discipline (`CONFIG_NET_SCH_NETEM` unset) but has
//! `nfnetlink_queue`, `latency`, `corrupt` and `duplicate` are made by a **fault agent**: a
//! detached `platform fault-agent` process started with `nsenter --net` into the container's
//! network namespace, in its own process group, bound to queue [`QUEUE`] there. An iptables rule
//! in that namespace sends what the container sends on its stack interface (the direction netem
//! acts on; loopback stays out) to the queue:
//!
//! `-A OUTPUT -o eth0 -m mark ! --mark 0x504c -m comment --comment platform-fault:ID -j NFQUEUE
//! --queue-num 47 --queue-bypass`
//!
//! - `latency`: each packet is held and accepted after its delay, `delay ± jitter` drawn
//!   uniformly, never earlier than the packet before it of the same flow (so one TCP
//!   connection's segments stay in order, as with netem's `pfifo`). At most [`HELD_LIMIT`]
//!   packets are held (netem's default limit); one more is dropped, as netem does. The agent
//!   copies only the first [`HEADER_COPY`] bytes of each packet from the kernel, so what it holds
//!   is bounded to about `HELD_LIMIT` × 4 KiB of buffers.
//! - `corrupt`: `--percent` of packets get one random bit flipped after the IP header, and the
//!   kernel no longer trusts their checksum, so the receiver drops them as corrupted.
//! - `duplicate`: `--percent` of packets are sent twice; the copy goes out through a raw socket
//!   with the mark `0x504c`, which the rule lets pass.
//!
//! Safety: `--queue-bypass` makes the kernel pass packets when no agent listens, so a dead agent
//! never blackholes the container. The agent exits by itself when the container's namespace is
//! no longer its own (the container stopped) or after its lifetime (the fault's duration plus a
//! margin), and on SIGTERM it accepts whatever it holds, in order, first. Revert deletes the rule
//! and stops the agent's process group; both are verified gone.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The NFQUEUE number the agent binds in the container's namespace (one network fault per
/// container, and queues are per namespace).
pub const QUEUE: u16 = 47;
/// The mark that lets the agent's own packets (duplicates) pass the rule.
pub const MARK: u32 = 0x504c;
/// The most packets held at once by a latency agent (netem's default `limit`).
pub const HELD_LIMIT: usize = 1000;
/// Bytes of each packet a latency agent reads: enough for the IP and transport headers that
/// name its flow.
pub const HEADER_COPY: u16 = 128;
/// What names an agent process in `/proc/<pid>/cmdline`.
pub const SUBCOMMAND: &str = "fault-agent";
/// How often the agent looks for packets while idle or holding some: the resolution of the
/// delay it adds.
const TICK: Duration = Duration::from_millis(1);
/// The most packets the agent takes from the queue in one pass before it releases the packets
/// that are due and looks at its stop conditions again: under steady traffic the queue is never
/// empty, and reading it dry first would hold due packets (and SIGTERM) back.
pub const RECV_BATCH: usize = 256;
/// The longest delay (and jitter) an agent adds: a latency fault's own bound (`--delay` in
/// (0, 60s]). Larger values on the hidden command line are refused, not left to overflow.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// What an agent does to each packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Latency { delay: Duration, jitter: Duration },
    Corrupt { percent: f64 },
    Duplicate { percent: f64 },
}

/// When held packets are released: per packet `arrival + delay ± jitter`, never before the
/// previous packet of its flow, at most `limit` held; released in time order (pure, so ordering,
/// jitter bounds and the bound are tested with made-up instants).
#[derive(Debug)]
pub struct Schedule<T> {
    delay: Duration,
    jitter: Duration,
    limit: usize,
    seq: u64,
    heap: BinaryHeap<Reverse<Entry<T>>>,
    /// The release time of the last packet of each flow still held or released at or after now.
    last: HashMap<u64, Instant>,
}

#[derive(Debug)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl<T> Schedule<T> {
    pub fn new(delay: Duration, jitter: Duration, limit: usize) -> Self {
        Schedule {
            delay,
            jitter,
            limit,
            seq: 0,
            heap: BinaryHeap::new(),
            last: HashMap::new(),
        }
    }

    /// Holds `item` of `flow`, arrived at `now`, until its release time, which it returns;
    /// gives the item back when `limit` are held already. `random` is any uniformly drawn
    /// number (it picks the jitter).
    pub fn admit(&mut self, now: Instant, flow: u64, random: u64, item: T) -> Result<Instant, T> {
        if self.heap.len() >= self.limit {
            return Err(item);
        }
        // Saturating throughout: no delay or jitter, however large, overflows (the agent refuses
        // values past MAX_DELAY; this keeps the schedule itself panic-free).
        let jitter = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX / 4);
        let span = jitter.saturating_mul(2).saturating_add(1);
        let offset = i128::from(random % span) - i128::from(jitter);
        let delay = i128::try_from(self.delay.as_micros())
            .unwrap_or(i128::MAX / 4)
            .saturating_add(offset)
            .clamp(0, i128::from(u64::MAX));
        let delay = Duration::from_micros(u64::try_from(delay).unwrap_or(u64::MAX));
        // An instant past what the clock can hold: the farthest it can (never released before
        // the agent ends and drains).
        let mut at = now
            .checked_add(delay)
            .or_else(|| now.checked_add(MAX_DELAY * 1000))
            .unwrap_or(now);
        if let Some(&prev) = self.last.get(&flow) {
            at = at.max(prev);
        }
        if self.last.len() > 4 * self.limit {
            // Flows whose last packet is already due cannot hold a later one back.
            self.last.retain(|_, t| *t > now);
        }
        self.last.insert(flow, at);
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            item,
        }));
        Ok(at)
    }

    /// The earliest release time held.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The next item due at `now`, in release order (ties in arrival order).
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_due()? <= now {
            self.heap.pop().map(|Reverse(e)| e.item)
        } else {
            None
        }
    }

    /// Everything held, in release order (shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(Reverse(e)) = self.heap.pop() {
            out.push(e.item);
        }
        self.last.clear();
        out
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A hash of the packet's flow: protocol, addresses and (TCP, UDP, SCTP) ports of an IPv4 or
/// IPv6 packet; everything unparsable is one flow.
pub fn flow_of(packet: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let ports = |at: usize| packet.get(at..at + 4);
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let proto = packet[9];
            (4u8, proto, &packet[12..20]).hash(&mut h);
            if matches!(proto, 6 | 17 | 132) {
                ports(ihl).hash(&mut h);
            }
        }
        Some(6) if packet.len() >= 40 => {
            let proto = packet[6];
            (6u8, proto, &packet[8..40]).hash(&mut h);
            if matches!(proto, 6 | 17 | 132) {
                ports(40).hash(&mut h);
            }
        }
        _ => 0u8.hash(&mut h),
    }
    h.finish()
}

/// Flips one bit of `packet` after its IPv4 header, chosen by `random`; false when there is
/// nothing after the header.
pub fn corrupt(packet: &mut [u8], random: u64) -> bool {
    let header = match packet.first() {
        Some(b) if b >> 4 == 4 => usize::from(b & 0x0f) * 4,
        Some(b) if b >> 4 == 6 => 40,
        _ => 0,
    };
    let Some(bits) = packet.len().checked_sub(header).filter(|n| *n > 0) else {
        return false;
    };
    let bit = usize::try_from(random % (bits as u64 * 8)).unwrap_or(0);
    packet[header + bit / 8] ^= 1 << (bit % 8);
    true
}

/// The IPv4 destination of a packet.
fn ipv4_destination(packet: &[u8]) -> Option<std::net::Ipv4Addr> {
    (packet.first()? >> 4 == 4 && packet.len() >= 20)
        .then(|| std::net::Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]))
}

/// True with probability `percent` / 100, from a uniformly drawn number.
pub fn hit(percent: f64, random: u64) -> bool {
    // In millionths: percentages down to 0.0001 % are honoured.
    ((random % 1_000_000) as f64) < percent * 10_000.0
}

/// The agent's command line after `platform fault-agent` (pure, tested): what the spawner
/// passes and [`AgentArgs`] parses back.
pub fn agent_args(
    fault: &str,
    container: &str,
    watch_pid: i64,
    lifetime: Duration,
    mode: Mode,
) -> Vec<String> {
    let mut args = vec![
        "--fault".to_string(),
        fault.to_string(),
        "--container".into(),
        container.into(),
        "--watch-pid".into(),
        watch_pid.to_string(),
        "--lifetime-secs".into(),
        lifetime.as_secs().to_string(),
        "--queue".into(),
        QUEUE.to_string(),
    ];
    match mode {
        Mode::Latency { delay, jitter } => args.extend([
            "--delay-us".into(),
            delay.as_micros().to_string(),
            "--jitter-us".into(),
            jitter.as_micros().to_string(),
        ]),
        Mode::Corrupt { percent } => args.extend(["--corrupt-percent".into(), percent.to_string()]),
        Mode::Duplicate { percent } => {
            args.extend(["--duplicate-percent".into(), percent.to_string()])
        }
    }
    args
}

/// `platform fault-agent` arguments (started by the fault machinery, never by users).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The fault this agent makes (names it in the process list and its log).
    #[arg(long)]
    pub fault: String,
    /// The container it acts for (for leftover checks).
    #[arg(long)]
    pub container: String,
    /// The container's main process: the agent exits when its namespace is no longer that one.
    #[arg(long)]
    pub watch_pid: i64,
    /// Exit after this long whatever happens.
    #[arg(long)]
    pub lifetime_secs: u64,
    #[arg(long, default_value_t = QUEUE)]
    pub queue: u16,
    #[arg(long, requires = "jitter_us", conflicts_with_all = ["corrupt_percent", "duplicate_percent"])]
    pub delay_us: Option<u64>,
    #[arg(long)]
    pub jitter_us: Option<u64>,
    #[arg(long, conflicts_with = "duplicate_percent")]
    pub corrupt_percent: Option<f64>,
    #[arg(long)]
    pub duplicate_percent: Option<f64>,
}

impl AgentArgs {
    pub fn mode(&self) -> Option<Mode> {
        match (self.delay_us, self.corrupt_percent, self.duplicate_percent) {
            (Some(d), None, None) => Some(Mode::Latency {
                delay: Duration::from_micros(d),
                jitter: Duration::from_micros(self.jitter_us.unwrap_or(0)),
            }),
            (None, Some(p), None) => Some(Mode::Corrupt { percent: p }),
            (None, None, Some(p)) => Some(Mode::Duplicate { percent: p }),
            _ => None,
        }
    }

    /// [`Self::mode`], checked: one mode, a delay and jitter of at most [`MAX_DELAY`], a
    /// percentage in [0, 100].
    pub fn checked_mode(&self) -> Result<Mode, String> {
        let mode = self
            .mode()
            .ok_or("give one of --delay-us, --corrupt-percent, --duplicate-percent")?;
        match mode {
            Mode::Latency { delay, jitter } if delay > MAX_DELAY || jitter > MAX_DELAY => {
                Err(format!(
                    "--delay-us and --jitter-us must be at most {} µs",
                    MAX_DELAY.as_micros()
                ))
            }
            Mode::Corrupt { percent } | Mode::Duplicate { percent }
                if !(0.0..=100.0).contains(&percent) =>
            {
                Err(format!("the percentage {percent} is not in [0, 100]"))
            }
            mode => Ok(mode),
        }
    }
}

/// One pass over the queue: `step` takes one message and deals with it (false: the queue had
/// none), at most `max` times; true when the queue ran dry. Bounded so that under steady
/// traffic the agent still releases due packets and checks its stop conditions between passes.
fn bounded_pass(
    max: usize,
    mut step: impl FnMut() -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    for _ in 0..max {
        if !step()? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why the agent stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Signalled,
    NamespaceGone,
    Lifetime,
}

fn netns(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

fn log(line: impl std::fmt::Display) {
    eprintln!(
        "{} {line}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
}

/// Runs the agent until SIGTERM, the end of its lifetime or of the container's namespace
/// (blocking; the caller runs it off the async runtime).
pub fn run(args: &AgentArgs, stop: &AtomicBool) -> std::io::Result<Exit> {
    let mode = args.checked_mode().map_err(std::io::Error::other)?;
    let own =
        netns("self").ok_or_else(|| std::io::Error::other("cannot read /proc/self/ns/net"))?;
    let watched = args.watch_pid.to_string();
    if netns(&watched).as_ref() != Some(&own) {
        return Err(std::io::Error::other(format!(
            "not in the network namespace of pid {watched}: start the agent with nsenter --net"
        )));
    }
    let mut queue = nfq::Queue::open()?;
    queue.bind(args.queue)?;
    let copy = match mode {
        Mode::Latency { .. } => HEADER_COPY,
        _ => u16::MAX,
    };
    queue.set_copy_range(args.queue, copy)?;
    queue.set_queue_max_len(
        args.queue,
        u32::try_from(HELD_LIMIT * 2).unwrap_or(u32::MAX),
    )?;
    // Past the kernel's queue length packets pass rather than drop.
    queue.set_fail_open(args.queue, true)?;
    queue.set_nonblocking(true);
    let raw = match mode {
        Mode::Duplicate { .. } => Some(raw_socket()?),
        _ => None,
    };
    log(format_args!(
        "agent {} for {} on {} bound to queue {}: {mode:?}",
        std::process::id(),
        args.fault,
        args.container,
        args.queue
    ));
    let started = Instant::now();
    let lifetime = Duration::from_secs(args.lifetime_secs);
    let mut schedule: Schedule<nfq::Message> = match mode {
        Mode::Latency { delay, jitter } => Schedule::new(delay, jitter, HELD_LIMIT),
        _ => Schedule::new(Duration::ZERO, Duration::ZERO, 0),
    };
    let (mut seen, mut overflow, mut changed) = (0u64, 0u64, 0u64);
    let mut checked = Instant::now();
    let exit = loop {
        if stop.load(Ordering::Relaxed) {
            break Exit::Signalled;
        }
        if started.elapsed() >= lifetime {
            break Exit::Lifetime;
        }
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            if netns(&watched).as_ref() != Some(&own) {
                break Exit::NamespaceGone;
            }
        }
        // What the kernel has queued, at most RECV_BATCH packets.
        let ran_dry = bounded_pass(RECV_BATCH, || {
            let mut msg = match queue.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
                Err(e) => return Err(e),
            };
            seen += 1;
            let r: u64 = rand::random();
            match mode {
                Mode::Latency { .. } => {
                    let flow = flow_of(msg.get_payload());
                    if let Err(mut msg) = schedule.admit(Instant::now(), flow, r, msg) {
                        overflow += 1;
                        msg.set_verdict(nfq::Verdict::Drop);
                        queue.verdict(msg)?;
                    }
                }
                Mode::Corrupt { percent } => {
                    if hit(percent, r) {
                        let mut packet = msg.get_payload().to_vec();
                        if corrupt(&mut packet, rand::random()) {
                            msg.set_payload(packet);
                            changed += 1;
                        }
                    }
                    msg.set_verdict(nfq::Verdict::Accept);
                    queue.verdict(msg)?;
                }
                Mode::Duplicate { percent } => {
                    if hit(percent, r)
                        && let (Some(sock), Some(dst)) =
                            (raw.as_ref(), ipv4_destination(msg.get_payload()))
                    {
                        let to = std::net::SocketAddr::from((dst, 0));
                        if sock.send_to(msg.get_payload(), &to.into()).is_ok() {
                            changed += 1;
                        }
                    }
                    msg.set_verdict(nfq::Verdict::Accept);
                    queue.verdict(msg)?;
                }
            }
            Ok(true)
        })?;
        let now = Instant::now();
        while let Some(mut msg) = schedule.pop_due(now) {
            msg.set_verdict(nfq::Verdict::Accept);
            queue.verdict(msg)?;
        }
        // A full batch: more is queued, so the next pass starts at once.
        if ran_dry {
            std::thread::sleep(TICK);
        }
    };
    // Whatever is held goes out now, in order; then the queue is left (the rule's bypass
    // passes packets from here on).
    for mut msg in schedule.drain() {
        msg.set_verdict(nfq::Verdict::Accept);
        queue.verdict(msg)?;
    }
    let _ = queue.unbind(args.queue);
    log(format_args!(
        "agent {} for {} exits ({exit:?}): {seen} packets, {changed} corrupted or duplicated, \
         {overflow} dropped over the limit of {HELD_LIMIT}",
        std::process::id(),
        args.fault,
    ));
    Ok(exit)
}

/// A raw IPv4 socket that sends whole packets (header included) with [`MARK`].
fn raw_socket() -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    // IPPROTO_RAW: the packet carries its own IP header.
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
    sock.set_mark(MARK)?;
    Ok(sock)
}

/// The `platform fault-agent` subcommand: runs [`run`] with SIGTERM and SIGINT as its stop.
pub async fn main(args: AgentArgs) -> std::io::Result<Exit> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(AtomicBool::new(false));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        flag.store(true, Ordering::Relaxed);
    });
    let result = tokio::task::spawn_blocking(move || run(&args, &stop))
        .await
        .map_err(std::io::Error::other)?;
    if let Err(e) = &result {
        log(format_args!("agent failed: {e}"));
    }
    result
}

/// A running agent process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    pub cmdline: Vec<String>,
}

/// The live (not zombie) fault-agent processes whose command line satisfies `matches`.
pub fn find(matches: impl Fn(&[String]) -> bool) -> Vec<Found> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Found> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmdline = cmdline_of(pid)?;
            (cmdline.iter().any(|w| w == SUBCOMMAND) && matches(&cmdline) && alive(pid))
                .then_some(Found { pid, cmdline })
        })
        .collect();
    found.sort_by_key(|f| f.pid);
    found
}

/// Whether a command line is that of an agent of fault `id`.
fn is_agent_of(cmdline: &[String], id: &str) -> bool {
    cmdline.iter().any(|w| w == SUBCOMMAND)
        && cmdline.windows(2).any(|w| w[0] == "--fault" && w[1] == id)
}

/// The agents of fault `id`.
pub fn agents_of(id: &str) -> Vec<Found> {
    find(|c| is_agent_of(c, id))
}

/// The process group of the agent recorded for fault `id` at injection (`pid` leading group
/// `pgid`), if that process is still that agent: alive, its command line naming the fault, and
/// still the leader of that group. A pid the kernel has since given to another process is not
/// it.
pub fn recorded_group(id: &str, pid: i32, pgid: i32) -> Option<i32> {
    let cmdline = cmdline_of(pid)?;
    (pid > 0
        && pid == pgid
        && is_agent_of(&cmdline, id)
        && alive(pid)
        && self::pgid(pid) == Some(pgid))
    .then_some(pgid)
}

/// The words of `/proc/<pid>/cmdline`.
fn cmdline_of(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect(),
    )
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The agent's process group id (it is the leader of its own).
pub fn pgid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) state ppid pgrp".
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Stops the agents of fault `id`: SIGTERM to each one's process group (it accepts what it
/// holds and leaves the queue), SIGKILL after `grace`; returns how many were stopped, or the
/// pids still alive.
///
/// `recorded` is the agent's `(pid, pgid)` from the fault's record: its group is signalled
/// when [`recorded_group`] confirms the process is still that agent. The `/proc` scan for
/// agents naming the fault stays as the fallback (an agent whose record was lost or written
/// without it, or a second one) and is what verifies that none is left.
pub async fn stop(
    id: &str,
    recorded: Option<(i32, i32)>,
    grace: Duration,
) -> Result<usize, Vec<i32>> {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let group = || recorded.and_then(|(pid, pgid)| recorded_group(id, pid, pgid));
    let mut found: Vec<i32> = agents_of(id).iter().map(|f| f.pid).collect();
    if let Some(pid) = recorded.map(|r| r.0).filter(|_| group().is_some())
        && !found.contains(&pid)
    {
        found.push(pid);
    }
    let signal_all = |sig: Signal| {
        let recorded = group();
        if let Some(g) = recorded {
            let _ = killpg(Pid::from_raw(g), sig);
        }
        for f in agents_of(id) {
            if recorded == Some(f.pid) {
                continue;
            }
            match pgid(f.pid) {
                // Only a group the agent leads: never the injecting CLI's own group.
                Some(g) if g == f.pid => {
                    let _ = killpg(Pid::from_raw(g), sig);
                }
                _ => {
                    let _ = kill(Pid::from_raw(f.pid), sig);
                }
            }
        }
    };
    if found.is_empty() {
        return Ok(0);
    }
    signal_all(Signal::SIGTERM);
    let start = Instant::now();
    // The recorded agent, while it is one, is among `agents_of`.
    while !agents_of(id).is_empty() {
        if start.elapsed() > grace {
            signal_all(Signal::SIGKILL);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let left: Vec<i32> = agents_of(id).iter().map(|f| f.pid).collect();
            return if left.is_empty() {
                Ok(found.len())
            } else {
                Err(left)
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(found.len())
}

/// True when queue `queue` has a listener in the namespace of `pid`
/// (`/proc/<pid>/net/netfilter/nfnetlink_queue` lists bound queues first on each line).
pub fn queue_bound(pid: i64, queue: u16) -> bool {
    std::fs::read_to_string(queue_table(pid))
        .map(|t| bound_queues(&t).contains(&queue))
        .unwrap_or(false)
}

/// Where the namespace of `pid` lists its bound NFQUEUEs; absent when the kernel has no
/// `nfnetlink_queue`.
pub fn queue_table(pid: i64) -> PathBuf {
    Path::new("/proc")
        .join(pid.to_string())
        .join("net/netfilter/nfnetlink_queue")
}

/// The queue numbers in a `nfnetlink_queue` table.
pub fn bound_queues(table: &str) -> Vec<u16> {
    table
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// With a fixed delay every packet comes out exactly that late and in arrival order.
    #[test]
    fn fixed_delay_in_order() {
        let t0 = Instant::now();
        let mut s = Schedule::new(ms(200), Duration::ZERO, 10);
        for i in 0..5u64 {
            let at = s.admit(t0 + ms(i * 10), i % 2, i * 7919, i).unwrap();
            assert_eq!(at, t0 + ms(200 + i * 10));
        }
        assert_eq!(s.next_due(), Some(t0 + ms(200)));
        assert_eq!(s.pop_due(t0 + ms(199)), None);
        let mut out = Vec::new();
        while let Some(i) = s.pop_due(t0 + ms(240)) {
            out.push(i);
        }
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert!(s.is_empty());
    }

    /// Jitter stays within ±jitter of the delay, covers the range, and never reorders a flow;
    /// packets of different flows may pass each other.
    #[test]
    fn jitter_bounds_and_per_flow_order() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        let (delay, jitter) = (ms(100), ms(30));
        let mut s = Schedule::new(delay, jitter, 100_000);
        let mut arrivals = HashMap::new();
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            let flow = rng.gen_range(0..8u64);
            let at = s.admit(now, flow, rng.r#gen(), (flow, i)).unwrap();
            let d = at - now;
            assert!(d >= delay - jitter && d <= delay + jitter, "{d:?}");
            lo = lo.min(d);
            hi = hi.max(d);
            arrivals.insert(i, now);
        }
        // Order within a flow may hold a packet back within the range, never out of it.
        assert!(lo < delay && hi > delay + jitter - ms(2), "{lo:?} {hi:?}");
        let mut last_of_flow: HashMap<u64, u64> = HashMap::new();
        let mut released = 0;
        let mut overtaken = 0;
        let mut prev = None;
        while let Some((flow, i)) = s.pop_due(t0 + Duration::from_secs(10)) {
            if let Some(p) = last_of_flow.insert(flow, i) {
                assert!(p < i, "flow {flow}: packet {i} released before {p}");
            }
            if prev.is_some_and(|p| p > i) {
                overtaken += 1;
            }
            prev = Some(i);
            released += 1;
        }
        assert_eq!(released, 20_000);
        assert!(overtaken > 0, "different flows never passed each other");
    }

    /// Packets of flows of their own spread uniformly over delay ± jitter.
    #[test]
    fn jitter_is_uniform() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let t0 = Instant::now();
        let mut s = Schedule::new(ms(100), ms(30), 100_000);
        let mut buckets = [0u32; 6];
        for i in 0..60_000u64 {
            let at = s.admit(t0, i, rng.r#gen(), ()).unwrap();
            let d = (at - t0).as_micros() as i64 - 70_000;
            assert!((0..=60_000).contains(&d), "{d}");
            buckets[(d as usize / 10_000).min(5)] += 1;
        }
        // Six bands of 10 ms: each within 5 % of a sixth.
        for b in buckets {
            assert!((9_500..=10_500).contains(&b), "{buckets:?}");
        }
    }

    /// A jitter larger than the delay cannot make a packet leave before it arrived.
    #[test]
    fn jitter_never_negative() {
        let t0 = Instant::now();
        let mut s = Schedule::new(ms(5), ms(50), 10);
        let at = s.admit(t0, 1, 0, ()).unwrap();
        assert_eq!(at, t0);
    }

    /// Extreme delays and jitters (the hidden --delay-us/--jitter-us take any u64) neither
    /// overflow nor panic in the schedule, and the agent refuses them.
    #[test]
    fn extreme_delays_do_not_overflow() {
        use clap::Parser as _;
        let t0 = Instant::now();
        let huge = Duration::from_micros(u64::MAX);
        for (delay, jitter) in [(huge, huge), (huge, Duration::ZERO), (ms(1), huge)] {
            let mut s = Schedule::new(delay, jitter, 10);
            for random in [0, 1, u64::MAX / 2, u64::MAX] {
                let at = s.admit(t0, random, random, ()).unwrap();
                assert!(at >= t0);
            }
        }
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: AgentArgs,
        }
        let parse = |extra: &[&str]| {
            let base = ["x", "--fault", "f", "--container", "c", "--watch-pid", "1"];
            P::try_parse_from(
                base.iter()
                    .chain(["--lifetime-secs", "9"].iter())
                    .chain(extra),
            )
            .unwrap()
            .a
        };
        let max = MAX_DELAY.as_micros().to_string();
        let over = (MAX_DELAY.as_micros() + 1).to_string();
        let all = u64::MAX.to_string();
        assert!(
            parse(&["--delay-us", &max, "--jitter-us", &max])
                .checked_mode()
                .is_ok()
        );
        for bad in [
            &["--delay-us", &over, "--jitter-us", "0"][..],
            &["--delay-us", "1", "--jitter-us", &all],
            &["--delay-us", &all, "--jitter-us", &all],
            &["--corrupt-percent", "101"],
            &["--duplicate-percent", "NaN"],
            &[],
        ] {
            assert!(parse(bad).checked_mode().is_err(), "{bad:?}");
        }
    }

    /// A pass takes at most its bound from a queue that is never empty (steady traffic), and
    /// says whether the queue ran dry.
    #[test]
    fn a_pass_is_bounded() {
        let mut taken = 0;
        let dry = bounded_pass(RECV_BATCH, || {
            taken += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!((taken, dry), (RECV_BATCH, false));
        let mut left = 3;
        let dry = bounded_pass(RECV_BATCH, || {
            if left == 0 {
                return Ok(false);
            }
            left -= 1;
            Ok(true)
        })
        .unwrap();
        assert!(dry && left == 0);
        assert!(bounded_pass(5, || Err(std::io::Error::other("x"))).is_err());
    }

    /// A process leading its own group, `sh` with `words` after the script as its arguments
    /// (so they stand in its command line), reaped when dropped.
    struct Group(std::process::Child);

    impl Group {
        fn start(words: &[&str]) -> Group {
            use std::os::unix::process::CommandExt as _;
            let child = std::process::Command::new("sh")
                .args(["-c", "sleep 30; true"])
                .args(words)
                .process_group(0)
                .spawn()
                .unwrap();
            Group(child)
        }

        fn pid(&self) -> i32 {
            i32::try_from(self.0.id()).unwrap()
        }

        /// Reaps it if it exited (a zombie is not alive either way).
        fn exited(&mut self) -> bool {
            self.0.try_wait().unwrap().is_some()
        }

        /// Whether the group's shell ends within 2 s (a signalled process may still be exiting
        /// when `stop` returns, more so on a loaded machine).
        async fn ends(&mut self) -> bool {
            for _ in 0..40 {
                if self.exited() || !alive(self.pid()) {
                    return true;
                }
                tokio::time::sleep(ms(50)).await;
            }
            false
        }
    }

    impl Drop for Group {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.0.wait();
        }
    }

    /// The recorded agent's group is signalled only while its process is still this fault's
    /// agent: a recorded pid whose command line is another program's (a reused pid) or
    /// another fault's agent is left alone; a recorded agent is stopped.
    #[tokio::test]
    async fn stop_signals_the_recorded_group_only_when_it_is_the_agent() {
        let id = format!("f-test-{}", std::process::id());
        let mut other = Group::start(&["unrelated"]);
        let mut other_fault = Group::start(&[SUBCOMMAND, "--fault", "f-another"]);
        let mut agent = Group::start(&[SUBCOMMAND, "--fault", &id]);
        // Give each shell time to be itself (not yet exec'd, its cmdline set).
        tokio::time::sleep(ms(100)).await;
        assert_eq!(recorded_group(&id, other.pid(), other.pid()), None);
        assert_eq!(
            recorded_group(&id, other_fault.pid(), other_fault.pid()),
            None
        );
        assert_eq!(recorded_group(&id, agent.pid(), agent.pid() + 1), None);
        assert_eq!(
            recorded_group(&id, agent.pid(), agent.pid()),
            Some(agent.pid())
        );

        let n = stop(&id, Some((other.pid(), other.pid())), ms(500)).await;
        assert_eq!(n, Ok(1), "the agent found by the scan");
        assert!(agent.ends().await, "the agent was not stopped");
        tokio::time::sleep(ms(100)).await;
        assert!(
            !other.exited(),
            "a recorded pid that is not the agent was signalled"
        );
        assert_eq!(
            stop("f-another", Some((agent.pid(), agent.pid())), ms(500)).await,
            Ok(1)
        );
        assert!(
            other_fault.ends().await,
            "the other fault's agent was not stopped"
        );
        assert!(!other.exited());
    }

    /// Past the limit a packet is handed back (the agent drops it, as netem does); the flow
    /// table of released flows is pruned.
    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut s = Schedule::new(ms(10), Duration::ZERO, 3);
        for i in 0..3 {
            assert!(s.admit(t0, i, 0, i).is_ok());
        }
        assert_eq!(s.admit(t0, 9, 0, 9), Err(9));
        assert_eq!(s.len(), 3);
        assert_eq!(s.drain(), [0, 1, 2]);
        for i in 0..100 {
            s.admit(t0 + ms(i * 100), i, 0, i).unwrap();
            s.pop_due(t0 + ms(i * 100 + 10)).unwrap();
        }
        assert!(s.last.len() <= 13, "{}", s.last.len());
    }

    fn ipv4_tcp(src_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend(src_port.to_be_bytes());
        p.extend(80u16.to_be_bytes());
        p.extend([0u8; 16]);
        p.extend(payload);
        p
    }

    /// Flows are told apart by ports and addresses; payload does not matter.
    #[test]
    fn flows() {
        assert_eq!(
            flow_of(&ipv4_tcp(1000, b"a")),
            flow_of(&ipv4_tcp(1000, b"bb"))
        );
        assert_ne!(
            flow_of(&ipv4_tcp(1000, b"a")),
            flow_of(&ipv4_tcp(1001, b"a"))
        );
        assert_eq!(flow_of(b""), flow_of(b"\x00garbage"));
        assert_eq!(
            ipv4_destination(&ipv4_tcp(1, b"")),
            Some(std::net::Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    /// Corruption flips exactly one bit, never in the IP header.
    #[test]
    fn corrupts_one_bit_after_the_header() {
        for r in [0u64, 1, 7, 8, 12_345, u64::MAX] {
            let orig = ipv4_tcp(1000, b"hello");
            let mut p = orig.clone();
            assert!(corrupt(&mut p, r));
            assert_eq!(p[..20], orig[..20]);
            let flipped: u32 = p.iter().zip(&orig).map(|(a, b)| (a ^ b).count_ones()).sum();
            assert_eq!(flipped, 1);
        }
        let mut header_only = ipv4_tcp(1, b"")[..20].to_vec();
        assert!(!corrupt(&mut header_only, 3));
        assert!(hit(100.0, u64::MAX) && !hit(0.0, 0));
        let hits = (0..100_000u64)
            .filter(|i| hit(2.5, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }

    /// The spawner's arguments parse back to the same mode; the queue table is read.
    #[test]
    fn arguments_round_trip() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: AgentArgs,
        }
        for mode in [
            Mode::Latency {
                delay: ms(200),
                jitter: ms(20),
            },
            Mode::Corrupt { percent: 2.5 },
            Mode::Duplicate { percent: 50.0 },
        ] {
            let args = agent_args("f-1", "c", 42, Duration::from_secs(90), mode);
            let p = P::try_parse_from(std::iter::once("x".to_string()).chain(args)).unwrap();
            assert_eq!(p.a.mode(), Some(mode));
            assert_eq!((p.a.watch_pid, p.a.lifetime_secs), (42, 90));
        }
        let table = "   47  12345     0 2 65531     0     0        9  1\n";
        assert_eq!(bound_queues(table), [47]);
    }
}
