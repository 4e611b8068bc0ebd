//! How figures are written on screen: short durations (`1m05s`), ages, clock times in the
//! user's offset, byte sizes, percentages and text sparklines. Pure functions, shared by every
//! panel so the same thing always reads the same way.

use chrono::{DateTime, FixedOffset, Utc};

/// `850ms`, `11s`, `1m05s`, `2h03m`, `3d04h`; negative durations read as zero.
pub fn duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Whole seconds only (`0s`, `11s`, `1m05s`), for ages that tick.
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let d = now - then;
    if d.num_seconds() < 1 {
        "0s".to_string()
    } else {
        duration(chrono::Duration::seconds(d.num_seconds()))
    }
}

/// `12:03:04` in `offset`.
pub fn clock(t: DateTime<Utc>, offset: FixedOffset) -> String {
    t.with_timezone(&offset).format("%H:%M:%S").to_string()
}

/// Microseconds as `850µs`, `12.3ms`, `1.20s`.
pub fn micros(us: u64) -> String {
    match us {
        0..1000 => format!("{us}µs"),
        1000..1_000_000 => format!("{:.1}ms", us as f64 / 1000.0),
        _ => format!("{:.2}s", us as f64 / 1_000_000.0),
    }
}

/// `512B`, `12K`, `12.3M`, `1.2G` (binary units, as `docker stats`).
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n}B")
    } else if f < K * K {
        format!("{:.0}K", f / K)
    } else if f < K * K * K {
        let m = f / (K * K);
        if m < 100.0 {
            format!("{m:.1}M")
        } else {
            format!("{m:.0}M")
        }
    } else {
        format!("{:.1}G", f / (K * K * K))
    }
}

/// The eight bar heights of a text sparkline.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` samples as bar characters scaled to `max` (at least 1); gaps are spaces.
/// Zero is the lowest bar, so a quiet series still shows as a line.
pub fn spark(samples: &[Option<u64>], width: usize, max: u64) -> String {
    let max = max.max(1);
    let skip = samples.len().saturating_sub(width);
    samples[skip..]
        .iter()
        .map(|s| match s {
            None => ' ',
            Some(v) => {
                let level = ((*v).min(max) * (BARS.len() as u64 - 1) + max / 2) / max;
                BARS[level as usize]
            }
        })
        .collect()
}

/// Truncates `text` to `width` characters, ending with `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations, sizes and sparklines read as the panels show them.
    #[test]
    fn formats() {
        let s = chrono::Duration::seconds;
        assert_eq!(duration(chrono::Duration::milliseconds(850)), "850ms");
        assert_eq!(duration(s(11)), "11s");
        assert_eq!(duration(s(65)), "1m05s");
        assert_eq!(duration(s(7380)), "2h03m");
        assert_eq!(duration(s(-5)), "0ms");
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.3ms");
        assert_eq!(micros(1_200_000), "1.20s");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(12 * 1024 * 1024 + 300_000), "12.3M");
        assert_eq!(bytes(64 * 1024 * 1024), "64.0M");
        assert_eq!(
            spark(&[Some(0), Some(50), Some(100), None], 10, 100),
            "▁▅█ "
        );
        assert_eq!(spark(&[Some(1), Some(2), Some(3)], 2, 3), "▆█");
        assert_eq!(fit("order-service", 6), "order…");
        assert_eq!(fit("abc", 3), "abc");
    }
}
