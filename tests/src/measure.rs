//! What the benchmarks share: their runtime, and the CPU time a shell command and its children used.

use anyhow::{Context as _, bail};

/// Runs a benchmark's async body on a multi-threaded runtime (a bench's `main`).
pub fn block_on(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(body)
}

/// Runs `command` under bash and returns its stdout and the children's CPU seconds (`times`).
pub fn timed(command: &str) -> anyhow::Result<(String, f64)> {
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("{command}; times >&2")])
        .output()
        .with_context(|| format!("run {command}"))?;
    if !out.status.success() {
        bail!(
            "`{command}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // `times` prints the shell's user/system times, then its children's: `0m1.234s 0m0.567s`.
    let children = err.lines().last().context("no `times` output")?;
    let cpu: f64 = children.split_whitespace().map(minutes_seconds).sum();
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), cpu))
}

/// `1m2.500s` → 62.5.
pub fn minutes_seconds(t: &str) -> f64 {
    let t = t.trim_end_matches('s');
    match t.split_once('m') {
        Some((m, s)) => m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0),
        None => t.parse().unwrap_or(0.0),
    }
}
