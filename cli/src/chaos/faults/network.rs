//! Network-layer faults on one container, made inside its network namespace from the host:
//! `nsenter --target <pid> --net` runs Debian's iproute2 `tc` (and, where the kernel lacks netem,
//! `iptables`) in the container's namespace — no helper image, none can be pulled.
//!
//! | kind | how | without netem | revert |
//! | --- | --- | --- | --- |
//! | `latency` | root `netem delay D J` on the container's stack interface | NFQUEUE rule + fault agent ([`agent`]) | delete the qdisc / the rule, stop the agent |
//! | `loss` | root `netem loss P%` | an OUTPUT rule `-m statistic --probability p -j DROP` | delete the qdisc / the rule |
//! | `bandwidth` | root `tbf rate R` | (tbf is no netem) | `tc qdisc del ... root` |
//! | `corrupt`, `duplicate` | root `netem corrupt/duplicate P%` | NFQUEUE rule + fault agent | delete the qdisc / the rule, stop the agent |
//!
//! Like netem itself, every kind acts on what the container *sends* on its stack interface
//! (answers and requests alike), so a TCP exchange with it sees the effect both ways. netem is
//! always tried first; the fallbacks are used only when the kernel refuses the qdisc.
//!
//! Where this cannot work the command fails before touching anything, saying why ([`preflight`]):
//! not root, `nsenter`/`tc` missing, an engine whose containers do not run on this kernel
//! (Docker Desktop's VM, a remote `DOCKER_HOST`, rootless Docker), or — at apply time — a
//! kernel with neither netem nor (for the NFQUEUE kinds) `nfnetlink_queue`. Never a silent
//! no-op.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::agent;
use super::record::{FaultRecord, Mechanism, NfqueueRevert, Revert};
use super::spec::Kind;
use super::{FaultError, Result};
use crate::runtime::{ContainerInfo, Runtime};

/// How long one host command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the host tools are.
#[derive(Debug, Clone)]
pub struct Tools {
    pub nsenter: PathBuf,
    pub tc: PathBuf,
    pub ip: PathBuf,
    /// Only needed for the loss fallback.
    pub iptables: Option<PathBuf>,
}

/// Finds `name` on `PATH` or in the sbin directories (which a non-login root shell may lack).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The effective user id, from `/proc/self/status` (no libc needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Why network faults cannot work here, from facts about the host and engine (pure, so each
/// case is tested): `None` when they can.
pub fn unsupported_reason(
    os: &str,
    euid: Option<u32>,
    docker_host: Option<&str>,
    engine_os: &str,
    security_options: &[String],
) -> Option<String> {
    if os != "linux" {
        return Some(format!(
            "the Docker host's network namespaces are only reachable on Linux, and this is {os}"
        ));
    }
    if let Some(host) = docker_host.filter(|h| !h.is_empty() && !h.starts_with("unix://")) {
        return Some(format!(
            "DOCKER_HOST={host} is another machine: its containers' namespaces are not on this one"
        ));
    }
    if engine_os.contains("Docker Desktop") {
        return Some("the engine is Docker Desktop, whose containers run in a VM".into());
    }
    if security_options.iter().any(|o| o.contains("rootless")) {
        return Some(
            "the engine is rootless Docker: its network namespaces belong to another user namespace".into(),
        );
    }
    match euid {
        Some(0) => None,
        Some(uid) => Some(format!(
            "entering a container's network namespace needs root (this runs as uid {uid}): run it with sudo"
        )),
        None => Some("cannot tell the user id from /proc/self/status".into()),
    }
}

