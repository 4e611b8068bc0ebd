//! Keycloak's brute-force detection for the password grant, with the realm's settings
//! (`bruteForceProtected`, `failureFactor`, `waitIncrementSeconds`, `maxFailureWaitSeconds`,
//! `maxDeltaTimeSeconds`, `quickLoginCheckMilliSeconds`, `minimumQuickLoginWaitSeconds`,
//! `permanentLockout`) and Keycloak's algorithm (`BruteForceProtector`):
//!
//! - a failed login counts against the username tried; failures older than `maxDeltaTime`
//!   start the count again;
//! - a failure within `quickLoginCheck` of the previous one locks the name for
//!   `minimumQuickLoginWait`; every `failureFactor`-th failure locks it for
//!   `waitIncrement × (failures / failureFactor)`, at most `maxFailureWait` (or until the
//!   provider restarts with `permanentLockout`);
//! - while locked, no password is checked, not even the right one; a successful login clears
//!   the count.
//!
//! Names are counted whether or not such a user exists, so a lockout tells nothing about which
//! usernames are real. The table is bounded ([`MAX_TRACKED`]): when full, entries that neither
//! lock nor count any more go first, then the oldest.

use std::collections::HashMap;

use parking_lot::Mutex;

/// The most usernames tracked at once.
pub const MAX_TRACKED: usize = 10_000;

/// The realm's brute-force settings (Keycloak's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enabled: bool,
    pub failure_factor: u32,
    pub wait_increment_secs: i64,
    pub max_failure_wait_secs: i64,
    pub max_delta_time_secs: i64,
    pub quick_login_check_ms: i64,
    pub minimum_quick_login_wait_secs: i64,
    pub permanent_lockout: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enabled: false,
            failure_factor: 30,
            wait_increment_secs: 60,
            max_failure_wait_secs: 900,
            max_delta_time_secs: 43_200,
            quick_login_check_ms: 1_000,
            minimum_quick_login_wait_secs: 60,
            permanent_lockout: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure_ms: i64,
    locked_until_ms: i64,
}

/// Failed logins per username and the lockouts they caused.
#[derive(Debug)]
pub struct Detector {
    policy: Policy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Detector {
    pub fn new(policy: Policy) -> Detector {
        Detector {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Milliseconds left of `user`'s lockout at `now_ms`, or `None` when logins are allowed.
    pub fn locked(&self, user: &str, now_ms: i64) -> Option<i64> {
        if !self.policy.enabled {
            return None;
        }
        let entries = self.entries.lock();
        let e = entries.get(&user.to_lowercase())?;
        (e.locked_until_ms > now_ms).then(|| e.locked_until_ms - now_ms)
    }

    /// Counts a failed login of `user` at `now_ms`.
    pub fn failure(&self, user: &str, now_ms: i64) {
        if !self.policy.enabled {
            return;
        }
        let p = self.policy;
        let mut entries = self.entries.lock();
        let key = user.to_lowercase();
        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            evict(&mut entries, &p, now_ms);
        }
        let e = entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure_ms: 0,
            locked_until_ms: 0,
        });
        let delta = now_ms - e.last_failure_ms;
        if e.last_failure_ms > 0 && delta < p.max_delta_time_secs * 1000 {
            e.failures += 1;
        } else {
            e.failures = 1;
        }
        let mut wait_secs = 0;
        if e.last_failure_ms > 0 && delta < p.quick_login_check_ms {
            wait_secs = p.minimum_quick_login_wait_secs;
        }
        if p.failure_factor > 0 && e.failures.is_multiple_of(p.failure_factor) {
            let increments = i64::from(e.failures / p.failure_factor);
            wait_secs =
                wait_secs.max((p.wait_increment_secs * increments).min(p.max_failure_wait_secs));
        }
        e.last_failure_ms = now_ms;
        if wait_secs > 0 {
            e.locked_until_ms =
                if p.permanent_lockout && p.failure_factor > 0 && e.failures >= p.failure_factor {
                    i64::MAX
                } else {
                    now_ms + wait_secs * 1000
                };
        }
    }

