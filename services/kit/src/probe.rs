//! `--probe`: the container health check, without a shell or curl.
//!
//! Our images are built FROM scratch, so Docker's HEALTHCHECK runs the
//! service binary itself: `<bin> --probe` asks `/health/ready` of the
//! instance on this host's `--port` and exits 0 when it answers 200, 1
//! otherwise. Plain HTTP/1.0 over std's TcpStream: no runtime, no client
//! library, started and finished in milliseconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::{CommonArgs, ServiceSpec};

/// Outcome of one probe.
pub fn probe(port: u16, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    stream
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(format!("/health/ready answered {status:?}"))
    }
}

/// When `--probe` was given, probes and exits the process.
pub fn exit_if_probe(spec: &ServiceSpec, common: &CommonArgs) {
    if !common.probe {
        return;
    }
    match probe(common.port_or(spec), Duration::from_secs(3)) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{}: not ready: {e}", spec.name);
            std::process::exit(1)
        }
    }
}
