//! Configuration every service shares, from flags and environment.
//!
//! A service declares its own `clap::Parser` struct that flattens
//! [`CommonArgs`] and adds its domain options, then calls [`parse`] with its
//! [`ServiceSpec`]: that sets the service's name, version and default port so
//! `--help` shows the real default, and validates everything before the
//! service starts (a bad value exits with status 2 and a clear message).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, ValueEnum};
use secrecy::SecretString;
use url::Url;

/// What a service is: fixed at compile time in its `main.rs`.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Lower-case service name, also its registry application name (upper-cased there).
    pub name: &'static str,
    /// The port the platform expects it on (8761, 8080, 8081, ...).
    pub default_port: u16,
    /// `CARGO_PKG_VERSION` of the binary.
    pub version: &'static str,
    /// Whether instances register themselves with the registry (the registry does not).
    pub registers: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for containers and log pipelines.
    Json,
}

/// Options every service accepts. Flattened into each service's config.
///
/// Its `Debug` shows --registry-url with the password of its userinfo redacted (`Url`'s own
/// `Debug` prints it); the other secrets are `SecretString`s, which redact themselves.
#[derive(Clone, Args)]
pub struct CommonArgs {
    /// Port to listen on (0 picks a free one) [default: the service's own port]
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// Address to bind
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Base URL of the service registry (discovery-server); a registry that protects its writes takes
    /// the credentials in its userinfo, as Spring Cloud's defaultZone: http://user:password@host:8761
    // Read through SecretParser: an error never quotes the value, which may hold a password.
    #[arg(
        long,
        env = "REGISTRY_URL",
        default_value = "http://localhost:8761",
        value_parser = SecretParser::new("--registry-url (REGISTRY_URL)", parse_secret_http_url),
        hide_env_values = true
    )]
    pub registry_url: Url,

    /// User name of the registry's writes (HTTP Basic). A service sends it (instead of --registry-url's
    /// userinfo); the discovery-server, given it and --registry-password, requires them on every
    /// registration, renewal, cancellation and status change [default: none; writes are open, as Eureka's]
    #[arg(long, env = "REGISTRY_USERNAME", value_parser = parse_non_empty, requires = "registry_password")]
    pub registry_username: Option<String>,

    /// Password of the registry's writes, with --registry-username
    #[arg(
        long,
        env = "REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "registry_username"
    )]
    pub registry_password: Option<SecretString>,

    /// Do not register with the registry (run alone; peers cannot find this instance)
    #[arg(long, env = "REGISTRY_DISABLED", default_value_t = false)]
    pub no_register: bool,

    /// Unique id of this instance in the registry [default: <advertise-host>:<service>:<port>]
    #[arg(long, env = "INSTANCE_ID", value_parser = parse_non_empty)]
    pub instance_id: Option<String>,

    /// Host or IP other services use to reach this instance [default: the IP of the interface that routes to the registry]
    #[arg(long, env = "ADVERTISE_HOST", value_parser = parse_non_empty)]
    pub advertise_host: Option<String>,

    /// How often this instance renews its registry lease
    #[arg(long, env = "LEASE_RENEWAL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub lease_renewal_interval: Duration,

    /// How long the registry keeps this instance without a renewal
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long in-flight requests may drain at shutdown before they are cut
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log output format
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log lines below WARN are written to stdout in batches, at most this long after the first of them (each write wakes Docker's log path: a line alone costs its daemon ~10x the CPU of a line in a batch); WARN and ERROR lines are written at once, after those before them; 0 writes every line at once; at most 10s
    #[arg(long, env = "LOG_FLUSH_INTERVAL", default_value = "50ms", value_parser = parse_log_flush_interval)]
    pub log_flush_interval: Duration,

    /// Issuer URL of the identity provider, e.g. http://identity-provider:8180/realms/platform. When set,
    /// /admin endpoints require a JWT from it carrying the `admin` realm role (keys from its OIDC discovery
    /// document)
    #[arg(long, env = "ISSUER_URL", value_parser = parse_http_url)]
    pub issuer_url: Option<Url>,

    /// Audience a JWT must name in `aud` (or as `azp`); repeat or separate with commas [default: not checked]
    #[arg(
        long,
        env = "JWT_AUDIENCE",
        value_delimiter = ',',
        requires = "issuer_url"
    )]
    pub jwt_audience: Vec<String>,

    /// Fallback only when --issuer-url is not set (tests, one service run by hand): the bearer token /admin
    /// endpoints accept [default: none; without an issuer /admin is then closed]
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,

    /// Largest request body accepted, in bytes
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Require the admin credential (as /admin does) for /metrics and /info too: for a service
    /// whose port is published beyond the stack network (the api-gateway turns it on)
    #[arg(long, env = "PRIVATE_OBSERVABILITY", default_value_t = false)]
    pub private_observability: bool,

    /// Check the readiness of the instance on --port of this host, exit 0 when ready, 1 otherwise (container health probe)
    #[arg(long)]
    pub probe: bool,

    /// Wait until HOST:PORT accepts TCP connections (repeatable), then exit 0 without starting
    /// the service (a Kubernetes init container; needs none of the other options)
    #[arg(long, value_name = "HOST:PORT")]
    pub wait_for: Vec<String>,

    /// Distributed tracing: Zipkin export and sampling.
    #[command(flatten)]
    pub tracing: crate::telemetry::TraceArgs,
}

impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be left out of (or leak through) this list unseen.
        let CommonArgs {
            port,
            bind,
            registry_url,
            registry_username,
            registry_password,
            no_register,
            instance_id,
            advertise_host,
            lease_renewal_interval,
            lease_duration,
            shutdown_timeout,
            log_format,
            log_flush_interval,
            issuer_url,
            jwt_audience,
            admin_token,
            max_body_bytes,
            private_observability,
            probe,
            wait_for,
            tracing,
        } = self;
        f.debug_struct("CommonArgs")
            .field("port", port)
            .field("bind", bind)
            .field("registry_url", &redacted_url(registry_url))
            .field("registry_username", registry_username)
            .field("registry_password", registry_password)
            .field("no_register", no_register)
            .field("instance_id", instance_id)
            .field("advertise_host", advertise_host)
            .field("lease_renewal_interval", lease_renewal_interval)
            .field("lease_duration", lease_duration)
            .field("shutdown_timeout", shutdown_timeout)
            .field("log_format", log_format)
            .field("log_flush_interval", log_flush_interval)
            .field("issuer_url", &issuer_url.as_ref().map(redacted_url))
            .field("jwt_audience", jwt_audience)
            .field("admin_token", admin_token)
            .field("max_body_bytes", max_body_bytes)
            .field("private_observability", private_observability)
            .field("probe", probe)
            .field("wait_for", wait_for)
            .field("tracing", tracing)
            .finish()
    }
}

/// `url` as text with the password of its userinfo (if any) replaced by `***`, for Debug and logs.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() && shown.set_password(Some("***")).is_err() {
        return "<a URL with a password>".to_string();
    }
    shown.to_string()
}

impl CommonArgs {
    /// The registry credentials given with --registry-username/--registry-password.
    pub fn registry_credentials(&self) -> Option<registry_client::Credentials> {
        match (&self.registry_username, &self.registry_password) {
            (Some(user), Some(password)) => Some(registry_client::Credentials::new(
                user.clone(),
                password.clone(),
            )),
            _ => None,
        }
    }

    /// The port to listen on, after [`parse`] filled the default.
    pub fn port_or(&self, spec: &ServiceSpec) -> u16 {
        self.port.unwrap_or(spec.default_port)
    }

