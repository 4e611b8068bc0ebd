//! Shutdown signals.
//!
//! A service stops when the process receives SIGTERM or SIGINT, or when its
//! [`CancellationToken`] is cancelled (tests do that). The order of what
//! happens next is in `service.rs`: leave the registry, stop accepting,
//! drain, stop background tasks.

use tokio_util::sync::CancellationToken;

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn os_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Cancels `token` when an OS signal arrives (or returns when the token is
/// cancelled by someone else first).
pub async fn cancel_on_signal(token: CancellationToken) {
    tokio::select! {
        _ = os_signal() => token.cancel(),
        _ = token.cancelled() => {}
    }
}
