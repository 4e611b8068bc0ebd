//! Helpers shared by the Docker-backed tests: a connected runtime, unique names, cleanup of
//! everything a test stack created, and bounded polling.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;
use platform::paths::Workspace;
use platform::runtime::Runtime;
pub use testkit::eventually;

/// Connects to the engine the tests run against.
pub async fn runtime() -> Runtime {
    match Runtime::connect().await {
        Ok(rt) => rt,
        Err(e) => panic!("these tests need Docker: {e}"),
    }
}

/// A stack name no other test (or test run) uses.
pub fn unique_stack(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The repository checkout.
pub fn workspace() -> Workspace {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Workspace::at(root.canonicalize().unwrap_or(root))
}

/// Removes every container, network and volume labelled with `stack`.
pub async fn cleanup(rt: &Runtime, stack: &str) {
    if let Ok(containers) = rt.list_containers(Some(stack), None).await {
        for c in containers {
            let _ = rt.remove_container(&c.name).await;
        }
    }
    if let Ok(nets) = rt.list_networks(Some(stack)).await {
        for n in nets {
            let _ = rt.remove_network(&n).await;
        }
    }
    if let Ok(vols) = rt.list_volumes(Some(stack)).await {
        for v in vols {
            let _ = rt.remove_volume(&v).await;
        }
    }
}

/// Runs `body`, then cleans up `stack` whether it passed or panicked.
pub async fn with_stack<F, Fut>(rt: &Runtime, stack: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let result = std::panic::AssertUnwindSafe(body()).catch_unwind().await;
    cleanup(rt, stack).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