    /// Checks relations between options that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_renewal_interval.is_zero() {
            return Err("--lease-renewal-interval must be greater than zero".into());
        }
        if self.lease_duration <= self.lease_renewal_interval {
            return Err(format!(
                "--lease-duration ({}) must be longer than --lease-renewal-interval ({})",
                humantime::format_duration(self.lease_duration),
                humantime::format_duration(self.lease_renewal_interval)
            ));
        }
        if self.max_body_bytes == 0 {
            return Err("--max-body-bytes must be greater than zero".into());
        }
        Ok(())
    }

    /// Arguments for a service started inside a test: port 0, loopback, no
    /// registration unless a registry URL is given.
    pub fn for_tests(registry_url: Option<&str>) -> CommonArgs {
        let registry = registry_url
            .and_then(|u| Url::parse(u).ok())
            .unwrap_or_else(|| Url::parse("http://127.0.0.1:1").expect("static URL parses"));
        CommonArgs {
            port: Some(0),
            bind: IpAddr::from([127, 0, 0, 1]),
            registry_url: registry,
            registry_username: None,
            registry_password: None,
            no_register: registry_url.is_none(),
            instance_id: None,
            advertise_host: Some("127.0.0.1".into()),
            lease_renewal_interval: Duration::from_secs(5),
            lease_duration: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(5),
            log_format: LogFormat::Pretty,
            log_flush_interval: crate::telemetry::DEFAULT_LOG_FLUSH_INTERVAL,
            issuer_url: None,
            jwt_audience: Vec::new(),
            admin_token: Some(SecretString::from("test-admin-token")),
            max_body_bytes: 1024 * 1024,
            private_observability: false,
            probe: false,
            wait_for: Vec::new(),
            tracing: crate::telemetry::TraceArgs::default(),
        }
    }
}

/// A service's configuration, as the kit sees it: the common part, and the
/// two things about the rest that [`parse`] and `kit::service::main` need.
pub trait HasCommon {
    fn common(&self) -> &CommonArgs;

    /// Checks relations between the service's own options that clap cannot
    /// express; [`parse`] calls it after the common options' check, so a
    /// bad combination exits with status 2 before anything starts.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// What the service binary's telemetry is set up with: by default the
    /// chosen log format and trace export as configured (`ZIPKIN_ENDPOINT`).
    fn telemetry(&self) -> crate::telemetry::Settings {
        self.common().into()
    }
}

/// Parses a service's configuration from the process's arguments and
/// environment, with the service's name, version and port default; exits
/// with status 2 and clap's message on bad input.
///
/// `--wait-for HOST:PORT` is handled first, before anything else is parsed: the process waits
/// for its targets and exits ([`crate::wait::exit_if_wait`]). Every service binary calls this,
/// directly or through `kit::service::main`, so every one can serve as the Kubernetes init
/// container `platform render kubernetes` renders, which has none of the service's other options.
pub fn parse<C>(spec: &ServiceSpec) -> C
where
    C: CommandFactory + FromArgMatches + HasCommon,
{
    crate::wait::exit_if_wait(spec);
    match try_parse_from::<C, _, _>(spec, std::env::args_os()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    }
}

/// [`parse`] over explicit arguments, for tests.
pub fn try_parse_from<C, I, T>(spec: &ServiceSpec, args: I) -> Result<C, clap::Error>
where
    C: CommandFactory + FromArgMatches + HasCommon,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = C::command()
        .name(spec.name)
        .bin_name(spec.name)
        .version(spec.version)
        .mut_arg("port", |a| a.default_value(spec.default_port.to_string()));
    let matches = cmd.try_get_matches_from_mut(args)?;
    let config = C::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    if let Err(msg) = config.common().validate().and_then(|()| config.validate()) {
        return Err(cmd.error(clap::error::ErrorKind::ValueValidation, msg));
    }
    Ok(config)
}

