//! Where log lines go: stdout, written in batches.
//!
//! Under Docker, a service's stdout is a pipe read by its containerd-shim, which hands each read
//! to dockerd, which writes it through the container's log driver. Each `write` on the pipe is a
//! wake-up of both, whatever its size: measured here (Docker 20.10, json-file), a line written
//! alone cost the daemon's processes about 210 µs of CPU, fifty lines written at once about 20 µs
//! each. On the dev stack the two `info` lines of an order cost the daemon about 0.4 ms of CPU per
//! order (BENCHMARKS.md, `deployed/rust-log-warn`).
//!
//! So lines below WARN are collected and written together, by a background thread, at most
//! `interval` after the first of them (as zap's `BufferedWriteSyncer` and logback's
//! `immediateFlush=false` do). The rest stays as it was:
//! - a WARN or ERROR line is written at once, after every line collected before it (order is
//!   kept);
//! - collected lines past [`MAX_PENDING`] bytes are written at once by the thread that logs, so
//!   memory stays bounded and a full pipe slows the service down as it did before;
//! - [`flush`] writes what is collected (the telemetry guard calls it when it drops, the panic
//!   hook before the panic's message, the kill assault before it exits);
//! - `interval` zero writes every line at once.
//!
//! What a batch can lose is what any buffered logger loses: the `info` lines of the last
//! `interval` before a SIGKILL.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Collected bytes beyond which the logging thread writes them itself.
pub const MAX_PENDING: usize = 256 * 1024;

/// The process's batched output, once [`Batched::stdout`] made it (for [`flush`]).
static STDOUT: OnceLock<Batched> = OnceLock::new();

/// Writes every collected line of the process's log output now.
pub fn flush() {
    if let Some(b) = STDOUT.get() {
        b.flush();
    }
}

/// [`flush`] from a panic hook: skipped when another thread is writing (or this one panicked
/// while it was), rather than waiting on the lock.
pub fn try_flush() {
    if let Some(b) = STDOUT.get()
        && let Ok(mut pending) = b.shared.pending.try_lock()
    {
        pending.write_out();
    }
}

/// Log output collected in memory and written to `sink` in batches.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the first line of a batch arrives.
    arrived: Condvar,
    interval: Duration,
}

struct Pending {
    bytes: Vec<u8>,
    sink: Box<dyn Write + Send>,
}

impl Pending {
    /// Writes what is collected; a failed write drops it (as a failed line write did).
    fn write_out(&mut self) {
        if !self.bytes.is_empty() {
            let _ = self.sink.write_all(&self.bytes);
            let _ = self.sink.flush();
            self.bytes.clear();
        }
    }
}

impl Batched {
    /// The process's stdout, batched every `interval` (made once; later calls return the first).
    pub fn stdout(interval: Duration) -> Batched {
        // Kept for the life of the process: its writer thread never needs to wake without lines.
        STDOUT
            .get_or_init(|| Batched::start(io::stdout(), interval, None))
            .clone()
    }

    /// Output to `sink`, batched every `interval`; a zero interval writes each line at once.
    pub fn new(sink: impl Write + Send + 'static, interval: Duration) -> Batched {
        Batched::start(sink, interval, Some(Duration::from_secs(1)))
    }

