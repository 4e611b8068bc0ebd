//! What the workspace's benchmarks share: knobs from the environment, readings of `/proc`
//! (CPU time and memory of a process, the machine's load and CPU model), the wrk load generator
//! (an order script, a run, its figures and its own CPU time), and writing the figures into the
//! benchmark's section of BENCHMARKS.md.
//!
//! Each benchmark owns one section, between `<!-- BEGIN name -->` and `<!-- END name -->`, and
//! rewrites only that. A name with a slash (`tracing/sampling`) is a sub-section of the part
//! before the slash: when it does not exist yet it is added at the end of its parent section.

use std::path::{Path, PathBuf};

use crate::{Error, Result, workspace_root};

/// A numeric knob from the environment (`BENCH_...`), `default` when unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle value of `values` (the mean of the two middle ones for an even count); `None`
/// for none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// CPU time (user + system) `pid` has used so far, in seconds; `None` when its `/proc` entry
/// cannot be read (the process is gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // `/proc` counts in USER_HZ, which is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

/// The summed [`cpu_seconds`] of `pids`; `None` when one of them cannot be read.
pub fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// The machine's busy CPU time so far (every CPU, every state but idle and iowait, from the
/// `cpu` line of `/proc/stat`), in seconds: what all processes and the kernel used together.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy as f64 / 100.0)
}

/// A `kB` field of `/proc/<pid>/status` (`"VmRSS"`, `"VmHWM"`, ...), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// The three load averages (1, 5 and 15 minutes) as `/proc/loadavg` gives them.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The CPU's model name from `/proc/cpuinfo`.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split(':').nth(1)?.trim().to_string())
}

/// wrk's request script for order load: every request a `POST` of a one-line order (one unit of
/// one of `skus`, picked at random, at `price`) with `token` as its bearer token.
pub fn order_script(token: &str, skus: &[String], price: &str) -> String {
    let list: Vec<String> = skus.iter().map(|s| lua_string(s)).collect();
    format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {auth}
local skus = {{{list}}}
math.randomseed(os.time())
request = function()
  local sku = skus[math.random(1, #skus)]
  return wrk.format(nil, nil, nil, '{{"lines":[{{"skuCode":"' .. sku .. '","price":"{price}","quantity":1}}]}}')
end
"#,
        auth = lua_string(&format!("Bearer {token}")),
        list = list.join(", "),
        // A decimal (`4.50`): nothing in it needs quoting in JSON or Lua.
        price = price.trim(),
    )
}

/// `text` as a Lua string literal.
fn lua_string(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The figures of one wrk run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wrk {
    /// Requests completed (any status).
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx answers plus socket errors.
    pub errors: u64,
    /// wrk's own CPU time (user + system) during the run, seconds.
    pub cpu_seconds: f64,
}

impl Wrk {
    /// Requests that succeeded (at least 1, to divide by).
    pub fn succeeded(&self) -> u64 {
        self.requests.saturating_sub(self.errors).max(1)
    }
}

/// Runs wrk (the Debian package) with `conns` connections (2 threads, 1 for a single
/// connection) for `duration` (wrk's `-d`, e.g. `20s`) with the Lua `script` against `url`, and
/// reads its figures and its own CPU time (the shell's `times` after it exits).
pub async fn wrk(script: &Path, url: &str, conns: u32, duration: &str) -> Result<Wrk> {
    let threads = conns.clamp(1, 2).to_string();
    let program = format!("wrk -c {conns} -d {duration} {url}");
    let out = tokio::process::Command::new("bash")
        .args([
            "-c",
            r#"wrk "$@"; status=$?; times >&2; exit $status"#,
            "wrk",
            "-t",
            &threads,
            "-c",
            &conns.to_string(),
            "-d",
            duration,
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .await
        .map_err(Error::io(
            "running wrk under bash (Debian packages wrk, bash)",
        ))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Program {
            program,
            reason: format!("{}: {stderr}", out.status),
        });
    }
    let mut figures = parse_wrk(&stdout).map_err(|reason| Error::Program {
        program: program.clone(),
        reason,
    })?;
    // `times` prints the shell's user and system times, then its children's (wrk's).
    figures.cpu_seconds = stderr
        .lines()
        .last()
        .map(|l| l.split_whitespace().map(minutes_seconds).sum())
        .unwrap_or(0.0);
    Ok(figures)
}

/// A time as the shell's `times` prints it: `1m2.500s` is 62.5 (seconds).
pub fn minutes_seconds(t: &str) -> f64 {
    let t = t.trim_end_matches('s');
    match t.split_once('m') {
        Some((m, s)) => m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0),
        None => t.parse().unwrap_or(0.0),
    }
}

/// The figures in wrk's `--latency` output (its CPU time is not in it: 0).
pub fn parse_wrk(out: &str) -> std::result::Result<Wrk, String> {
    let ms = |v: &str| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => return None,
        })
    };
    let number = |what: &str, v: &str| -> std::result::Result<u64, String> {
        v.trim_end_matches(',')
            .parse()
            .map_err(|_| format!("{what}: `{v}` is not a number"))
    };
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => w.p50_ms = ms(v).ok_or_else(|| format!("p50 `{v}`"))?,
            ["99%", v] => w.p99_ms = ms(v).ok_or_else(|| format!("p99 `{v}`"))?,
            ["Requests/sec:", v] => {
                w.rps = v
                    .parse()
                    .map_err(|_| format!("Requests/sec `{v}` is not a number"))?;
            }
            [n, "requests", "in", ..] => w.requests = number("requests", n)?,
            ["Non-2xx", "or", "3xx", "responses:", n] => w.errors += number("non-2xx", n)?,
            ["Socket", "errors:", rest @ ..] => {
                for n in rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                {
                    w.errors += n;
                }
            }
            _ => {}
        }
    }
    if w.requests == 0 {
        return Err(format!("no requests in wrk's output:\n{out}"));
    }
    Ok(w)
}

