//! Waiting for a condition instead of sleeping: the one polling loop of the workspace's tests.
//!
//! A test that sleeps "long enough" is slow on a fast machine and flaky on a loaded one; a test
//! that asserts how long something took measures the machine. Both wait here on the condition
//! itself, bounded by a generous limit that only turns a hang into a failure.
//!
//! Polling starts at 10 ms and backs off to [`MAX_POLL`], so a condition that holds soon is seen
//! soon, and a slow one (a Docker stack, a consumer group) is not hammered.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The longest pause between two checks.
pub const MAX_POLL: Duration = Duration::from_millis(250);
const FIRST_POLL: Duration = Duration::from_millis(10);

/// Paces a polling loop: [`Pacer::pause`] sleeps before the next check, or says the time is up.
struct Pacer {
    deadline: Instant,
    delay: Duration,
}

impl Pacer {
    fn new(within: Duration) -> Self {
        Self {
            deadline: Instant::now() + within,
            delay: FIRST_POLL,
        }
    }

    /// Sleeps until the next check; `false` when the limit has passed (no further check).
    async fn pause(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.delay.min(self.deadline - now)).await;
        self.delay = (self.delay * 2).min(MAX_POLL);
        true
    }
}

/// What one check of [`eventually`] found: done (with a value), or not yet (with why).
pub trait Outcome {
    /// What [`eventually`] returns once the check succeeds.
    type Value;
    /// `Ok` when the condition holds, else `Err` with what was seen (quoted on timeout).
    fn outcome(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn outcome(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".into())
    }
}

/// `Ok(None)` is "not yet", `Err` is "not yet, because": the reason is quoted on timeout.
impl<T, E: Display> Outcome for Result<Option<T>, E> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        match self {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err("not yet".into()),
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

/// Checks until `check` succeeds ([`Outcome`]: `true`, `Some(v)` or `Ok(Some(v))`) and returns its
/// value; panics after `within`, naming `what` and the last thing the check saw.
pub async fn eventually<O, F, Fut>(what: &str, within: Duration, mut check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let mut pacer = Pacer::new(within);
    loop {
        let last = match check().await.outcome() {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            pacer.pause().await,
            "timed out after {within:?} waiting for {what}; last: {last}"
        );
    }
}

/// Probes until `done` accepts the probed value and returns it; `None` after `within`, for callers
/// that report the failure themselves (with the last value they kept).
pub async fn poll_until<T, F, Fut>(
    within: Duration,
    mut probe: F,
    mut done: impl FnMut(&T) -> bool,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut pacer = Pacer::new(within);
    loop {
        let v = probe().await;
        if done(&v) {
            return Some(v);
        }
        if !pacer.pause().await {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Each outcome kind ends the wait with its value once it holds.
    #[tokio::test(start_paused = true)]
    async fn eventually_returns_the_value() {
        let n = AtomicU32::new(0);
        let next = || n.fetch_add(1, Ordering::SeqCst) + 1;
        eventually("bool", Duration::from_secs(5), || async { next() >= 3 }).await;
        let v = eventually("option", Duration::from_secs(5), || async {
            let i = next();
            (i >= 6).then_some(i)
        })
        .await;
        assert_eq!(v, 6);
        let v = eventually("result", Duration::from_secs(5), || async {
            match next() {
                i if i < 8 => Err(format!("only {i}")),
                i => Ok::<_, String>(Some(i)),
            }
        })
        .await;
        assert_eq!(v, 8);
    }

    /// On timeout the panic names what was awaited and the last reason seen.
    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waiting for the answer; last: still 42")]
    async fn eventually_panics_with_the_last_reason() {
        eventually("the answer", Duration::from_secs(1), || async {
            Err::<Option<()>, _>("still 42")
        })
        .await;
    }

    /// `poll_until` gives the accepted value, or `None` once the time is up, having checked
    /// with growing pauses (10 ms doubling to 250 ms), the last check at the limit itself.
    #[tokio::test(start_paused = true)]
    async fn poll_until_backs_off_and_gives_up() {
        let n = AtomicU32::new(0);
        let got = poll_until(
            Duration::from_secs(5),
            || async { n.fetch_add(1, Ordering::SeqCst) },
            |v| *v == 4,
        )
        .await;
        assert_eq!(got, Some(4));
        let checks = AtomicU32::new(0);
        let got = poll_until(
            Duration::from_secs(2),
            || async { checks.fetch_add(1, Ordering::SeqCst) },
            |_| false,
        )
        .await;
        assert_eq!(got, None);
        // Checks at 0, 10, 30, 70, 150, 310, 560, 810, 1060, 1310, 1560, 1810 and 2000 ms.
        assert_eq!(checks.load(Ordering::SeqCst), 13);
    }
}