/// A clap value parser for a value that must never be echoed, such as a URL with a password:
/// clap's own error quotes the raw value; this one says only which option is wrong and why.
///
/// ```
/// #[derive(clap::Parser)]
/// struct Config {
///     #[arg(long, value_parser = kit::config::SecretParser::new("--db-url (DB_URL)", parse))]
///     db_url: String,
/// }
/// fn parse(s: &str) -> Result<String, String> {
///     s.starts_with("mysql://").then(|| s.to_string()).ok_or_else(|| "expected mysql://".into())
/// }
/// ```
#[derive(Clone, Copy)]
pub struct SecretParser<T> {
    /// The option as its error names it: `--database-url (DATABASE_URL)`.
    what: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> SecretParser<T> {
    pub const fn new(what: &'static str, parse: fn(&str) -> Result<T, String>) -> Self {
        SecretParser { what, parse }
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let invalid = |msg: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid {}: {msg}\n", self.what),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| invalid("not valid UTF-8"))?;
        (self.parse)(text).map_err(|msg| invalid(&msg))
    }
}

/// Parses `5s`, `250ms`, `1m 30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 5s, 250ms or 1m: {e}"))
}

/// Parses a duration from `min` to `max` (both included), for options whose useful range is
/// bounded; the error names the range.
pub fn parse_duration_within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min || d > max {
        let text = |d: Duration| {
            if d.is_zero() {
                "0".to_string()
            } else {
                format!("{d:?}")
            }
        };
        return Err(format!(
            "`{s}` must be between {} and {}",
            text(min),
            text(max)
        ));
    }
    Ok(d)
}

/// Parses `--log-flush-interval`: a duration from 0 (every line at once) to 10 s; `info` lines
/// later than that look lost to whoever follows the logs.
pub fn parse_log_flush_interval(s: &str) -> Result<Duration, String> {
    parse_duration_within(s, Duration::ZERO, Duration::from_secs(10))
}

/// Parses an absolute http(s) URL.
pub fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!(
            "`{s}` must be an http:// or https:// URL with a host"
        )),
    }
}

/// [`parse_http_url`] for a URL that may carry a password in its userinfo: the error says what
/// is wrong, never the value (read it through [`SecretParser`], whose error does not quote it
/// either).
pub fn parse_secret_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

fn parse_non_empty(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(t.to_string())
    }
}

