//! Releasing reservations of orders that were not stored (compensation).
//!
//! When stock may have been reserved for an order that then failed (the
//! reservation call timed out or got a 5xx, or the order's transaction
//! failed), the order number is queued here and its reservation released
//! at inventory, retried with back-off for a bounded time. Before each
//! release the order table is checked: if the order does exist (its commit
//! succeeded although the client saw an error) the reservation is its own
//! and is kept. Inventory records a release of an unknown order number, so
//! a reservation that arrives after its own release takes no stock.
//!
//! Limitation, said plainly: the queue lives in memory. A crash of this
//! instance while a release is pending leaves that reservation in place
//! (stock held for an order that does not exist) until an operator
//! releases it; inventory's `reservations` table lists them.

use std::time::Duration;

use kit::backoff::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::inventory::InventoryClient;
use crate::store::Store;

/// Attempts per release before giving up (with back-off, about a minute).
const ATTEMPTS: u32 = 12;

/// Runs until `stop`, then finishes the pending releases (bounded by the
/// service's shutdown timeout).
pub async fn run(
    mut queue: mpsc::Receiver<String>,
    store: Store,
    inventory: InventoryClient,
    stop: CancellationToken,
) {
    let tasks = TaskTracker::new();
    loop {
        tokio::select! {
            item = queue.recv() => match item {
                Some(order_number) => {
                    tasks.spawn(release(order_number, store.clone(), inventory.clone()));
                }
                None => break,
            },
            _ = stop.cancelled() => {
                queue.close();
                while let Ok(order_number) = queue.try_recv() {
                    tasks.spawn(release(order_number, store.clone(), inventory.clone()));
                }
                break;
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

async fn release(order_number: String, store: Store, inventory: InventoryClient) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(8));
    for attempt in 1..=ATTEMPTS {
        let exists =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM orders WHERE order_number = ?")
                .bind(&order_number)
                .fetch_one(store.pool())
                .await;
        match exists {
            Ok(n) if n > 0 => {
                tracing::info!(%order_number, "order exists after all; its reservation is kept");
                return;
            }
            Ok(_) => match inventory.release(&order_number).await {
                Ok(()) => {
                    tracing::info!(%order_number, attempt, "reservation released (compensation)");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%order_number, attempt, error = %e, "releasing the reservation failed; retrying")
                }
            },
            Err(e) => {
                tracing::warn!(%order_number, attempt, error = %e, "cannot check the order before releasing; retrying")
            }
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
    tracing::error!(%order_number, "gave up releasing the reservation; release it by hand (DELETE /api/inventory/reservations/{order_number})");
}