/// Replaces section `name` of the workspace's BENCHMARKS.md with `report` and returns the file's
/// path. The file is replaced whole (written aside, then renamed), so an interrupted run never
/// leaves it half written.
pub fn write_section(name: &str, report: &str) -> std::io::Result<PathBuf> {
    let path = workspace_root().join("BENCHMARKS.md");
    write_section_in(&path, name, report)?;
    Ok(path)
}

fn write_section_in(path: &Path, name: &str, report: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let updated = replace_section(&text, name, report).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, updated)?;
    std::fs::rename(&tmp, path)
}

/// `text` with section `name` replaced by (or, for a missing sub-section, extended with) `report`.
fn replace_section(text: &str, name: &str, report: &str) -> Result<String, String> {
    let (begin, end) = (
        format!("<!-- BEGIN {name} -->"),
        format!("<!-- END {name} -->"),
    );
    let block = format!("{begin}\n{}\n{end}", report.trim_end());
    if let (Some(b), Some(e)) = (text.find(&begin), text.find(&end))
        && b < e
    {
        return Ok(format!("{}{block}{}", &text[..b], &text[e + end.len()..]));
    }
    let Some((parent, _)) = name.rsplit_once('/') else {
        return Err(format!("BENCHMARKS.md has no {begin} ... {end} markers"));
    };
    let parent_end = format!("<!-- END {parent} -->");
    let at = text
        .find(&parent_end)
        .ok_or_else(|| format!("BENCHMARKS.md has no {parent_end} marker for {name}"))?;
    Ok(format!("{}{block}\n{}", &text[..at], &text[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(status_bytes(me, "VmRSS").unwrap() > 0);
        assert_eq!(load_average().unwrap().split(' ').count(), 3);
        assert!(cpu_seconds(u32::MAX).is_none());
        assert!(status_bytes(me, "NoSuchField").is_none());
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([]), None);
    }

    const DOC: &str = "# B\n<!-- BEGIN a -->\nold\n<!-- END a -->\n<!-- BEGIN t -->\n<!-- BEGIN t/x -->\nx1\n<!-- END t/x -->\n<!-- END t -->\n";

    #[test]
    fn replaces_only_its_section() {
        let out = replace_section(DOC, "a", "new\n\n").unwrap();
        assert_eq!(out, DOC.replace("old", "new"));
        let out = replace_section(DOC, "t/x", "x2").unwrap();
        assert_eq!(out, DOC.replace("x1", "x2"));
    }

    #[test]
    fn adds_a_missing_sub_section_at_its_parents_end() {
        let out = replace_section(DOC, "t/y", "y").unwrap();
        assert!(
            out.ends_with(
                "<!-- END t/x -->\n<!-- BEGIN t/y -->\ny\n<!-- END t/y -->\n<!-- END t -->\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn reads_wrk_output() {
        let out = "Running 20s test @ http://127.0.0.1:1/api/order
  2 threads and 32 connections
  Latency Distribution
     50%   28.12ms
     75%   35.00ms
     90%   41.00ms
     99%    1.20s
  10512 requests in 20.01s, 4.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:    525.30
Transfer/sec:    209.62KB
";
        let w = parse_wrk(out).unwrap();
        assert_eq!(w.requests, 10512);
        assert_eq!(w.errors, 10);
        assert_eq!(w.succeeded(), 10502);
        assert!((w.p50_ms - 28.12).abs() < 1e-9);
        assert!((w.p99_ms - 1200.0).abs() < 1e-9);
        assert!((w.rps - 525.3).abs() < 1e-9);
        assert!(parse_wrk("nothing").is_err());
        assert!((minutes_seconds("1m2.500s") - 62.5).abs() < 1e-9);
    }

    #[test]
    fn order_script_quotes_its_strings() {
        let script = order_script("a\"b", &["sku-1".into(), "sku-2".into()], "4.50");
        assert!(
            script.contains(r#"wrk.headers["Authorization"] = "Bearer a\"b""#),
            "{script}"
        );
        assert!(
            script.contains(r#"local skus = {"sku-1", "sku-2"}"#),
            "{script}"
        );
        assert!(script.contains(r#""price":"4.50","#), "{script}");
    }

    #[test]
    fn machine_busy_time_grows() {
        let a = machine_busy_seconds().unwrap();
        assert!(a > 0.0);
        assert!(cpu_seconds_of(&[std::process::id()]).is_some());
    }

    #[test]
    fn missing_markers_are_an_error() {
        assert!(replace_section(DOC, "zzz", "r").is_err());
        assert!(replace_section(DOC, "q/r", "r").is_err());
    }
}
