//! `--wait-for HOST:PORT`: wait until other services accept connections, then exit 0. Our
//! images are FROM scratch (no shell, no `nc`), so a Kubernetes init container that must wait
//! for a dependency runs the service binary itself in this mode (`platform render kubernetes`
//! renders one per dependency).
//!
//! It is handled before the configuration is parsed, so the variables the service needs to run
//! (database URL, issuer, ...) are not needed to wait. It tries forever, as an init container
//! should: Kubernetes decides how long a pod may take to start.

use std::ffi::OsString;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::ServiceSpec;

/// The `HOST:PORT` values of every `--wait-for` in `args` (program name first, as
/// `std::env::args_os`), `None` when there is none, or why one is malformed.
pub fn targets(args: impl IntoIterator<Item = OsString>) -> Option<Result<Vec<String>, String>> {
    let mut out = Vec::new();
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let value = if arg == "--wait-for" {
            match args.next() {
                Some(v) => v.to_string_lossy().into_owned(),
                None => return Some(Err("--wait-for needs HOST:PORT".to_string())),
            }
        } else if let Some(v) = arg.strip_prefix("--wait-for=") {
            v.to_string()
        } else {
            continue;
        };
        let valid = value.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Some(Err(format!("--wait-for `{value}` is not HOST:PORT")));
        }
        out.push(value);
    }
    (!out.is_empty()).then_some(Ok(out))
}

/// Whether `target` (`HOST:PORT`) accepts a TCP connection within `timeout`.
pub fn reachable(target: &str, timeout: Duration) -> Result<(), String> {
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?;
    let mut last = format!("{target} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Waits until every target is reachable, one after the other, telling `log` why it waits.
pub fn wait_all(targets: &[String], pause: Duration, mut log: impl FnMut(&str)) {
    for target in targets {
        while let Err(why) = reachable(target, Duration::from_secs(2)) {
            log(&format!("waiting for {target}: {why}"));
            std::thread::sleep(pause);
        }
        log(&format!("{target} is reachable"));
    }
}

/// When the command line has `--wait-for`, waits and exits the process (2 on a malformed value).
pub fn exit_if_wait(spec: &ServiceSpec) {
    exit_if_wait_as(spec.name)
}

/// [`exit_if_wait`] for a binary without a [`ServiceSpec`] (the broker stand-in), its log lines
/// prefixed with `name`.
pub fn exit_if_wait_as(name: &str) {
    match targets(std::env::args_os()) {
        None => {}
        Some(Ok(targets)) => {
            wait_all(&targets, Duration::from_secs(2), |line| {
                eprintln!("{name}: {line}");
            });
            std::process::exit(0)
        }
        Some(Err(e)) => {
            eprintln!("{name}: {e}");
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("svc")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// Both spellings are read, repeated; other arguments are ignored; bad values are errors.
    #[test]
    fn parses_targets() {
        assert_eq!(targets(args(&["--port", "1"])), None);
        assert_eq!(
            targets(args(&["--wait-for", "db:3306", "--wait-for=kafka:9092"])),
            Some(Ok(vec!["db:3306".to_string(), "kafka:9092".to_string()]))
        );
        for bad in [
            &["--wait-for"][..],
            &["--wait-for", "db"],
            &["--wait-for", ":1"],
            &["--wait-for=db:0"],
            &["--wait-for=db:x"],
        ] {
            assert!(matches!(targets(args(bad)), Some(Err(_))), "{bad:?}");
        }
    }

    /// The wait ends once a port that was closed starts accepting connections.
    #[test]
    fn waits_until_the_port_accepts() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let target = format!("127.0.0.1:{port}");
        assert!(reachable(&target, Duration::from_millis(200)).is_err());
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let _ = listener.accept();
        });
        let mut lines = Vec::new();
        wait_all(
            std::slice::from_ref(&target),
            Duration::from_millis(50),
            |l| lines.push(l.to_string()),
        );
        assert!(lines.first().unwrap().starts_with("waiting for"));
        assert_eq!(lines.last().unwrap(), &format!("{target} is reachable"));
        opener.join().unwrap();
    }
}
