//! Container output of all instances of a service, merged in time order. Docker stamps every
//! line (RFC 3339, nanoseconds); a line without a readable stamp takes the last stamp of its
//! instance so it stays next to its neighbours.
//!
//! Two merges: [`merge`] for a finished read (a stable sort: equal stamps keep instance
//! order), and [`LiveMerger`] for `--follow`, where lines of different instances arrive on
//! separate streams. The live merger holds each line for a short delay and then releases every
//! held line up to the newest released stamp, in stamp order: a line that arrives up to
//! `delay` late still comes out in order, and no line waits longer than `delay`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::instance_label;
use crate::runtime::{ContainerInfo, LogLine, LogOptions, LogStream, Runtime, RuntimeError};

/// One line of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tagged {
    /// `order-service-2`.
    pub instance: String,
    pub container: String,
    pub stream: LogStream,
    /// Docker's stamp as written.
    pub timestamp: String,
    pub text: String,
    /// The stamp read, the sort key.
    #[serde(skip)]
    pub at: DateTime<Utc>,
}

/// Tags the lines of one container, giving unstamped lines the previous stamp.
#[derive(Debug, Clone)]
pub struct Tagger {
    instance: String,
    container: String,
    last: DateTime<Utc>,
}

impl Tagger {
    pub fn new(instance: &str, container: &str) -> Self {
        Self {
            instance: instance.to_string(),
            container: container.to_string(),
            last: DateTime::<Utc>::MIN_UTC,
        }
    }

    pub fn tag(&mut self, line: LogLine) -> Tagged {
        let at = DateTime::parse_from_rfc3339(&line.timestamp)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(self.last);
        self.last = at;
        Tagged {
            instance: self.instance.clone(),
            container: self.container.clone(),
            stream: line.stream,
            timestamp: line.timestamp,
            text: line.text,
            at,
        }
    }
}

/// Merges finished reads (one list per instance, each in its own order) by stamp; equal
/// stamps keep the order of `per_instance`.
pub fn merge(per_instance: Vec<Vec<Tagged>>) -> Vec<Tagged> {
    let mut all: Vec<Tagged> = per_instance.into_iter().flatten().collect();
    all.sort_by_key(|t| t.at);
    all
}

/// Keeps lines that match `grep` (all lines without one).
pub fn filter(lines: Vec<Tagged>, grep: Option<&regex::Regex>) -> Vec<Tagged> {
    match grep {
        None => lines,
        Some(re) => lines.into_iter().filter(|l| re.is_match(&l.text)).collect(),
    }
}

/// Keeps the last `tail` lines.
pub fn last(mut lines: Vec<Tagged>, tail: Option<u64>) -> Vec<Tagged> {
    if let Some(n) = tail {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    lines
}

/// Orders lines arriving live from several streams (see the module docs).
#[derive(Debug)]
pub struct LiveMerger {
    delay: Duration,
    /// Held lines with their arrival time and arrival number (the tie-break).
    held: Vec<(Instant, u64, Tagged)>,
    next_seq: u64,
}

impl LiveMerger {
    /// Holds lines for `delay` (250 ms is enough for lines written at once by two instances).
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            held: Vec::new(),
            next_seq: 0,
        }
    }

    /// A line arrived at `now`.
    pub fn push(&mut self, line: Tagged, now: Instant) {
        self.held.push((now, self.next_seq, line));
        self.next_seq += 1;
    }

    /// Lines due at `now`, in stamp order: every held line whose stamp is not newer than the
    /// newest stamp among lines held for at least `delay`.
    pub fn ready(&mut self, now: Instant) -> Vec<Tagged> {
        let threshold = self
            .held
            .iter()
            .filter(|(arrived, _, _)| now.saturating_duration_since(*arrived) >= self.delay)
            .map(|(_, _, l)| l.at)
            .max();
        let Some(threshold) = threshold else {
            return Vec::new();
        };
        self.held.sort_by_key(|(_, seq, l)| (l.at, *seq));
        let split = self.held.partition_point(|(_, _, l)| l.at <= threshold);
        self.held.drain(..split).map(|(_, _, l)| l).collect()
    }

    /// Everything still held, in stamp order (the streams ended).
    pub fn flush(&mut self) -> Vec<Tagged> {
        self.held.sort_by_key(|(_, seq, l)| (l.at, *seq));
        self.held.drain(..).map(|(_, _, l)| l).collect()
    }

    /// How many lines are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Follows the output of `containers`, handing `emit` the lines in time order (a
/// [`LiveMerger`] holding each line `delay`, checked every 50 ms) until every stream ended,
/// one failed (its error is returned after the lines held are emitted), or `stop` completed.
pub async fn follow(
    rt: &Runtime,
    containers: &[ContainerInfo],
    options: &LogOptions,
    delay: Duration,
    stop: impl Future<Output = ()>,
    mut emit: impl FnMut(Vec<Tagged>),
) -> Result<(), RuntimeError> {
    let (tx, mut rx) = mpsc::channel::<Result<Tagged, RuntimeError>>(1024);
    let mut readers = Vec::with_capacity(containers.len());
    for c in containers {
        let tx = tx.clone();
        let mut stream = Box::pin(rt.logs(&c.name, options));
        let mut tagger = Tagger::new(&instance_label(c), &c.name);
        readers.push(tokio::spawn(async move {
            while let Some(line) = stream.next().await {
                let failed = line.is_err();
                if tx.send(line.map(|l| tagger.tag(l))).await.is_err() || failed {
                    break;
                }
            }
        }));
    }
    drop(tx);
    // The readers stop with this function (the dashboard follows another service).
    let _abort = AbortOnDrop(readers);
    let mut merger = LiveMerger::new(delay);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut stop = std::pin::pin!(stop);
    let result = loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(Ok(line)) => merger.push(line, Instant::now()),
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            },
            _ = tick.tick() => {
                let ready = merger.ready(Instant::now());
                if !ready.is_empty() {
                    emit(ready);
                }
            }
            () = &mut stop => break Ok(()),
        }
    };
    let rest = merger.flush();
    if !rest.is_empty() {
        emit(rest);
    }
    result
}