    /// A successful login of `user`: its count starts again.
    pub fn success(&self, user: &str) {
        if self.policy.enabled {
            self.entries.lock().remove(&user.to_lowercase());
        }
    }
}

/// Makes room: drops entries that no longer lock or count, else the oldest half.
fn evict(entries: &mut HashMap<String, Entry>, p: &Policy, now_ms: i64) {
    let horizon = now_ms - p.max_delta_time_secs * 1000;
    entries.retain(|_, e| e.locked_until_ms > now_ms || e.last_failure_ms > horizon);
    if entries.len() >= MAX_TRACKED {
        let mut ages: Vec<i64> = entries.values().map(|e| e.last_failure_ms).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        entries.retain(|_, e| e.last_failure_ms > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Policy {
        Policy {
            enabled: true,
            failure_factor: 3,
            wait_increment_secs: 60,
            max_failure_wait_secs: 150,
            ..Policy::default()
        }
    }

    #[test]
    fn off_by_default() {
        let d = Detector::new(Policy::default());
        for i in 0..100 {
            d.failure("alice", 1_000 + i);
        }
        assert_eq!(d.locked("alice", 2_000), None);
    }

    /// Every failure_factor-th failure locks for one more increment, up to the maximum.
    #[test]
    fn failures_lock_in_growing_steps() {
        let d = Detector::new(on());
        let mut t = 10_000;
        let mut fail = |d: &Detector| {
            t += 5_000; // slower than the quick-login check
            d.failure("Alice", t);
            t
        };
        fail(&d);
        let t2 = fail(&d);
        assert_eq!(d.locked("alice", t2), None);
        let t3 = fail(&d);
        assert_eq!(d.locked("alice", t3), Some(60_000));
        assert_eq!(d.locked("ALICE", t3 + 60_000), None);
        fail(&d);
        fail(&d);
        let t6 = fail(&d);
        assert_eq!(d.locked("alice", t6), Some(120_000));
        for _ in 0..3 {
            fail(&d);
        }
        // 9 failures: 3 increments = 180 s, capped at 150 s.
        assert_eq!(d.locked("alice", t), Some(150_000));
        assert_eq!(d.locked("bob", t), None);
    }

    /// Two failures within the quick-login check lock at once for the minimum wait.
    #[test]
    fn quick_failures_lock() {
        let d = Detector::new(on());
        d.failure("bob", 10_000);
        d.failure("bob", 10_400);
        assert_eq!(d.locked("bob", 10_400), Some(60_000));
    }

    #[test]
    fn success_clears_and_old_failures_expire() {
        let mut p = on();
        p.max_delta_time_secs = 10;
        let d = Detector::new(p);
        d.failure("carol", 10_000);
        d.failure("carol", 15_000);
        d.success("carol");
        d.failure("carol", 20_000);
        d.failure("carol", 40_000); // the first is older than 10 s: counting starts again
        d.failure("carol", 45_000);
        assert_eq!(d.locked("carol", 45_000), None);
        d.failure("carol", 50_000);
        assert_eq!(d.locked("carol", 50_000), Some(60_000));
    }

    #[test]
    fn permanent_lockout_lasts() {
        let mut p = on();
        p.permanent_lockout = true;
        let d = Detector::new(p);
        for i in 0..3 {
            d.failure("dave", 10_000 + i * 5_000);
        }
        assert!(d.locked("dave", i64::MAX - 1).is_some());
    }

    #[test]
    fn the_table_is_bounded() {
        let d = Detector::new(on());
        for i in 0..(MAX_TRACKED as i64 + 500) {
            d.failure(&format!("user-{i}"), 10_000 + i);
        }
        assert!(d.entries.lock().len() <= MAX_TRACKED);
    }
}
