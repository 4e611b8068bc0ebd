//! The load generator's own CPU per request, against a tiny HTTP server in a child process on
//! the loopback (so the server's CPU is not counted).
//!
//! `cargo run --release -p platform --example load_cpu -- [RATE] [SECONDS] [MIX]`
//! (defaults: 3000 requests/s, 10 s, `health`). Prints the generator's user+system CPU time
//! per request (from `/proc/self/stat`), what was sent, dropped and the latency percentiles.
//! The server answers `/health/live`, `/api/product/{id}`, `/api/inventory/{sku}`,
//! `GET /api/order` and `POST /api/order` (201 with an order number).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use platform::chaos::load::fixture::Product;
use platform::chaos::load::{self, Fixture, LoadConfig, Mix, TokenPool};
use url::Url;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve();
    }
    let rate: f64 = args.get(1).map_or(Ok(3000.0), |s| s.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(10.0), |s| s.parse())?;
    let mix: Mix = args
        .get(3)
        .map_or("health", String::as_str)
        .parse()
        .map_err(anyhow::Error::msg)?;

    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(anyhow::Error::from)?;
    let gateway = Url::parse(&format!("http://{}/", line.trim()))?;

    let runtime = if std::env::var_os("LOAD_CPU_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let result = runtime.block_on(async move {
        let tokens = TokenPool::fixed(
            reqwest::Client::new(),
            gateway.clone(),
            vec![
                ("alice".into(), "t-alice".into()),
                ("bob".into(), "t-bob".into()),
            ],
        );
        let fixture = Fixture {
            gateway,
            tokens: Some(tokens),
            products: (0..4)
                .map(|i| Product {
                    id: format!("p{i}"),
                    sku: format!("sku-{i}"),
                })
                .collect(),
            run_id: "cpu".into(),
        };
        let config = LoadConfig::new(rate, Duration::from_secs_f64(secs), mix);
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let handle = load::start(config, fixture)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = handle.done() => break,
                _ = tick.tick() => { let _ = handle.progress(); }
            }
        }
        let report = handle.finish(false).await;
        let cpu = cpu_seconds() - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        anyhow::Ok((report, cpu, wall))
    });
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    let _ = child.kill();
    let _ = child.wait();
    let (report, cpu, wall) = result?;
    let per = if report.scheduled > 0 {
        cpu * 1e6 / report.scheduled as f64
    } else {
        0.0
    };
    println!(
        "rate {rate}/s for {secs}s: scheduled {} sent {} achieved {:.0}/s dropped {} ok {} transport {}",
        report.scheduled,
        report.sent,
        report.achieved_rate,
        report.counts.dropped,
        report.counts.ok,
        report.counts.transport
    );
    println!(
        "latency ms p50 {:.2} p99 {:.2} max {:.2}",
        report.latency_ms.p50, report.latency_ms.p99, report.latency_ms.max
    );
    println!(
        "generator CPU {cpu:.3}s over {wall:.2}s wall ({:.0}% of a core): {per:.1} us/request",
        100.0 * cpu / wall
    );
    Ok(())
}

/// User plus system CPU time of this process so far, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The child: a small server on the loopback, one thread, until stdin closes.
fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let orders = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/health/live", get(|| async { "UP" }))
            .route("/api/product/{id}", get(|| async { "{}" }))
            .route("/api/inventory/{sku}", get(|| async { "{}" }))
            .route(
                "/api/order",
                get(|| async { "[]" }).post(move || {
                    let n = orders.fetch_add(1, Ordering::Relaxed);
                    async move {
                        (
                            StatusCode::CREATED,
                            [(header::CONTENT_TYPE, "application/json")],
                            format!(r#"{{"orderNumber":"o-{n}"}}"#),
                        )
                            .into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        // Serve until the parent writes a line or goes away.
        tokio::task::spawn_blocking(|| {
            let mut l = String::new();
            let _ = std::io::stdin().read_line(&mut l);
        })
        .await?;
        anyhow::Ok(())
    })
}