/// Aborts the reader tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// `--since`: a duration back from `now` (`10m`, `1h 30m`), an RFC 3339 time, or Unix seconds.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    match humantime::parse_duration(text) {
        Ok(d) => {
            let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
            Ok((now - d).timestamp())
        }
        Err(_) => Err(format!(
            "`{text}` is not a time: use a duration back from now (`10m`, `2h`), an RFC 3339 time \
             (`2025-01-31T12:00:00Z`) or Unix seconds"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(instance: &str, ts: &str, text: &str) -> Tagged {
        Tagger::new(instance, instance).tag(LogLine {
            stream: LogStream::Stdout,
            timestamp: ts.to_string(),
            text: text.to_string(),
        })
    }

    fn texts(lines: &[Tagged]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    /// Instances' lines interleave by stamp, with stamps of different precision compared as
    /// times (not as text); equal stamps keep instance order.
    #[test]
    fn merges_finished_reads_by_time() {
        let a = vec![
            line("a", "2025-01-01T00:00:01.1Z", "a1"),
            line("a", "2025-01-01T00:00:03.000000000Z", "a3"),
        ];
        let b = vec![
            line("b", "2025-01-01T00:00:01.05Z", "b1"),
            line("b", "2025-01-01T00:00:03Z", "b3"),
            line("b", "2025-01-01T00:00:04Z", "b4"),
        ];
        let merged = merge(vec![a, b]);
        assert_eq!(texts(&merged), vec!["b1", "a1", "a3", "b3", "b4"]);
    }

    /// A line without a stamp stays after its instance's previous line.
    #[test]
    fn unstamped_lines_keep_their_place() {
        let mut t = Tagger::new("a", "c");
        let first = t.tag(LogLine {
            stream: LogStream::Stdout,
            timestamp: "2025-01-01T00:00:02Z".into(),
            text: "first".into(),
        });
        let bare = t.tag(LogLine {
            stream: LogStream::Stderr,
            timestamp: String::new(),
            text: "continued".into(),
        });
        assert_eq!(bare.at, first.at);
        let other = vec![line("b", "2025-01-01T00:00:01Z", "earlier")];
        let merged = merge(vec![vec![first, bare], other]);
        assert_eq!(texts(&merged), vec!["earlier", "first", "continued"]);
    }

    /// `--grep` keeps matching lines; `--tail` keeps the last N after merging.
    #[test]
    fn grep_and_tail() {
        let lines = vec![
            line("a", "2025-01-01T00:00:01Z", "GET /health"),
            line("a", "2025-01-01T00:00:02Z", "POST /api/order 201"),
            line("a", "2025-01-01T00:00:03Z", "POST /api/order 409"),
        ];
        let re = regex::Regex::new("POST .* 4\\d\\d").unwrap();
        assert_eq!(
            texts(&filter(lines.clone(), Some(&re))),
            vec!["POST /api/order 409"]
        );
        assert_eq!(texts(&last(lines.clone(), Some(2))).len(), 2);
        assert_eq!(
            texts(&last(lines.clone(), Some(2)))[0],
            "POST /api/order 201"
        );
        assert_eq!(last(lines, None).len(), 3);
    }

    /// Live: a line that arrives late (within the delay) is still released before a newer one;
    /// nothing is released before its delay; a held line older than a released one goes with
    /// it; flush releases the rest in order. Time is passed in, so no clock runs.
    #[test]
    fn live_merge_orders_within_the_delay() {
        let delay = Duration::from_millis(250);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut m = LiveMerger::new(delay);
        m.push(line("a", "2025-01-01T00:00:02Z", "a2"), ms(0));
        assert!(m.ready(ms(0)).is_empty());
        // b's older line arrives 100 ms later.
        m.push(line("b", "2025-01-01T00:00:01Z", "b1"), ms(100));
        assert!(m.ready(ms(100)).is_empty());
        assert_eq!(texts(&m.ready(ms(250))), vec!["b1", "a2"]);
        assert_eq!(m.held(), 0);

        m.push(line("a", "2025-01-01T00:00:05Z", "a5"), ms(300));
        m.push(line("b", "2025-01-01T00:00:06Z", "b6"), ms(350));
        // a5 is due; b6 is newer and not yet due.
        assert_eq!(texts(&m.ready(ms(550))), vec!["a5"]);
        m.push(line("a", "2025-01-01T00:00:07Z", "a7"), ms(560));
        assert_eq!(texts(&m.flush()), vec!["b6", "a7"]);
    }

    /// `--since` takes durations, RFC 3339 times and Unix seconds, and says what it wants.
    #[test]
    fn since_values() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_since("10m", now), Ok(now.timestamp() - 600));
        assert_eq!(
            parse_since("2025-01-01T11:00:00Z", now),
            Ok(now.timestamp() - 3600)
        );
        assert_eq!(parse_since("1700000000", now), Ok(1_700_000_000));
        assert!(parse_since("yesterday", now).unwrap_err().contains("10m"));
    }
}
