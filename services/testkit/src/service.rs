//! Kit services inside the test's own process (feature `kit`), and the real registry among them
//! (feature `registry`).
//!
//! Every service's integration tests start the real service the way its `main` does, on a
//! loopback port 0 (`kit::CommonArgs::for_tests`), run it in the background, talk to it over
//! HTTP and stop it through its shutdown token, so it leaves the registry and drains exactly as
//! on SIGTERM. [`InProcess`] is that handle, written once; [`registry`] starts the real
//! discovery-server that way, for tests where services find each other through it.

use std::future::Future;
use std::time::Duration;

use kit::config::{CommonArgs, ServiceSpec};
use kit::service::{Service, ServiceError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long [`InProcess::stop`] waits for the service to return. Its own shutdown is bounded by
/// `--shutdown-timeout` (5 s in tests) for draining and again for background tasks.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// A kit service running in this process; dropping the handle cancels it without waiting.
#[derive(Debug)]
pub struct InProcess<E> {
    /// `http://127.0.0.1:<port>`.
    base: String,
    port: u16,
    /// The service's shutdown token: cancelling it is SIGTERM for this service.
    stop: CancellationToken,
    /// The service's `run`, awaited by [`InProcess::stop`]; `None` once awaited.
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Send + 'static> InProcess<E> {
    /// Runs `run(service)` in the background for a service the test has bound already (to read
    /// something off it before it serves).
    pub fn spawn<F, Fut>(service: Service, run: F) -> InProcess<E>
    where
        F: FnOnce(Service) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let port = service.port();
        let stop = service.shutdown_token();
        InProcess {
            base: format!("http://127.0.0.1:{port}"),
            port,
            stop,
            task: Some(tokio::spawn(run(service))),
        }
    }

    /// Binds `spec` with `common` (port 0 from `CommonArgs::for_tests`) and runs `run(service)`
    /// in the background.
    pub async fn start<F, Fut>(
        spec: &ServiceSpec,
        common: CommonArgs,
        run: F,
    ) -> Result<InProcess<E>, ServiceError>
    where
        F: FnOnce(Service) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let service = Service::bind(spec, common).await?;
        Ok(InProcess::spawn(service, run))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `base` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The service's shutdown token (cancel it to stop the service without waiting).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until `/health/ready` answers 200 (database reachable, registered, ...).
    pub async fn wait_ready(&self, within: Duration) -> crate::Result<()> {
        crate::wait_for_http(&self.url("/health/ready"), within).await
    }

    /// Stops the service as SIGTERM would and returns what its `run` returned. Panics when `run`
    /// panicked or did not return within 30 s: either is a bug the test should show.
    pub async fn stop(mut self) -> Result<(), E> {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(STOP_BOUND, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Ok(Err(join)) => panic!("{} stopped abnormally: {join}", self.base),
            Err(_) => panic!("{} did not stop within {STOP_BOUND:?}", self.base),
        }
    }
}

impl<E> Drop for InProcess<E> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The real discovery-server in this process on a free port, on the system clock, with its
/// test defaults (`discovery_server::Config::for_tests`). Services started with
/// `CommonArgs::for_tests(Some(registry.base()))` register with it.
#[cfg(feature = "registry")]
pub async fn registry() -> Result<InProcess<anyhow::Error>, ServiceError> {
    let config = discovery_server::Config::for_tests();
    InProcess::start(&discovery_server::SPEC, config.common.clone(), |service| {
        discovery_server::run(config, service)
    })
    .await
}
