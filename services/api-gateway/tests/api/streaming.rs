//! Large bodies stream through the gateway: its memory does not grow with
//! the body.
//!
//! The gateway runs as its own process (the real binary, routes from a
//! file, upstream found through the real registry) so that its resident
//! memory can be read from `/proc/<pid>/status` alone. The peak (`VmHWM`)
//! is reset through `/proc/<pid>/clear_refs` after a warm-up, so the
//! figure is the peak during the 200 MB transfers minus the resident size
//! before them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use echo_upstream::{Uploaded, pattern_byte};
use futures::StreamExt;

use crate::helpers::*;

const MIB: u64 = 1024 * 1024;
const BIG: u64 = 200 * MIB;
/// The growth allowed for 200 MB each way: buffers of a few connections,
/// allocator slack; a gateway that buffered a body would exceed it 10 times.
const BOUND: u64 = 20 * MIB;

/// Reads a `kB` field of `/proc/<pid>/status`, in bytes.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A period-aligned block of the pattern, long enough for any chunk offset.
fn pattern_block() -> Bytes {
    Bytes::from((0..251 * 300).map(pattern_byte).collect::<Vec<u8>>())
}

/// Whether `chunk`, found at `offset` of a generated body, follows the pattern.
fn follows_pattern(block: &Bytes, offset: u64, chunk: &[u8]) -> bool {
    let mut pos = offset;
    let mut rest = chunk;
    while !rest.is_empty() {
        let start = (pos % 251) as usize;
        let n = rest.len().min(block.len() - start);
        if rest[..n] != block[start..start + n] {
            return false;
        }
        rest = &rest[n..];
        pos += n as u64;
    }
    true
}

async fn download(c: &reqwest::Client, url: &str, len: u64, block: &Bytes) {
    let res = c.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(len), "Content-Length is relayed");
    let mut stream = res.bytes_stream();
    let mut seen = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(follows_pattern(block, seen, &chunk), "corrupt at {seen}");
        seen += chunk.len() as u64;
    }
    assert_eq!(seen, len);
}

async fn upload(c: &reqwest::Client, url: &str, len: u64, block: &Bytes) -> Uploaded {
    let block = block.clone();
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let block = block.clone();
        async move {
            if sent >= len {
                return None;
            }
            let n = (len - sent).min(64 * 1024) as usize;
            let start = (sent % 251) as usize;
            Some((
                Ok::<Bytes, std::io::Error>(block.slice(start..start + n)),
                sent + n as u64,
            ))
        }
    });
    let res = c
        .post(url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// 200 MB down and 200 MB up (chunked, generated on the fly) pass through
/// intact while the gateway process's peak RSS grows by less than 20 MiB.
#[tokio::test]
async fn large_bodies_stream_without_memory_growth() {
    let registry = Registry::start().await;
    let up = Upstream::echo("bulk").await;
    registry.register("bulk-service", "bulk", up.port).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[[routes]]\nid = \"bulk\"\nuri = \"lb://bulk-service\"\npredicates = [\"Path=/bulk/**\"]\nfilters = [\"StripPrefix=1\"]\ntimeout = \"120s\"\npublic = true\n",
    )
    .unwrap();
    let port = testkit::free_port().unwrap().to_string();
    let gateway = testkit::spawn_process(
        env!("CARGO_BIN_EXE_api-gateway"),
        [
            "--routes",
            routes.to_str().unwrap(),
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--registry-url",
            &registry.url,
            "--admin-token",
            "x",
        ],
        [("RUST_LOG", "warn")],
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    testkit::wait_for_http(&format!("{base}/bulk/hello"), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log_tail(30)));
    let c = client();
    let block = pattern_block();
    let pid = gateway.pid();

    // Warm up: connections, pools, allocator arenas.
    download(
        &c,
        &format!("{base}/bulk/bytes/{}", 16 * MIB),
        16 * MIB,
        &block,
    )
    .await;
    let u = upload(&c, &format!("{base}/bulk/upload"), 16 * MIB, &block).await;
    assert!(u.pattern_ok && u.bytes == 16 * MIB);

    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = proc_status_kb(pid, "VmRSS:");
    let t = Instant::now();
    download(&c, &format!("{base}/bulk/bytes/{BIG}"), BIG, &block).await;
    let down = t.elapsed();
    let t = Instant::now();
    let u = upload(&c, &format!("{base}/bulk/upload"), BIG, &block).await;
    let up_time = t.elapsed();
    assert_eq!(u.bytes, BIG);
    assert!(u.pattern_ok, "the upload arrived intact");
    let peak = proc_status_kb(pid, "VmHWM:");
    let growth = peak.saturating_sub(before);
    println!(
        "gateway RSS before {} KiB, peak during 2 x 200 MB {} KiB, growth {} KiB; down {down:?}, up {up_time:?}",
        before / 1024,
        peak / 1024,
        growth / 1024
    );
    assert!(
        growth < BOUND,
        "the gateway grew by {} KiB while streaming",
        growth / 1024
    );
}
