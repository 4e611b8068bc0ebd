//! `platform load` benchmark; writes the `load` section of BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p e2e --bench load
//! ```
//!
//! Is the generator ever the bottleneck? Against nothing but the gateway's `/health/live` (a
//! copy of the dev stack with only `api-gateway` and what it depends on up, the gateway on a
//! free loopback port), in one run:
//! - the baseline: `wrk -t2 -c32 --latency` for `BENCH_SECS`: the most the gateway answers on
//!   this machine, with wrk's CPU time per request;
//! - `platform load --mix health --connections 32` at 25 %, 50 %, 80 % and 90 % of wrk's rate
//!   for the same time:
//!   achieved rate against the target, latency percentiles (from each request's due time, so
//!   including any delay of the generator itself) and the generator's CPU time per request.
//!
//! The CPU times are the children's user+system time as bash's `times` reports it. Knobs
//! (environment): `BENCH_SECS` (default 10), `BENCH_WRITE=0` to print without writing.

use std::time::Duration;

use anyhow::Context as _;
use e2e::{Platform, TestStack};
use testkit::benchmarks::env_u64;

const UP_LIMIT: Duration = Duration::from_secs(600);
/// wrk's connections, and `platform load`'s bound in this bench.
const CONNECTIONS: u32 = 32;

fn main() -> anyhow::Result<()> {
    e2e::measure::block_on(run())
}

/// One measured run.
struct Row {
    what: String,
    target: Option<f64>,
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    failed: u64,
    /// What the failures were, when known.
    why: String,
    cpu_us_per_request: f64,
}

async fn run() -> anyhow::Result<()> {
    let secs = env_u64("BENCH_SECS", 10);
    let platform = Platform::locate()?;
    let stack = TestStack::dev_copy(&platform, "loadb")?;
    let s = stack.arg().to_string();
    platform
        .run(&["up", "--stack", &s, "api-gateway"], UP_LIMIT)
        .await?
        .success()?;
    let url = format!("{}/health/live", stack.gateway_url());
    let load_before = testkit::benchmarks::load_average().unwrap_or_default();

    let mut rows = Vec::new();
    let wrk = wrk(&url, secs)?;
    let max = wrk.achieved;
    rows.push(wrk);
    for share in [0.25, 0.5, 0.8, 0.9] {
        let rate = (max * share).round().max(1.0);
        rows.push(platform_load(&platform, &s, rate, secs)?);
    }
    let load_after = testkit::benchmarks::load_average().unwrap_or_default();

    let mut report = format!(
        "`cargo bench -p e2e --bench load` (BENCH_SECS={secs}); {}; load average before {load_before}, after {load_after}.\n\n\
         Against the gateway's `/health/live` only (api-gateway and its dependencies of a dev stack copy, published on loopback). \
         wrk is closed-loop ({CONNECTIONS} connections, 2 threads) and shows the most the gateway answers here; `platform load` is open-loop \
         at a share of that rate over at most {CONNECTIONS} connections like wrk's (`--connections {CONNECTIONS}`: a request due while all are busy waits, and the wait counts in its latency), its latency measured from each request's due time. Failed requests are split into dropped (due while `max_in_flight`, 1024, were out: the generator's own limit), transport failures by cause and non-2xx answers by status. CPU is the generator's own user+system time per request (for `platform load`, the whole command: start, stack lookup and report included).\n\n\
         | generator | target req/s | achieved req/s | p50 ms | p99 ms | max ms | failed | generator CPU µs/req |\n\
         |---|---|---|---|---|---|---|---|\n",
        testkit::benchmarks::cpu_model().unwrap_or_else(|| "unknown CPU".into())
    );
    for r in &rows {
        report.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} |\n",
            r.what,
            r.target.map_or("-".to_string(), |t| format!("{t:.0}")),
            r.achieved,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            if r.why.is_empty() {
                r.failed.to_string()
            } else {
                format!("{} ({})", r.failed, r.why)
            },
            r.cpu_us_per_request
        ));
    }
    println!("{report}");
    if std::env::var("BENCH_WRITE").as_deref() != Ok("0") {
        let path = testkit::benchmarks::write_section("load", &report)?;
        eprintln!("wrote {}", path.display());
    }
    drop(stack);
    Ok(())
}

fn wrk(url: &str, secs: u64) -> anyhow::Result<Row> {
    let (out, cpu) = e2e::measure::timed(&format!(
        "wrk -t2 -c{CONNECTIONS} -d{secs}s --latency {url}"
    ))?;
    let field = |prefix: &str| -> Option<f64> {
        out.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(wrk_ms)
    };
    let rps: f64 = out
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context(format!("no Requests/sec in wrk's output:\n{out}"))?;
    let total: f64 = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(rps * secs as f64);
    let errors: u64 = out
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map_or(0, |_| 1);
    let max = out
        .lines()
        .find(|l| l.trim_start().starts_with("Latency"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(wrk_ms)
        .unwrap_or(0.0);
    Ok(Row {
        what: "wrk (baseline)".into(),
        target: None,
        achieved: rps,
        p50_ms: field("50%").unwrap_or(0.0),
        p99_ms: field("99%").unwrap_or(0.0),
        max_ms: max,
        failed: errors,
        why: String::new(),
        cpu_us_per_request: cpu * 1e6 / total.max(1.0),
    })
}

/// wrk's `1.23ms`, `456.00us`, `1.02s` in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    if let Some(x) = v.strip_suffix("us") {
        x.parse::<f64>().ok().map(|x| x / 1000.0)
    } else if let Some(x) = v.strip_suffix("ms") {
        x.parse().ok()
    } else if let Some(x) = v.strip_suffix('s') {
        x.parse::<f64>().ok().map(|x| x * 1000.0)
    } else {
        None
    }
}

fn platform_load(platform: &Platform, s: &str, rate: f64, secs: u64) -> anyhow::Result<Row> {
    let bin = platform.bin().display().to_string();
    let root = platform.root().display().to_string();
    let (out, cpu) = e2e::measure::timed(&format!(
        "cd {root} && {bin} load --stack {s} --mix health --rate {rate} --duration {secs}s --connections {CONNECTIONS} --json 2>/dev/null"
    ))?;
    let r: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("platform load printed:\n{out}"))?;
    let num = |p: &[&str]| p.iter().fold(&r, |v, k| &v[*k]).as_f64().unwrap_or(0.0);
    let sent = num(&["sent"]);
    Ok(Row {
        what: "platform load".into(),
        target: Some(rate),
        achieved: num(&["throughput"]),
        p50_ms: num(&["latency_ms", "p50"]),
        p99_ms: num(&["latency_ms", "p99"]),
        max_ms: num(&["latency_ms", "max"]),
        failed: num(&["counts", "total"]) as u64 - num(&["counts", "ok"]) as u64,
        why: failures(&r),
        cpu_us_per_request: cpu * 1e6 / sent.max(1.0),
    })
}

/// `2 dropped, 3 timeout, 1 status 502` from a `--json` report; empty without failures.
fn failures(r: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    let dropped = r["counts"]["dropped"].as_u64().unwrap_or(0);
    if dropped > 0 {
        parts.push(format!("{dropped} dropped"));
    }
    if let Some(t) = r["transport_errors"].as_object() {
        for (cause, n) in t {
            parts.push(format!("{} {cause}", n.as_u64().unwrap_or(0)));
        }
    }
    if let Some(st) = r["statuses"].as_object() {
        for (status, n) in st {
            if !status.starts_with('2') {
                parts.push(format!("{} status {status}", n.as_u64().unwrap_or(0)));
            }
        }
    }
    parts.join(", ")
}