/// Checks everything that can be checked before touching a container.
pub async fn preflight(rt: &Runtime, kind: Kind) -> Result<Tools> {
    let unsupported = |why: String| FaultError::Unsupported { kind, why };
    let engine = rt.engine_facts().await?;
    let docker_host = std::env::var("DOCKER_HOST").ok();
    if let Some(why) = unsupported_reason(
        std::env::consts::OS,
        effective_uid(),
        docker_host.as_deref(),
        &engine.operating_system,
        &engine.security_options,
    ) {
        return Err(unsupported(why));
    }
    let need = |name: &str, package: &str| {
        find_tool(name).ok_or_else(|| {
            unsupported(format!(
                "`{name}` is not installed (Debian package {package}; install.sh installs it)"
            ))
        })
    };
    Ok(Tools {
        nsenter: need("nsenter", "util-linux")?,
        tc: need("tc", "iproute2")?,
        ip: need("ip", "iproute2")?,
        iptables: find_tool("iptables"),
    })
}

/// A host command's outcome.
struct Output {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `program args` in the network namespace of `pid`.
async fn in_netns(tools: &Tools, pid: i64, program: &Path, args: &[String]) -> Result<Output> {
    let mut cmd = tokio::process::Command::new(&tools.nsenter);
    cmd.arg("--target")
        .arg(pid.to_string())
        .arg("--net")
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let line = format!(
        "nsenter --target {pid} --net -- {} {}",
        program.display(),
        args.join(" ")
    );
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| FaultError::Command {
            command: line.clone(),
            status: "timed out".into(),
            stderr: format!("no answer within {}s", COMMAND_TIMEOUT.as_secs()),
        })?
        .map_err(|e| FaultError::Command {
            command: line.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    Ok(Output {
        ok: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn failed(tools: &Tools, pid: i64, program: &Path, args: &[String], out: Output) -> FaultError {
    let _ = tools;
    FaultError::Command {
        command: format!(
            "nsenter --target {pid} --net -- {} {}",
            program.display(),
            args.join(" ")
        ),
        status: out.status,
        stderr: out.stderr,
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The interface holding `ip` in `ip -o -4 addr show` output (`eth0`, without `@ifN`).
pub fn interface_of(addr_output: &str, ip: &str) -> Option<String> {
    let needle = format!("inet {ip}/");
    addr_output
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
}

/// The `tc qdisc add` arguments for a netem or tbf fault (pure, tested).
pub fn qdisc_args(rec: &FaultRecord, interface: &str) -> Option<(Mechanism, Vec<String>)> {
    let o = &rec.options;
    let base = format!("qdisc add dev {interface} root");
    let pct = |p: f64| format!("{}%", trim_float(p));
    let netem = |rest: String| Some((Mechanism::Netem, words(&format!("{base} netem {rest}"))));
    match rec.kind {
        Kind::Latency => {
            let d = o.delay_ms.unwrap_or(200);
            let j = o.jitter_ms.unwrap_or(0);
            if j > 0 {
                netem(format!("delay {d}ms {j}ms"))
            } else {
                netem(format!("delay {d}ms"))
            }
        }
        Kind::Loss => netem(format!("loss {}", pct(o.percent.unwrap_or(0.0)))),
        Kind::Corrupt => netem(format!("corrupt {}", pct(o.percent.unwrap_or(0.0)))),
        Kind::Duplicate => netem(format!("duplicate {}", pct(o.percent.unwrap_or(0.0)))),
        Kind::Bandwidth => {
            let bits = o.rate.map_or(1_000_000, |r| r.0);
            // A burst of 10 ms at the rate, at least two full-size frames.
            let burst = (bits / 8 / 100).max(3_200);
            Some((
                Mechanism::Tbf,
                words(&format!(
                    "{base} tbf rate {bits}bit burst {burst} latency 100ms"
                )),
            ))
        }
        _ => None,
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The iptables rule (without `-A`/`-D OUTPUT`) that drops `percent` of what `interface` sends.
pub fn loss_rule(rec: &FaultRecord, interface: &str) -> Vec<String> {
    let p = rec.options.percent.unwrap_or(0.0) / 100.0;
    words(&format!(
        "-o {interface} -m statistic --mode random --probability {} -m comment --comment platform-fault:{} -j DROP",
        trim_float(p),
        rec.id
    ))
}

/// True when the kernel refused a qdisc kind it does not have.
fn qdisc_unknown(stderr: &str) -> bool {
    stderr.contains("Specified qdisc kind is unknown") || stderr.contains("Unknown qdisc")
}

/// The running container's pid, checked to be visible in this host's /proc.
async fn pid_of(rt: &Runtime, rec: &FaultRecord) -> Result<i64> {
    let facts = rt.container_facts(&rec.container).await?;
    let pid = facts
        .pid
        .filter(|_| facts.running)
        .ok_or_else(|| FaultError::Unsupported {
            kind: rec.kind,
            why: format!(
                "{} is not running (a network fault needs its namespace)",
                rec.container
            ),
        })?;
    if !Path::new(&format!("/proc/{pid}/ns/net")).exists() {
        return Err(FaultError::Unsupported {
            kind: rec.kind,
            why: format!(
                "the engine says {} runs as pid {pid}, which this host's /proc does not show: \
                 its containers run on another kernel (a VM or another machine)",
                rec.container
            ),
        });
    }
    Ok(pid)
}

/// The interface of the container on `network`.
async fn interface(
    rt: &Runtime,
    tools: &Tools,
    pid: i64,
    rec: &FaultRecord,
    network: &str,
) -> Result<String> {
    let info = rt.inspect_container(&rec.container).await?;
    let ip = info
        .addresses
        .get(network)
        .ok_or_else(|| FaultError::State {
            message: format!("{} has no address on {network}", rec.container),
        })?;
    let args = words("-o -4 addr show");
    let out = in_netns(tools, pid, &tools.ip, &args).await?;
    if !out.ok {
        return Err(failed(tools, pid, &tools.ip, &args, out));
    }
    interface_of(&out.stdout, ip).ok_or_else(|| FaultError::State {
        message: format!("no interface holds {ip} in {}'s namespace", rec.container),
    })
}

/// Applies a network fault; `rec.revert` records the interface and mechanism used. NFQUEUE
/// agents log to `agents.log` in `log_dir` (the stack's fault store).
pub async fn apply(
    tools: &Tools,
    rec: &mut FaultRecord,
    network: &str,
    rt: &Runtime,
    log_dir: &Path,
) -> Result<()> {
    let pid = pid_of(rt, rec).await?;
    let iface = interface(rt, tools, pid, rec, network).await?;
    let (mut mechanism, args) = qdisc_args(rec, &iface).ok_or_else(|| FaultError::State {
        message: format!("{} is not a network fault", rec.kind),
    })?;
    rec.revert = Revert::Network {
        interface: iface.clone(),
        mechanism,
        nfqueue: None,
    };
    let out = in_netns(tools, pid, &tools.tc, &args).await?;
    if !out.ok {
        if qdisc_unknown(&out.stderr) && rec.kind == Kind::Loss && tools.iptables.is_some() {
            // No netem in this kernel: drop with iptables' statistic match instead.
            mechanism = Mechanism::IptablesStatistic;
            rec.revert = Revert::Network {
                interface: iface.clone(),
                mechanism,
                nfqueue: None,
            };
            let iptables = tools.iptables.clone().unwrap_or_default();
            let mut args = words("-w 5 -A OUTPUT");
            args.extend(loss_rule(rec, &iface));
            let out = in_netns(tools, pid, &iptables, &args).await?;
            if !out.ok {
                return Err(failed(tools, pid, &iptables, &args, out));
            }
        } else if qdisc_unknown(&out.stderr)
            && matches!(rec.kind, Kind::Latency | Kind::Corrupt | Kind::Duplicate)
            && let Some(why) = nfqueue_unsupported(tools, pid)
        {
            return Err(FaultError::Unsupported {
                kind: rec.kind,
                why: format!("{}; {why}", no_qdisc(&args[5])),
            });
        } else if qdisc_unknown(&out.stderr)
            && matches!(rec.kind, Kind::Latency | Kind::Corrupt | Kind::Duplicate)
        {
            // No netem in this kernel: a userspace agent on an NFQUEUE does it instead.
            apply_nfqueue(tools, pid, rec, &iface, log_dir).await?;
        } else if qdisc_unknown(&out.stderr) {
            return Err(FaultError::Unsupported {
                kind: rec.kind,
                why: format!(
                    "{}. Without netem: `loss` uses iptables, `latency`, `corrupt` and `duplicate` an \
                     NFQUEUE agent, and `app-latency` delays a service's answers from inside",
                    no_qdisc(&args[5])
                ),
            });
        } else {
            return Err(failed(tools, pid, &tools.tc, &args, out));
        }
    }
    // In effect when the namespace shows it.
    let (present, what) = present(tools, pid, rec).await?;
    if !present {
        return Err(FaultError::NotEffective {
            id: rec.id.clone(),
            kind: rec.kind,
            container: rec.container.clone(),
            why: format!("{what} not found after adding it"),
        });
    }
    Ok(())
}

/// Whether the record's qdisc or rule is in the namespace, and what was looked for.
async fn present(tools: &Tools, pid: i64, rec: &FaultRecord) -> Result<(bool, String)> {
    let Revert::Network {
        interface,
        mechanism,
        ..
    } = &rec.revert
    else {
        return Ok((false, "no network revert recorded".into()));
    };
    match mechanism {
        Mechanism::Netem | Mechanism::Tbf => {
            let kind = if *mechanism == Mechanism::Netem {
                "netem"
            } else {
                "tbf"
            };
            let args = words(&format!("-j qdisc show dev {interface}"));
            let out = in_netns(tools, pid, &tools.tc, &args).await?;
            if !out.ok {
                return Err(failed(tools, pid, &tools.tc, &args, out));
            }
            Ok((
                root_qdisc_kind(&out.stdout).as_deref() == Some(kind),
                format!("{kind} qdisc on {interface}"),
            ))
        }
        Mechanism::IptablesStatistic => {
            let iptables = tools
                .iptables
                .clone()
                .unwrap_or_else(|| PathBuf::from("iptables"));
            Ok((
                !rule_lines(tools, pid, &iptables, &rec.id).await?.is_empty(),
                "iptables loss rule".into(),
            ))
        }
        Mechanism::Nfqueue => {
            let rule = !rule_lines(tools, pid, &iptables_of(tools), &rec.id)
                .await?
                .is_empty();
            let agents = agent::agents_of(&rec.id).len();
            let bound = agent::queue_bound(pid, agent::QUEUE);
            Ok((
                rule && agents == 1 && bound,
                format!(
                    "NFQUEUE rule ({}) and fault agent bound to queue {} ({agents} running, {})",
                    if rule { "present" } else { "missing" },
                    agent::QUEUE,
                    if bound { "bound" } else { "not bound" }
                ),
            ))
        }
    }
}

fn iptables_of(tools: &Tools) -> PathBuf {
    tools
        .iptables
        .clone()
        .unwrap_or_else(|| PathBuf::from("iptables"))
}

/// Why the kernel refused a qdisc kind (the first half of the refusal).
fn no_qdisc(kind: &str) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "the kernel ({}) has no `{kind}` queueing discipline (CONFIG_NET_SCH_{}; `modprobe sch_{kind}` \
         loads it where it is a module). Nothing was injected",
        kernel.trim(),
        kind.to_ascii_uppercase(),
    )
}

/// Why the NFQUEUE fallback cannot work in the namespace of `pid`, if it cannot.
fn nfqueue_unsupported(tools: &Tools, pid: i64) -> Option<String> {
    if tools.iptables.is_none() {
        return Some(
            "the NFQUEUE fallback needs `iptables` (Debian package iptables; install.sh installs it)".into(),
        );
    }
    if !agent::queue_table(pid).exists() {
        return Some(
            "nor has it nfnetlink_queue for the NFQUEUE fallback (CONFIG_NETFILTER_NETLINK_QUEUE; \
             `modprobe nfnetlink_queue` loads it where it is a module)"
                .into(),
        );
    }
    if agent::queue_bound(pid, agent::QUEUE) {
        return Some(format!(
            "NFQUEUE {} is already in use in the container's namespace",
            agent::QUEUE
        ));
    }
    None
}

/// The NFQUEUE rule (without `-A`/`-D OUTPUT`) sending what `interface` sends to the agent,
/// except the agent's own marked packets; the kernel passes packets when no agent listens.
pub fn nfqueue_rule(rec: &FaultRecord, interface: &str) -> Vec<String> {
    words(&format!(
        "-o {interface} -m mark ! --mark {:#x} -m comment --comment platform-fault:{} -j NFQUEUE --queue-num {} --queue-bypass",
        agent::MARK,
        rec.id,
        agent::QUEUE
    ))
}

/// The agent's mode for a latency, corrupt or duplicate record.
fn agent_mode(rec: &FaultRecord) -> Option<agent::Mode> {
    let o = &rec.options;
    match rec.kind {
        Kind::Latency => Some(agent::Mode::Latency {
            delay: Duration::from_millis(o.delay_ms.unwrap_or(200)),
            jitter: Duration::from_millis(o.jitter_ms.unwrap_or(0)),
        }),
        Kind::Corrupt => Some(agent::Mode::Corrupt {
            percent: o.percent.unwrap_or(0.0),
        }),
        Kind::Duplicate => Some(agent::Mode::Duplicate {
            percent: o.percent.unwrap_or(0.0),
        }),
        _ => None,
    }
}

/// How long an agent may take to bind its queue.
const AGENT_START: Duration = Duration::from_secs(10);
/// How long a stopped agent has to let its packets go before SIGKILL.
const AGENT_GRACE: Duration = Duration::from_secs(3);
/// How long an agent outlives its fault's planned end at most (if nothing reverted it).
const AGENT_MARGIN: Duration = Duration::from_secs(60);

/// Starts the fault agent in the namespace of `pid` (detached, its own process group), waits
/// until it has bound the queue, then adds the rule. `rec.revert` holds both as soon as they
/// exist.
async fn apply_nfqueue(
    tools: &Tools,
    pid: i64,
    rec: &mut FaultRecord,
    iface: &str,
    log_dir: &Path,
) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let mode = agent_mode(rec).ok_or_else(|| FaultError::State {
        message: format!("{} is not an NFQUEUE fault", rec.kind),
    })?;
    let lifetime = (rec.ends - chrono::Utc::now()).to_std().unwrap_or_default() + AGENT_MARGIN;
    let bin = super::supervisor::binary()?;
    std::fs::create_dir_all(log_dir).map_err(|e| FaultError::State {
        message: format!("cannot create {}: {e}", log_dir.display()),
    })?;
    let log_path = log_dir.join("agents.log");
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| FaultError::State {
                message: format!("cannot open {}: {e}", log_path.display()),
            })
    };
    let mut child = std::process::Command::new(&tools.nsenter)
        .arg("--target")
        .arg(pid.to_string())
        .arg("--net")
        .arg("--")
        .arg(&bin)
        .arg(agent::SUBCOMMAND)
        .args(agent::agent_args(
            &rec.id,
            &rec.container,
            pid,
            lifetime,
            mode,
        ))
        .stdin(std::process::Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?)
        // Its own process group: the terminal's Ctrl-C and a kill of the injector's group miss
        // it; revert signals the whole group.
        .process_group(0)
        .spawn()
        .map_err(|e| FaultError::State {
            message: format!("cannot start the fault agent {}: {e}", bin.display()),
        })?;
    // nsenter execs the agent: the child is the agent.
    let agent_pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let rule = nfqueue_rule(rec, iface);
    rec.revert = Revert::Network {
        interface: iface.to_string(),
        mechanism: Mechanism::Nfqueue,
        nfqueue: Some(NfqueueRevert {
            queue: agent::QUEUE,
            rule: rule.clone(),
            agent_pid,
            agent_pgid: agent_pid,
        }),
    };
    let start = std::time::Instant::now();
    loop {
        if agent::queue_bound(pid, agent::QUEUE) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| l.contains(&rec.id) || l.contains("agent failed"))
                .unwrap_or("no log line");
            return Err(FaultError::NotEffective {
                id: rec.id.clone(),
                kind: rec.kind,
                container: rec.container.clone(),
                why: format!("the fault agent exited ({status}): {last}"),
            });
        }
        if start.elapsed() > AGENT_START {
            return Err(FaultError::NotEffective {
                id: rec.id.clone(),
                kind: rec.kind,
                container: rec.container.clone(),
                why: format!(
                    "the fault agent did not bind NFQUEUE {} within {}s (log: {})",
                    agent::QUEUE,
                    AGENT_START.as_secs(),
                    log_path.display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reap it when it exits if this process lives that long (the dashboard, a scenario run).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let iptables = iptables_of(tools);
    let mut args = words("-w 5 -A OUTPUT");
    args.extend(rule);
    let out = in_netns(tools, pid, &iptables, &args).await?;
    if !out.ok {
        return Err(failed(tools, pid, &iptables, &args, out));
    }
    Ok(())
}

/// The kind of the root qdisc in `tc -j qdisc show` output.
pub fn root_qdisc_kind(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    v.as_array()?
        .iter()
        .find(|q| q.get("root").and_then(|r| r.as_bool()) == Some(true))
        .and_then(|q| q.get("kind")?.as_str().map(str::to_string))
}

/// `iptables -S OUTPUT` lines of fault `id`.
async fn rule_lines(tools: &Tools, pid: i64, iptables: &Path, id: &str) -> Result<Vec<String>> {
    let args = words("-w 5 -S OUTPUT");
    let out = in_netns(tools, pid, iptables, &args).await?;
    if !out.ok {
        return Err(failed(tools, pid, iptables, &args, out));
    }
    let mark = format!("platform-fault:{id}");
    Ok(out
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w.trim_matches('"') == mark))
        .map(str::to_string)
        .collect())
}

/// Deletes the OUTPUT rules marked with fault `id`.
async fn delete_rules(tools: &Tools, pid: i64, id: &str) -> Result<()> {
    let iptables = iptables_of(tools);
    for line in rule_lines(tools, pid, &iptables, id).await? {
        let mut args = words("-w 5");
        args.extend(
            line.replacen("-A ", "-D ", 1)
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_string()),
        );
        let out = in_netns(tools, pid, &iptables, &args).await?;
        if !out.ok {
            return Err(failed(tools, pid, &iptables, &args, out));
        }
    }
    Ok(())
}

/// Stops the agents of a fault, saying which are left if any.
pub async fn stop_agents(rec: &FaultRecord) -> Result<usize> {
    let recorded = match &rec.revert {
        Revert::Network {
            nfqueue: Some(n), ..
        } => Some((n.agent_pid, n.agent_pgid)),
        _ => None,
    };
    agent::stop(&rec.id, recorded, AGENT_GRACE)
        .await
        .map_err(|pids| FaultError::State {
            message: format!(
                "fault agent(s) {pids:?} of {} still run after SIGKILL",
                rec.id
            ),
        })
}

/// Removes the NFQUEUE rule first (new packets pass), then stops the agent (it accepts what it
/// holds, in order), and checks that neither is left.
async fn revert_nfqueue(tools: &Tools, pid: i64, rec: &FaultRecord) -> Result<String> {
    if tools.iptables.is_some() {
        delete_rules(tools, pid, &rec.id).await?;
    }
    let stopped = stop_agents(rec).await?;
    let rules = match &tools.iptables {
        Some(iptables) => rule_lines(tools, pid, iptables, &rec.id).await?,
        None => Vec::new(),
    };
    let agents = agent::agents_of(&rec.id);
    if !rules.is_empty() || !agents.is_empty() {
        return Err(FaultError::State {
            message: format!(
                "still there after removing them: rules {rules:?}, agents {:?}",
                agents.iter().map(|a| a.pid).collect::<Vec<_>>()
            ),
        });
    }
    Ok(format!(
        "NFQUEUE rule gone, {stopped} fault agent(s) stopped, none left"
    ))
}

/// Removes the fault's qdisc or rule (and agent) and checks it is gone. A stopped container
/// has no namespace left to clean, but its agent, if any, is stopped.
pub async fn revert(rt: &Runtime, rec: &FaultRecord, info: &ContainerInfo) -> Result<String> {
    if info.state != "running" && info.state != "paused" {
        let stopped = stop_agents(rec).await?;
        let agents = if stopped > 0 {
            format!(", {stopped} fault agent(s) stopped")
        } else {
            String::new()
        };
        return Ok(format!(
            "container {}, its namespace is gone{agents}",
            info.state
        ));
    }
    let tools = preflight(rt, rec.kind).await?;
    let pid = pid_of(rt, rec).await?;
    let Revert::Network {
        interface,
        mechanism,
        ..
    } = &rec.revert
    else {
        // Recorded before it was applied and never updated (the injector was killed
        // half-way): remove whatever carries the fault's id.
        return revert_nfqueue(&tools, pid, rec).await;
    };
    match mechanism {
        Mechanism::Nfqueue => return revert_nfqueue(&tools, pid, rec).await,
        Mechanism::Netem | Mechanism::Tbf => {
            let args = words(&format!("qdisc del dev {interface} root"));
            let out = in_netns(&tools, pid, &tools.tc, &args).await?;
            // Deleting the default root qdisc fails with "handle of zero": already gone.
            if !out.ok
                && !out.stderr.contains("handle of zero")
                && !out.stderr.contains("No such file")
            {
                return Err(failed(&tools, pid, &tools.tc, &args, out));
            }
        }
        Mechanism::IptablesStatistic => delete_rules(&tools, pid, &rec.id).await?,
    }
    let (still, what) = present(&tools, pid, rec).await?;
    if still {
        return Err(FaultError::State {
            message: format!("{what} is still there after removing it"),
        });
    }
    Ok(format!("{what} gone"))
}

/// The root qdisc kind of every interface but `lo` in a running container's namespace (for
/// checks that no fault is left): `(interface, kind)`.
pub async fn root_qdiscs(rt: &Runtime, container: &str) -> Result<Vec<(String, String)>> {
    let tools = preflight(rt, Kind::Latency).await?;
    let facts = rt.container_facts(container).await?;
    let Some(pid) = facts.pid.filter(|_| facts.running) else {
        return Ok(Vec::new());
    };
    let args = words("-j qdisc show");
    let out = in_netns(&tools, pid, &tools.tc, &args).await?;
    if !out.ok {
        return Err(failed(&tools, pid, &tools.tc, &args, out));
    }
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|q| q.get("root").and_then(|r| r.as_bool()) == Some(true))
        .filter_map(|q| {
            Some((
                q.get("dev")?.as_str()?.to_string(),
                q.get("kind")?.as_str()?.to_string(),
            ))
        })
        .filter(|(dev, _)| dev != "lo")
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::super::spec::{Options, Rate};
    use super::*;

    fn rec(kind: Kind, options: Options) -> FaultRecord {
        let mut r = record("f-1", chrono::Utc::now(), 30);
        r.kind = kind;
        r.options = options;
        r
    }

    /// Each kind becomes the tc command netem and tbf document.
    #[test]
    fn tc_commands() {
        let args = |k, o| qdisc_args(&rec(k, o), "eth0").unwrap().1.join(" ");
        assert_eq!(
            args(
                Kind::Latency,
                Options {
                    delay_ms: Some(200),
                    jitter_ms: Some(20),
                    ..Default::default()
                }
            ),
            "qdisc add dev eth0 root netem delay 200ms 20ms"
        );
        assert_eq!(
            args(
                Kind::Latency,
                Options {
                    delay_ms: Some(50),
                    jitter_ms: Some(0),
                    ..Default::default()
                }
            ),
            "qdisc add dev eth0 root netem delay 50ms"
        );
        assert_eq!(
            args(
                Kind::Loss,
                Options {
                    percent: Some(12.5),
                    ..Default::default()
                }
            ),
            "qdisc add dev eth0 root netem loss 12.5%"
        );
        assert_eq!(
            args(
                Kind::Duplicate,
                Options {
                    percent: Some(1.0),
                    ..Default::default()
                }
            ),
            "qdisc add dev eth0 root netem duplicate 1%"
        );
        assert_eq!(
            args(
                Kind::Bandwidth,
                Options {
                    rate: Some(Rate(1_000_000)),
                    ..Default::default()
                }
            ),
            "qdisc add dev eth0 root tbf rate 1000000bit burst 3200 latency 100ms"
        );
        assert!(qdisc_args(&rec(Kind::Pause, Options::default()), "eth0").is_none());
        assert_eq!(
            loss_rule(
                &rec(
                    Kind::Loss,
                    Options {
                        percent: Some(10.0),
                        ..Default::default()
                    }
                ),
                "eth0"
            )
            .join(" "),
            "-o eth0 -m statistic --mode random --probability 0.1 -m comment --comment platform-fault:f-1 -j DROP"
        );
    }

    /// The stack interface is found by the container's address in `ip -o -4 addr` output.
    #[test]
    fn finds_the_interface() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                   1234: eth0@if1235    inet 172.18.0.5/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever\n";
        assert_eq!(interface_of(out, "172.18.0.5").as_deref(), Some("eth0"));
        assert_eq!(interface_of(out, "172.18.0.50"), None);
    }

    /// The root qdisc is read from tc's JSON.
    #[test]
    fn reads_root_qdisc() {
        let json = r#"[{"kind":"netem","handle":"8001:","root":true,"refcnt":2,"options":{}}]"#;
        assert_eq!(root_qdisc_kind(json).as_deref(), Some("netem"));
        assert_eq!(
            root_qdisc_kind(r#"[{"kind":"noqueue","handle":"0:","root":true}]"#).as_deref(),
            Some("noqueue")
        );
        assert_eq!(root_qdisc_kind("[]"), None);
    }

    /// Network faults refuse, saying why, off Linux, with a remote engine, Docker Desktop,
    /// rootless Docker or without root; a local engine as root passes.
    #[test]
    fn says_why_it_cannot_work() {
        let none: Vec<String> = vec![];
        let ok = unsupported_reason("linux", Some(0), None, "Debian GNU/Linux 12", &none);
        assert_eq!(ok, None);
        assert!(
            unsupported_reason("macos", Some(0), None, "", &none)
                .unwrap()
                .contains("Linux")
        );
        assert!(
            unsupported_reason("linux", Some(0), Some("tcp://10.0.0.1:2375"), "", &none)
                .unwrap()
                .contains("another machine")
        );
        assert_eq!(
            unsupported_reason(
                "linux",
                Some(0),
                Some("unix:///var/run/docker.sock"),
                "",
                &none
            ),
            None
        );
        assert!(
            unsupported_reason("linux", Some(0), None, "Docker Desktop", &none)
                .unwrap()
                .contains("VM")
        );
        assert!(
            unsupported_reason("linux", Some(0), None, "Ubuntu", &["name=rootless".into()])
                .unwrap()
                .contains("rootless")
        );
        assert!(
            unsupported_reason("linux", Some(1000), None, "Ubuntu", &none)
                .unwrap()
                .contains("root")
        );
    }
}
