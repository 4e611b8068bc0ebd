//! Routes as the gateway runs them: predicates that select a request,
//! filters that change it on the way in and its answer on the way out, and
//! the per-route policy (timeout, retries, access, balancing strategy).
//!
//! The vocabulary is Spring Cloud Gateway's, written in its shortcut form
//! (`Path=/api/product/**`, `StripPrefix=1`), so a route reads the same as
//! in the seed's `application.properties`. [`crate::routes_file`] turns the
//! TOML file into these types; [`RouteTable::find`] picks the first route
//! (by `order`, then file position) whose predicates all hold.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use kit::backoff::Backoff;
use kit::lb::Strategy;
use regex::Regex;
use serde::Serialize;

use crate::metrics::RouteMetrics;
use crate::pattern::{Captures, Pattern};

/// Who may use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed (and none checked).
    Public,
    /// A valid token carrying every one of these realm roles (none: any
    /// valid token).
    Authenticated { roles: Vec<String> },
}

/// When and how a request is tried again on another instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Further attempts after the first (0: never retry).
    pub retries: u32,
    /// Upstream statuses that count as retryable failures.
    pub statuses: Vec<u16>,
    /// Methods that may be retried; only idempotent ones are accepted.
    #[serde(serialize_with = "methods_as_strings")]
    pub methods: Vec<Method>,
    /// Ceiling of the wait before the first retry; grows by `factor` up to
    /// `max_backoff`, each wait drawn below it (full jitter, `kit::backoff`).
    #[serde(rename = "first_backoff_ms", serialize_with = "millis")]
    pub first_backoff: Duration,
    #[serde(rename = "max_backoff_ms", serialize_with = "millis")]
    pub max_backoff: Duration,
    pub factor: u32,
}

impl RetryPolicy {
    /// The back-off schedule of these retries.
    pub fn schedule(&self) -> Backoff {
        Backoff::new(self.first_backoff, self.max_backoff).with_factor(self.factor)
    }

    /// The wait before retry number `n` (1-based), drawn below its ceiling.
    pub fn backoff(&self, n: u32) -> Duration {
        self.schedule().wait(n.saturating_sub(1))
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.retries > 0 && self.methods.contains(method)
    }
}

fn methods_as_strings<S: serde::Serializer>(m: &[Method], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(Method::as_str))
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Whether a method is idempotent (RFC 9110 §9.2.2), i.e. safe to retry.
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A header value with `{var}` references to the route's captured variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Lit(String),
    Var(String),
}