/// The IP address other hosts can reach us on: the local address of the
/// interface that routes toward `target` (no packet is sent; a UDP
/// `connect` only picks the route). Falls back to loopback.
pub fn route_ip_towards(target: &Url) -> IpAddr {
    let fallback = IpAddr::from([127, 0, 0, 1]);
    let Some(host) = target.host_str() else {
        return fallback;
    };
    let port = target.port_or_known_default().unwrap_or(80);
    let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)) else {
        return fallback;
    };
    let Some(addr) = addrs.next() else {
        return fallback;
    };
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    UdpSocket::bind(bind)
        .and_then(|s| s.connect(addr).and_then(|_| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct TestConfig {
        #[command(flatten)]
        common: CommonArgs,
        /// A domain option
        #[arg(long, default_value = "x")]
        extra: String,
    }
    impl HasCommon for TestConfig {
        fn common(&self) -> &CommonArgs {
            &self.common
        }
        fn validate(&self) -> Result<(), String> {
            if self.extra == "bad" {
                return Err("--extra must not be `bad`".into());
            }
            Ok(())
        }
    }
    const SPEC: ServiceSpec = ServiceSpec {
        name: "test-service",
        default_port: 8099,
        version: "1.2.3",
        registers: true,
    };

    /// The service's port becomes the default and appears in --help; other defaults apply.
    #[test]
    fn port_default_comes_from_the_spec() {
        let c: TestConfig = try_parse_from(&SPEC, ["x"]).unwrap();
        assert_eq!(c.common.port, Some(8099));
        assert_eq!(c.common.registry_url.as_str(), "http://localhost:8761/");
        assert_eq!(c.common.lease_renewal_interval, Duration::from_secs(5));
        let help = TestConfig::command()
            .mut_arg("port", |a| a.default_value("8099"))
            .render_help()
            .to_string();
        assert!(help.contains("8099"), "{help}");
    }

    /// Bad values, and combinations the service's own check refuses, are
    /// usage errors naming the problem, never panics.
    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            vec!["x", "--port", "70000"],
            vec!["x", "--registry-url", "ftp://x"],
            vec!["x", "--registry-url", "not a url"],
            vec![
                "x",
                "--lease-duration",
                "2s",
                "--lease-renewal-interval",
                "5s",
            ],
            vec!["x", "--shutdown-timeout", "soon"],
            vec!["x", "--instance-id", " "],
            vec!["x", "--log-format", "xml"],
            vec!["x", "--log-flush-interval", "11s"],
            vec!["x", "--log-flush-interval", "-1ms"],
            vec!["x", "--log-flush-interval", "often"],
            vec!["x", "--extra", "bad"],
            vec!["x", "--registry-username", "eureka"],
            vec!["x", "--registry-password", "secret"],
            vec!["x", "--registry-username", " ", "--registry-password", "p"],
        ] {
            let err = try_parse_from::<TestConfig, _, _>(&SPEC, args.clone()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    /// The log flush interval: 50 ms by default, 0 and up to 10 s accepted.
    #[test]
    fn log_flush_interval() {
        let parse = |args: Vec<&str>| try_parse_from::<TestConfig, _, _>(&SPEC, args);
        let c = parse(vec!["x"]).unwrap();
        assert_eq!(c.common.log_flush_interval, Duration::from_millis(50));
        for (arg, want) in [
            ("0", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("10s", Duration::from_secs(10)),
        ] {
            let c = parse(vec!["x", "--log-flush-interval", arg]).unwrap();
            assert_eq!(c.common.log_flush_interval, want, "{arg}");
        }
    }

    /// A bad --registry-url (or REGISTRY_URL) is a usage error naming the option, and never
    /// prints the value: it may carry the registry's password.
    #[test]
    fn a_bad_registry_url_does_not_print_its_password() {
        for bad in [
            "ftp://eureka:pw-in-url@r:8761",
            "http://eureka:pw-in-url@",
            "http//eureka:pw-in-url@r:8761",
            "http://eureka:pw-in-url@r:99999",
        ] {
            let err = try_parse_from::<TestConfig, _, _>(&SPEC, ["x", "--registry-url", bad])
                .unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
            let shown = format!("{err}\n{}\n{err:?}", err.render());
            assert!(!shown.contains("pw-in-url"), "{bad}: {shown}");
            assert!(
                shown.contains("--registry-url (REGISTRY_URL)"),
                "{bad}: {shown}"
            );
        }
    }

    /// Registry credentials come as a pair (either alone is a usage error), and Debug shows
    /// neither the password flag nor the password in --registry-url's userinfo.
    #[test]
    fn registry_credentials() {
        let c: TestConfig = try_parse_from(
            &SPEC,
            [
                "x",
                "--registry-url",
                "http://u:url-secret@r:8761",
                "--registry-username",
                "eureka",
                "--registry-password",
                "flag-secret",
            ],
        )
        .unwrap();
        let creds = c.common.registry_credentials().unwrap();
        assert_eq!(creds.username(), "eureka");
        let shown = format!("{c:?}");
        assert!(!shown.contains("flag-secret"), "{shown}");
        assert!(!shown.contains("url-secret"), "{shown}");
        assert!(shown.contains("http://u:***@r:8761/"), "{shown}");
        let c: TestConfig = try_parse_from(&SPEC, ["x"]).unwrap();
        assert!(c.common.registry_credentials().is_none());
    }

    /// The route toward a loopback registry is the loopback address.
    #[test]
    fn route_ip_to_loopback() {
        let ip = route_ip_towards(&Url::parse("http://127.0.0.1:8761").unwrap());
        assert!(ip.is_loopback());
    }
}
