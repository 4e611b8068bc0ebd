//! The background task that evicts expired leases.
//!
//! Every `--eviction-interval` (default 1 s), and also right when the
//! earliest lease runs out, it asks the registry for one pass
//! ([`Registry::tick`]): evaluate the renewal rate for self-preservation,
//! then evict what has expired unless self-preservation holds evictions
//! back. Waking at the earliest expiry means a dead instance leaves the
//! registry as soon as its lease ends, not up to an interval later.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// Runs eviction passes until `stop` is cancelled.
pub async fn run(registry: Arc<Registry>, interval: Duration, stop: CancellationToken) {
    loop {
        let tick = registry.tick();
        if tick.spared > 0 {
            tracing::debug!(
                spared = tick.spared,
                "self-preservation: expired leases kept"
            );
        }
        let now = registry.clock().now_millis();
        let wait = match tick.next_expiry_ms {
            // A millisecond past the expiry, so the next pass sees it expired.
            Some(at) => Duration::from_millis(at.saturating_sub(now) + 1).min(interval),
            None => interval,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