    /// [`Batched::new`]; with no lines, the writer thread wakes every `idle_wake` to notice the
    /// output was dropped, or never (`None`: an output that is never dropped).
    fn start(
        sink: impl Write + Send + 'static,
        interval: Duration,
        idle_wake: Option<Duration>,
    ) -> Batched {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                sink: Box::new(sink),
            }),
            arrived: Condvar::new(),
            interval,
        });
        if !interval.is_zero() {
            let weak = Arc::downgrade(&shared);
            // Without the thread every line is written at once, which is still correct.
            let _ = std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || writer_loop(weak, idle_wake));
        }
        Batched { shared }
    }

    /// Writes what is collected now.
    pub fn flush(&self) {
        self.shared.lock().write_out();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock left whole lines or none: the data is usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The background writer: waits for a first line, lets `interval` pass, writes the batch. Ends
/// when the output is dropped (noticed within `idle_wake`; `None`: never dropped, never woken
/// without a line).
fn writer_loop(weak: std::sync::Weak<Shared>, idle_wake: Option<Duration>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let interval = shared.interval;
        {
            let pending = shared.lock();
            let pending = match idle_wake {
                Some(wake) => {
                    shared
                        .arrived
                        .wait_timeout_while(pending, wake, |p| p.bytes.is_empty())
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared
                    .arrived
                    .wait_while(pending, |p| p.bytes.is_empty())
                    .unwrap_or_else(PoisonError::into_inner),
            };
            if pending.bytes.is_empty() {
                continue;
            }
        }
        drop(shared);
        std::thread::sleep(interval);
        let Some(shared) = weak.upgrade() else { return };
        shared.lock().write_out();
    }
}

/// One event's writer: collects, or writes at once ([`Batched::make_writer_for`]).
pub struct LineWriter<'a> {
    shared: &'a Shared,
    at_once: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(buf);
        if self.at_once || self.shared.interval.is_zero() || pending.bytes.len() >= MAX_PENDING {
            pending.write_out();
        } else if first {
            self.shared.arrived.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            at_once: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            // ERROR < WARN < INFO in `tracing`'s order (more verbose is greater).
            at_once: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sink that records each write it gets, shared with the test.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn taken(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|w| String::from_utf8(w.clone()).unwrap())
                .collect()
        }
    }

    fn line(out: &Batched, at_once: bool, text: &str) {
        let mut w = LineWriter {
            shared: &out.shared,
            at_once,
        };
        w.write_all(text.as_bytes()).unwrap();
    }

    /// Lines below WARN arrive together in one write after the interval; nothing is written
    /// before it.
    #[test]
    fn lines_are_written_together_after_the_interval() {
        let sink = Writes::default();
        let out = Batched::new(sink.clone(), Duration::from_millis(100));
        for i in 0..5 {
            line(&out, false, &format!("info {i}\n"));
        }
        assert!(sink.taken().is_empty(), "written before the interval");
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.taken().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            sink.taken(),
            ["info 0\ninfo 1\ninfo 2\ninfo 3\ninfo 4\n"],
            "one write"
        );
    }

    /// A WARN line is written at once, after the lines collected before it, in one write.
    #[test]
    fn a_warning_writes_at_once_and_keeps_order() {
        let sink = Writes::default();
        let out = Batched::new(sink.clone(), Duration::from_secs(60));
        line(&out, false, "info 1\n");
        line(&out, true, "warn 2\n");
        assert_eq!(sink.taken(), ["info 1\nwarn 2\n"]);
        line(&out, false, "info 3\n");
        out.flush();
        assert_eq!(sink.taken(), ["info 1\nwarn 2\n", "info 3\n"]);
        out.flush();
        assert_eq!(sink.taken().len(), 2, "nothing left to write");
    }

    /// Past MAX_PENDING bytes the logging thread writes the batch itself; a zero interval
    /// writes every line at once.
    #[test]
    fn bounded_and_unbatched() {
        let sink = Writes::default();
        let out = Batched::new(sink.clone(), Duration::from_secs(60));
        let big = "x".repeat(MAX_PENDING / 2) + "\n";
        line(&out, false, &big);
        assert!(sink.taken().is_empty());
        line(&out, false, &big);
        assert_eq!(sink.taken().len(), 1, "written when the limit was passed");
        assert_eq!(sink.taken()[0].len(), 2 * big.len());

        let sink = Writes::default();
        let out = Batched::new(sink.clone(), Duration::ZERO);
        line(&out, false, "a\n");
        line(&out, false, "b\n");
        assert_eq!(sink.taken(), ["a\n", "b\n"]);
    }

    /// Events reach the sink through a subscriber, with the level deciding: an info event
    /// waits, a warning takes it along.
    #[test]
    fn through_a_subscriber() {
        let sink = Writes::default();
        let out = Batched::new(sink.clone(), Duration::from_secs(60));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            assert!(sink.taken().is_empty());
            tracing::warn!("second");
        });
        let written = sink.taken();
        assert_eq!(written.len(), 1, "{written:?}");
        assert!(
            written[0].contains("first") && written[0].contains("second"),
            "{written:?}"
        );
        assert!(written[0].find("first") < written[0].find("second"));
    }

    /// Dropping the output ends its writer thread.
    #[test]
    fn the_writer_thread_ends_with_the_output() {
        let out = Batched::new(Writes::default(), Duration::from_millis(10));
        let weak = Arc::downgrade(&out.shared);
        line(&out, false, "x\n");
        drop(out);
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.upgrade().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            weak.upgrade().is_none(),
            "the thread still holds the output"
        );
    }
}
