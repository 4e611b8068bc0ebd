//! What the workspace's benchmarks share: knobs from the environment, readings of `/proc`
//! (CPU time and memory of a process, the machine's load and CPU model), and writing the
//! figures into the benchmark's section of BENCHMARKS.md.
//!
//! Each benchmark owns one section, between `<!-- BEGIN name -->` and `<!-- END name -->`, and
//! rewrites only that. A name with a slash (`tracing/sampling`) is a sub-section of the part
//! before the slash: when it does not exist yet it is added at the end of its parent section.

use std::path::{Path, PathBuf};

use crate::workspace_root;

/// A numeric knob from the environment (`BENCH_...`), `default` when unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    fn missing_markers_are_an_error() {
        assert!(replace_section(DOC, "zzz", "r").is_err());
        assert!(replace_section(DOC, "q/r", "r").is_err());
    }
}
