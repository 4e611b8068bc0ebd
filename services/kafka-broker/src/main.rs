//! kafka-broker binary: flags and environment ([`kafka_broker::Config`]), logging, runtime, then
//! [`kafka_broker::run`] until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;

/// Single-node Kafka-wire-protocol broker (an offline stand-in for Apache Kafka).
#[derive(Debug, Parser)]
#[command(name = "kafka-broker", version, about)]
struct Cli {
    #[command(flatten)]
    config: kafka_broker::Config,
    /// Log filter (tracing-subscriber's EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Log lines as JSON instead of text.
    #[arg(long, env = "KAFKA_BROKER_LOG_JSON", default_value_t = false)]
    log_json: bool,
    /// Wait until HOST:PORT accepts connections, then exit 0 (repeatable; an init container's
    /// mode, as in every binary `platform` images). Handled before the other flags are read.
    #[arg(long, value_name = "HOST:PORT")]
    wait_for: Vec<String>,
    /// Health probe (the image's HEALTHCHECK, as for every binary `platform` images): connect to
    /// the listen address (loopback for a wildcard) within 2 s, exit 0 when it accepts, 1 when not.
    #[arg(long)]
    probe: bool,
}

/// `--probe`: whether a broker accepts connections on `listen`.
fn probe(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .with_context(|| format!("probe: nothing accepts connections on {addr}"))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    kit::wait::exit_if_wait_as("kafka-broker");
    let cli = Cli::parse();
    if cli.probe {
        return probe(cli.config.listen);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .with_context(|| format!("--log `{}`", cli.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = kafka_broker::Shutdown::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            signal.cancel();
        });
        kafka_broker::run(cli.config, shutdown, None).await
    })
}
