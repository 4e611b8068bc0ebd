//! Loopback networking helpers: free ports and waiting for a server to answer.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use crate::{Error, Result};

/// How often readiness checks poll: short enough that a test does not wait noticeably longer than
/// the server needs, long enough not to busy-loop on two cores.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The kernel picks it (bind to port 0), so parallel tests get different ports. Another process can
/// still take it before the caller binds it; the servers in this crate retry with a new port when
/// that happens.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(Error::io("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("reading the address of a bound listener"))?
        .port();
    Ok(port)
}

/// Waits until `url` answers an HTTP GET with a 2xx status, polling until `timeout` has passed.
///
/// Connection errors and non-2xx answers (a service that is up but not ready yet answers 503 on
/// `/health/ready`) are retried; the last one is quoted in the timeout error.
pub async fn wait_for_http(url: &str, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::Timeout {
            what: format!("HTTP client for {url}"),
            after: Duration::ZERO,
            last: e.to_string(),
        })?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("HTTP {}", response.status()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{url} to answer 2xx"),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port from `free_port` can be bound right away.
    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    /// Waiting on a port where nothing listens ends with a timeout that says what was awaited.
    #[tokio::test]
    async fn wait_for_http_times_out_with_reason() {
        let port = free_port().unwrap();
        let url = format!("http://127.0.0.1:{port}/health");
        let err = wait_for_http(&url, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains(&url));
    }
}