impl Template {
    /// Parses `text`; `{name}` refers to a variable, everything else is literal.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{{` without `}}` in `{text}`"))?;
            let name = &after[..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{{{name}}}` is not a variable name"));
            }
            parts.push(TemplatePart::Var(name.to_string()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Lit(rest.to_string()));
        }
        let t = Template {
            source: text.to_string(),
            parts,
        };
        // A template without variables must already be a valid header value.
        if t.variables().next().is_none() {
            HeaderValue::from_str(text)
                .map_err(|_| format!("`{text}` is not a valid header value"))?;
        }
        Ok(t)
    }

    /// The variables it refers to.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Var(v) => Some(v.as_str()),
            TemplatePart::Lit(_) => None,
        })
    }

    /// The value with variables replaced (unknown ones by nothing); `None`
    /// when the result is not a valid header value.
    pub fn render(&self, caps: &Captures) -> Option<HeaderValue> {
        let mut out = String::with_capacity(self.source.len());
        for p in &self.parts {
            match p {
                TemplatePart::Lit(l) => out.push_str(l),
                TemplatePart::Var(v) => {
                    if let Some((_, val)) = caps.iter().find(|(k, _)| k == v) {
                        out.push_str(val);
                    }
                }
            }
        }
        HeaderValue::from_str(&out).ok()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A condition on the request; a route applies when all of its hold.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// `Path=/api/product/**,/products/{id}`: any pattern matches the path.
    Path(Vec<Pattern>),
    /// `Method=GET,POST`.
    Method(Vec<Method>),
    /// `Host=**.example.org`: any pattern matches the host (without the
    /// port, unless the pattern names one).
    Host(Vec<Pattern>),
    /// `Header=X-Tenant` (present) or `Header=X-Tenant, [a-z]+` (the whole
    /// value matches the regular expression).
    Header {
        name: HeaderName,
        regex: Option<Regex>,
    },
}

/// What a predicate sees of a request.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    /// The `Host` header (or the URI's authority for HTTP/2).
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl Predicate {
    /// Whether the request satisfies it; path and host variables are added to `caps`.
    fn test(&self, req: &RequestView<'_>, caps: &mut Captures) -> bool {
        match self {
            Predicate::Path(patterns) => patterns.iter().any(|p| match p.matches(req.path) {
                Some(c) => {
                    caps.extend(c);
                    true
                }
                None => false,
            }),
            Predicate::Method(methods) => methods.contains(req.method),
            Predicate::Host(patterns) => {
                let Some(host) = req.host else {
                    return false;
                };
                patterns.iter().any(|p| {
                    let candidate = if p.as_str().contains(':') {
                        host
                    } else {
                        strip_port(host)
                    };
                    match p.matches(candidate) {
                        Some(c) => {
                            caps.extend(c);
                            true
                        }
                        None => false,
                    }
                })
            }
            Predicate::Header { name, regex } => {
                let mut values = req.headers.get_all(name).iter();
                match regex {
                    None => values.next().is_some(),
                    Some(re) => values.any(|v| v.to_str().is_ok_and(|s| re.is_match(s))),
                }
            }
        }
    }
}

/// `host:port` → `host`, keeping IPv6 literals (`[::1]:80` → `[::1]`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Path(p) => write!(f, "Path={}", join(p)),
            Predicate::Method(m) => write!(f, "Method={}", join(m)),
            Predicate::Host(p) => write!(f, "Host={}", join(p)),
            Predicate::Header { name, regex: None } => write!(f, "Header={name}"),
            Predicate::Header {
                name,
                regex: Some(re),
            } => {
                // Show the expression as written, without our anchors.
                let s = re.as_str();
                let inner = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                write!(f, "Header={name}, {inner}")
            }
        }
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A change to the request on its way in, or to the answer on its way out.
#[derive(Debug, Clone)]
pub enum Filter {
    /// `StripPrefix=N`: drops the first N path segments.
    StripPrefix(usize),
    /// `RewritePath=regex, replacement`: `$1`, `$name` or `${name}` refer
    /// to the expression's groups.
    RewritePath { regex: Regex, replacement: String },
    /// `AddRequestHeader=Name, value` (value may use `{var}`).
    AddRequestHeader(HeaderName, Template),
    /// `RemoveRequestHeader=Name`.
    RemoveRequestHeader(HeaderName),
    /// `AddResponseHeader=Name, value` (value may use `{var}`).
    AddResponseHeader(HeaderName, Template),
    /// `RemoveResponseHeader=Name`.
    RemoveResponseHeader(HeaderName),
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::StripPrefix(n) => write!(f, "StripPrefix={n}"),
            Filter::RewritePath { regex, replacement } => {
                write!(f, "RewritePath={}, {replacement}", regex.as_str())
            }
            Filter::AddRequestHeader(n, v) => write!(f, "AddRequestHeader={n}, {v}"),
            Filter::RemoveRequestHeader(n) => write!(f, "RemoveRequestHeader={n}"),
            Filter::AddResponseHeader(n, v) => write!(f, "AddResponseHeader={n}, {v}"),
            Filter::RemoveResponseHeader(n) => write!(f, "RemoveResponseHeader={n}"),
        }
    }
}

/// Drops the first `n` segments of `path` (`/api/product/1`, 1 → `/product/1`).
pub fn strip_prefix(path: &str, n: usize) -> String {
    let mut rest = path;
    for _ in 0..n {
        let trimmed = rest.strip_prefix('/').unwrap_or(rest);
        rest = match trimmed.find('/') {
            Some(i) => &trimmed[i..],
            None => "",
        };
    }
    if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    }
}

/// One configured route.
#[derive(Debug)]
pub struct Route {
    pub id: String,
    /// Lower `order` is tried first; equal orders keep file order.
    pub order: i64,
    /// The registry name of the upstream service (`lb://<name>`).
    pub upstream: String,
    pub predicates: Vec<Predicate>,
    pub filters: Vec<Filter>,
    /// How long to wait for the upstream's answer head (not the whole body,
    /// which may be a long download).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub access: Access,
    pub strategy: Strategy,
    /// Largest request body forwarded, in bytes: a larger Content-Length
    /// is answered 413 before anything is read, and a body that grows past
    /// it while streaming is cut off and answered 413.
    pub max_body: u64,
    /// Handles to this route's metrics, created once so that the request
    /// path does not look labels up.
    pub metrics: RouteMetrics,
}

impl Route {
    /// Whether every predicate holds; the captured variables when so.
    pub fn matches(&self, req: &RequestView<'_>) -> Option<Captures> {
        let mut caps = Captures::new();
        self.predicates
            .iter()
            .all(|p| p.test(req, &mut caps))
            .then_some(caps)
    }

    /// The upstream path after the path filters.
    pub fn rewrite_path(&self, path: &str) -> String {
        let mut path = path.to_string();
        for f in &self.filters {
            match f {
                Filter::StripPrefix(n) => path = strip_prefix(&path, *n),
                Filter::RewritePath { regex, replacement } => {
                    let out = regex.replace(&path, replacement.as_str()).into_owned();
                    path = if out.starts_with('/') {
                        out
                    } else {
                        format!("/{out}")
                    };
                }
                _ => {}
            }
        }
        path
    }

    /// Applies the request header filters.
    pub fn filter_request_headers(&self, headers: &mut HeaderMap, caps: &Captures) {
        for f in &self.filters {
            match f {
                Filter::AddRequestHeader(name, value) => {
                    if let Some(v) = value.render(caps) {
                        headers.append(name.clone(), v);
                    }
                }
                Filter::RemoveRequestHeader(name) => {
                    headers.remove(name);
                }
                _ => {}
            }
        }
    }

    /// Applies the response header filters.
    pub fn filter_response_headers(&self, headers: &mut HeaderMap, caps: &Captures) {
        for f in &self.filters {
            match f {
                Filter::AddResponseHeader(name, value) => {
                    if let Some(v) = value.render(caps) {
                        headers.append(name.clone(), v);
                    }
                }
                Filter::RemoveResponseHeader(name) => {
                    headers.remove(name);
                }
                _ => {}
            }
        }
    }

    /// The route as `/admin/routes` shows it (Spring Cloud Gateway's
    /// actuator shape, plus our policy fields).
    pub fn view(&self) -> RouteView {
        RouteView {
            route_id: self.id.clone(),
            uri: format!("lb://{}", self.upstream),
            order: self.order,
            predicates: self.predicates.iter().map(ToString::to_string).collect(),
            filters: self.filters.iter().map(ToString::to_string).collect(),
            public: self.access == Access::Public,
            roles: match &self.access {
                Access::Public => Vec::new(),
                Access::Authenticated { roles } => roles.clone(),
            },
            timeout_ms: self.timeout.as_millis() as u64,
            retry: self.retry.clone(),
            strategy: self.strategy,
            max_body: self.max_body,
        }
    }
}

/// A route for `/admin/routes`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub route_id: String,
    pub uri: String,
    pub order: i64,
    pub predicates: Vec<String>,
    pub filters: Vec<String>,
    pub public: bool,
    pub roles: Vec<String>,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
    pub strategy: Strategy,
    /// Largest request body forwarded, in bytes.
    pub max_body: u64,
}

/// Every route, in matching order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Sorts by `order`; the sort is stable, so file order breaks ties.
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        routes.sort_by_key(|r| r.order);
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The first route whose predicates all hold, with its captures.
    pub fn find(&self, req: &RequestView<'_>) -> Option<(&Arc<Route>, Captures)> {
        self.routes
            .iter()
            .find_map(|r| r.matches(req).map(|c| (r, c)))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The distinct upstream services, in first-use order.
    pub fn upstreams(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if !out.contains(&r.upstream) {
                out.push(r.upstream.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// StripPrefix drops whole segments and never yields an empty path.
    #[test]
    fn strip_prefix_segments() {
        assert_eq!(strip_prefix("/api/product/1", 1), "/product/1");
        assert_eq!(strip_prefix("/api/product/1", 2), "/1");
        assert_eq!(strip_prefix("/api/product", 2), "/");
        assert_eq!(strip_prefix("/api", 5), "/");
        assert_eq!(strip_prefix("/api/x/", 1), "/x/");
    }

    /// Templates substitute captured variables and reject invalid header text.
    #[test]
    fn templates() {
        let t = Template::parse("sku-{sku}-{missing}").unwrap();
        let caps = vec![("sku".to_string(), "A1".to_string())];
        assert_eq!(t.render(&caps).unwrap(), "sku-A1-");
        assert_eq!(t.variables().collect::<Vec<_>>(), ["sku", "missing"]);
        assert!(Template::parse("bad\nvalue").is_err());
        assert!(Template::parse("{unclosed").is_err());
        assert!(Template::parse("{a-b}").is_err());
    }

    /// Retry back-off ceilings grow by the factor and stop at the maximum; each wait stays below its ceiling.
    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            retries: 5,
            statuses: vec![],
            methods: vec![Method::GET],
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            factor: 2,
        };
        let ceilings: Vec<u128> = (0..4)
            .map(|n| p.schedule().ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [10, 20, 40, 50]);
        for n in 1..=4 {
            assert!(p.backoff(n) <= p.schedule().ceiling(n - 1));
        }
        assert!(p.allows(&Method::GET));
        assert!(!p.allows(&Method::POST));
    }

    /// Host ports are stripped unless the pattern names one; IPv6 literals survive.
    #[test]
    fn host_ports() {
        assert_eq!(strip_port("example.org:8080"), "example.org");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("example.org"), "example.org");
    }
}
