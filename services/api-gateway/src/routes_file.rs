//! The routes file: TOML in, [`Route`]s out, or an error naming the file,
//! line, column and key.
//!
//! Every value that can be wrong is read as a `toml::Spanned` so that a
//! semantic error (an unknown filter, a bad pattern, a non-idempotent retry
//! method) points at the exact place; TOML and type errors carry toml's
//! own span, and the key path is found by walking the parsed document to
//! that offset. The built-in defaults are the crate's `routes.toml`, parsed
//! by the same code.

use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Method};
use kit::lb::Strategy;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::pattern::Pattern;
use crate::route::{Access, Filter, Predicate, RetryPolicy, Route, Template, is_idempotent};

/// The built-in routes, used when no file is given.
pub const DEFAULT_ROUTES: &str = include_str!("../routes.toml");

/// A routes file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot read the routes file {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid routes file {file}, line {line}, column {column}, key `{key}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

/// Reads the routes from `path`, or the built-in defaults.
pub fn load(path: Option<&Path>) -> Result<Vec<Route>, RoutesError> {
    match path {
        None => parse(DEFAULT_ROUTES, "<built-in routes.toml>"),
        Some(p) => {
            let file = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| RoutesError::Read {
                file: file.clone(),
                source,
            })?;
            parse(&text, &file)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    defaults: DefaultsDoc,
    #[serde(default)]
    routes: Vec<Spanned<RouteDoc>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsDoc {
    timeout: Option<Spanned<String>>,
    retry: Option<RetryDoc>,
    strategy: Option<Spanned<String>>,
    roles: Option<Vec<Spanned<String>>>,
    max_body: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDoc {
    id: Spanned<String>,
    uri: Spanned<String>,
    #[serde(default)]
    order: i64,
    predicates: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    filters: Vec<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retry: Option<RetryDoc>,
    public: Option<Spanned<bool>>,
    roles: Option<Vec<Spanned<String>>>,
    strategy: Option<Spanned<String>>,
    max_body: Option<Spanned<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryDoc {
    retries: Option<Spanned<u32>>,
    statuses: Option<Vec<Spanned<u16>>>,
    methods: Option<Vec<Spanned<String>>>,
    backoff: Option<BackoffDoc>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackoffDoc {
    first: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
    factor: Option<Spanned<u32>>,
}

/// Where errors point: the file's name and text.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, offset: usize, key: &str, message: impl Into<String>) -> RoutesError {
        let (line, column) = toml_position::line_column(self.text, offset);
        RoutesError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn at<T>(&self, v: &Spanned<T>, key: &str, message: impl Into<String>) -> RoutesError {
        self.error(v.span().start, key, message)
    }
}

/// Parses routes from `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Route>, RoutesError> {
    let src = Source { file, text };
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let key = key_at(text, offset);
        src.error(offset, &key, e.message().trim().to_string())
    })?;
    let defaults = compile_defaults(&src, &doc.defaults)?;
    if doc.routes.is_empty() {
        return Err(src.error(0, "routes", "no routes: add at least one [[routes]] table"));
    }
    let mut routes: Vec<Route> = Vec::with_capacity(doc.routes.len());
    for (k, r) in doc.routes.iter().enumerate() {
        let route = compile_route(&src, &defaults, k, r.get_ref())?;
        if routes.iter().any(|o| o.id == route.id) {
            return Err(src.at(
                &r.get_ref().id,
                &format!("routes[{k}].id"),
                format!("route id `{}` is used twice", route.id),
            ));
        }
        routes.push(route);
    }
    Ok(routes)
}

/// The defaults after applying `[defaults]` over the built-in values.
struct Defaults {
    timeout: Duration,
    retry: RetryPolicy,
    strategy: Strategy,
    roles: Vec<String>,
    max_body: u64,
}

/// The request body limit when neither the route nor `[defaults]` sets one:
/// the services' own `MAX_BODY_BYTES` default, so an oversized body is
/// refused at the edge rather than half-sent to an instance.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// The largest `max_body` a routes file may set.
pub const MAX_MAX_BODY: u64 = 1 << 40;

fn builtin_retry() -> RetryPolicy {
    RetryPolicy {
        retries: 2,
        statuses: vec![502, 503, 504],
        methods: vec![Method::GET, Method::HEAD, Method::OPTIONS],
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(100),
        factor: 2,
    }
}

fn compile_defaults(src: &Source<'_>, d: &DefaultsDoc) -> Result<Defaults, RoutesError> {
    let timeout = match &d.timeout {
        Some(t) => duration(src, t, "defaults.timeout")?,
        None => Duration::from_secs(10),
    };
    let retry = match &d.retry {
        Some(r) => compile_retry(src, r, builtin_retry(), "defaults.retry")?,
        None => builtin_retry(),
    };
    let strategy = match &d.strategy {
        Some(s) => strategy(src, s, "defaults.strategy")?,
        None => Strategy::PowerOfTwoChoices,
    };
    let roles = match &d.roles {
        Some(r) => roles(src, r, "defaults.roles")?,
        None => Vec::new(),
    };
    let max_body = match &d.max_body {
        Some(b) => body_size(src, b, "defaults.max_body")?,
        None => DEFAULT_MAX_BODY,
    };
    Ok(Defaults {
        timeout,
        retry,
        strategy,
        roles,
        max_body,
    })
}

fn compile_route(
    src: &Source<'_>,
    defaults: &Defaults,
    k: usize,
    r: &RouteDoc,
) -> Result<Route, RoutesError> {
    let key = |field: &str| format!("routes[{k}].{field}");
    let id = r.id.get_ref().trim();
    if id.is_empty() {
        return Err(src.at(&r.id, &key("id"), "a route id must not be empty"));
    }
    let upstream = upstream_name(r.uri.get_ref())
        .map_err(|m| src.at(&r.uri, &key("uri"), m))?
        .to_string();
    if r.predicates.get_ref().is_empty() {
        return Err(src.at(
            &r.predicates,
            &key("predicates"),
            "a route needs at least one predicate, e.g. \"Path=/api/product/**\"",
        ));
    }
    let mut predicates = Vec::new();
    for (j, p) in r.predicates.get_ref().iter().enumerate() {
        predicates.push(
            predicate(p.get_ref()).map_err(|m| src.at(p, &key(&format!("predicates[{j}]")), m))?,
        );
    }
    let variables: Vec<String> = predicates
        .iter()
        .flat_map(|p| match p {
            Predicate::Path(ps) | Predicate::Host(ps) => ps
                .iter()
                .flat_map(|p| p.variables().iter().cloned())
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    let mut filters = Vec::new();
    for (j, f) in r.filters.iter().enumerate() {
        filters.push(
            filter(f.get_ref(), &variables)
                .map_err(|m| src.at(f, &key(&format!("filters[{j}]")), m))?,
        );
    }
    let timeout = match &r.timeout {
        Some(t) => duration(src, t, &key("timeout"))?,
        None => defaults.timeout,
    };
    let retry = match &r.retry {
        Some(doc) => compile_retry(src, doc, defaults.retry.clone(), &key("retry"))?,
        None => defaults.retry.clone(),
    };
    let strategy = match &r.strategy {
        Some(s) => strategy(src, s, &key("strategy"))?,
        None => defaults.strategy,
    };
    let max_body = match &r.max_body {
        Some(b) => body_size(src, b, &key("max_body"))?,
        None => defaults.max_body,
    };
    let public = r.public.as_ref().is_some_and(|p| *p.get_ref());
    let access = match (public, &r.roles) {
        (true, Some(list)) if !list.is_empty() => {
            return Err(src.at(
                &list[0],
                &key("roles"),
                "a public route cannot require roles: remove `public = true` or the roles",
            ));
        }
        (true, _) => Access::Public,
        (false, Some(list)) => Access::Authenticated {
            roles: roles(src, list, &key("roles"))?,
        },
        (false, None) => Access::Authenticated {
            roles: defaults.roles.clone(),
        },
    };
    Ok(Route {
        id: id.to_string(),
        order: r.order,
        upstream,
        predicates,
        filters,
        timeout,
        retry,
        access,
        strategy,
        max_body,
        metrics: Default::default(),
    })
}

/// `lb://product-service` → `product-service`.
fn upstream_name(uri: &str) -> Result<&str, String> {
    let Some(name) = uri.strip_prefix("lb://") else {
        return Err(format!(
            "`{uri}` is not a registry upstream: write `lb://<service-name>`; fixed addresses are not supported, upstreams come from the registry"
        ));
    };
    let name = name.trim_end_matches('/');
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!("`{name}` is not a service name"));
    }
    Ok(name)
}

fn split_shortcut(text: &str) -> Result<(&str, &str), String> {
    let (name, args) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not of the form Name=arguments"))?;
    Ok((name.trim(), args.trim()))
}

fn list(args: &str) -> Vec<&str> {
    args.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))
}

fn predicate(text: &str) -> Result<Predicate, String> {
    let (name, args) = split_shortcut(text)?;
    if args.is_empty() {
        return Err(format!("{name} needs arguments"));
    }
    match name {
        "Path" => list(args)
            .into_iter()
            .map(|p| Pattern::path(p).map_err(|e| format!("path pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()
            .map(Predicate::Path),
        "Host" => list(args)
            .into_iter()
            .map(|p| Pattern::host(p).map_err(|e| format!("host pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()
            .map(Predicate::Host),
        "Method" => list(args)
            .into_iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not an HTTP method"))
            })
            .collect::<Result<_, _>>()
            .map(Predicate::Method),
        "Header" => {
            let (h, re) = match args.split_once(',') {
                Some((h, re)) => (h, Some(re.trim())),
                None => (args, None),
            };
            let regex = match re.filter(|r| !r.is_empty()) {
                Some(r) => Some(
                    Regex::new(&format!("^(?:{r})$"))
                        .map_err(|e| format!("regular expression `{r}`: {e}"))?,
                ),
                None => None,
            };
            Ok(Predicate::Header {
                name: header_name(h)?,
                regex,
            })
        }
        other => Err(format!(
            "unknown predicate `{other}` (known: Path, Method, Host, Header)"
        )),
    }
}

fn filter(text: &str, variables: &[String]) -> Result<Filter, String> {
    let (name, args) = split_shortcut(text)?;
    let name_value = |args: &str| -> Result<(HeaderName, Template), String> {
        let (h, v) = args
            .split_once(',')
            .ok_or_else(|| format!("{name} takes `Header-Name, value`"))?;
        let t = Template::parse(v.trim())?;
        if let Some(unknown) = t.variables().find(|v| !variables.iter().any(|k| k == v)) {
            return Err(format!(
                "`{{{unknown}}}` is not a variable of this route's Path or Host patterns"
            ));
        }
        Ok((header_name(h)?, t))
    };
    match name {
        "StripPrefix" => args
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .map(Filter::StripPrefix)
            .ok_or_else(|| format!("StripPrefix takes a number of segments (1-64), not `{args}`")),
        "RewritePath" => {
            // The expression may itself contain commas; the replacement rarely does.
            let (re, replacement) = args
                .rsplit_once(',')
                .ok_or_else(|| "RewritePath takes `regex, replacement`".to_string())?;
            let re = re.trim();
            let regex = Regex::new(re).map_err(|e| format!("regular expression `{re}`: {e}"))?;
            // Spring's YAML examples escape `${` as `$\{`; accept both.
            let replacement = replacement.trim().replace("$\\{", "${");
            check_replacement(&regex, &replacement)?;
            Ok(Filter::RewritePath { regex, replacement })
        }
        "AddRequestHeader" => name_value(args).map(|(h, t)| Filter::AddRequestHeader(h, t)),
        "AddResponseHeader" => name_value(args).map(|(h, t)| Filter::AddResponseHeader(h, t)),
        "RemoveRequestHeader" => header_name(args).map(Filter::RemoveRequestHeader),
        "RemoveResponseHeader" => header_name(args).map(Filter::RemoveResponseHeader),
        other => Err(format!(
            "unknown filter `{other}` (known: StripPrefix, RewritePath, AddRequestHeader, RemoveRequestHeader, AddResponseHeader, RemoveResponseHeader)"
        )),
    }
}

/// Every `$n`, `$name` and `${name}` in `replacement` must name a group of `regex`.
fn check_replacement(regex: &Regex, replacement: &str) -> Result<(), String> {
    let mut rest = replacement;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r; // `$$` is a literal dollar
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("`${{` without `}}` in `{replacement}`"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|g| g == name),
        };
        if name.is_empty() || !known {
            return Err(format!(
                "the replacement refers to group `{name}`, which the expression `{}` does not have",
                regex.as_str()
            ));
        }
        rest = after;
    }
    Ok(())
}

fn duration(src: &Source<'_>, v: &Spanned<String>, key: &str) -> Result<Duration, RoutesError> {
    let d = kit::config::parse_duration(v.get_ref()).map_err(|m| src.at(v, key, m))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(src.at(v, key, "must be between 1ms and 1h"));
    }
    Ok(d)
}

/// A size such as `"1MiB"`, `"512KiB"`, `"10MB"` or `"4096"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a size: write e.g. \"1MiB\", \"512KiB\" or \"4096\"")
    })?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (known: B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn body_size(src: &Source<'_>, v: &Spanned<String>, key: &str) -> Result<u64, RoutesError> {
    let n = parse_size(v.get_ref()).map_err(|m| src.at(v, key, m))?;
    if n == 0 || n > MAX_MAX_BODY {
        return Err(src.at(v, key, "must be between 1 byte and 1TiB"));
    }
    Ok(n)
}

fn strategy(src: &Source<'_>, v: &Spanned<String>, key: &str) -> Result<Strategy, RoutesError> {
    match v.get_ref().as_str() {
        "round_robin" => Ok(Strategy::RoundRobin),
        "power_of_two_choices" => Ok(Strategy::PowerOfTwoChoices),
        other => Err(src.at(
            v,
            key,
            format!("unknown strategy `{other}` (known: round_robin, power_of_two_choices)"),
        )),
    }
}

fn roles(
    src: &Source<'_>,
    list: &[Spanned<String>],
    key: &str,
) -> Result<Vec<String>, RoutesError> {
    list.iter()
        .enumerate()
        .map(|(j, r)| {
            let role = r.get_ref().trim();
            if role.is_empty() {
                Err(src.at(r, &format!("{key}[{j}]"), "a role must not be empty"))
            } else {
                Ok(role.to_string())
            }
        })
        .collect()
}

fn compile_retry(
    src: &Source<'_>,
    doc: &RetryDoc,
    base: RetryPolicy,
    key: &str,
) -> Result<RetryPolicy, RoutesError> {
    let mut p = base;
    if let Some(r) = &doc.retries {
        if *r.get_ref() > 10 {
            return Err(src.at(r, &format!("{key}.retries"), "at most 10 retries"));
        }
        p.retries = *r.get_ref();
    }
    if let Some(statuses) = &doc.statuses {
        p.statuses = statuses
            .iter()
            .enumerate()
            .map(|(j, s)| {
                if (400..=599).contains(s.get_ref()) {
                    Ok(*s.get_ref())
                } else {
                    Err(src.at(
                        s,
                        &format!("{key}.statuses[{j}]"),
                        "retryable statuses are 4xx or 5xx answers",
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(methods) = &doc.methods {
        p.methods = methods
            .iter()
            .enumerate()
            .map(|(j, m)| {
                let k = format!("{key}.methods[{j}]");
                let method = Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes())
                    .map_err(|_| src.at(m, &k, format!("`{}` is not an HTTP method", m.get_ref())))?;
                if !is_idempotent(&method) {
                    return Err(src.at(
                        m,
                        &k,
                        format!("{method} is not idempotent; only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) may be retried"),
                    ));
                }
                Ok(method)
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(b) = &doc.backoff {
        if let Some(first) = &b.first {
            p.first_backoff = kit::config::parse_duration(first.get_ref())
                .map_err(|m| src.at(first, &format!("{key}.backoff.first"), m))?;
        }
        if let Some(max) = &b.max {
            p.max_backoff = kit::config::parse_duration(max.get_ref())
                .map_err(|m| src.at(max, &format!("{key}.backoff.max"), m))?;
            if p.max_backoff > Duration::from_secs(10) {
                return Err(src.at(max, &format!("{key}.backoff.max"), "at most 10s"));
            }
        }
        if let Some(f) = &b.factor {
            if !(1..=10).contains(f.get_ref()) {
                return Err(src.at(f, &format!("{key}.backoff.factor"), "between 1 and 10"));
            }
            p.factor = *f.get_ref();
        }
        if p.first_backoff > p.max_backoff {
            let at = b.first.as_ref().or(b.max.as_ref());
            let offset = at.map_or(0, |s| s.span().start);
            return Err(src.error(
                offset,
                &format!("{key}.backoff"),
                "`first` must not be longer than `max`",
            ));
        }
    }
    Ok(p)
}

/// The dotted key at `offset`, or for a text that does not parse, the key written on its line.
fn key_at(text: &str, offset: usize) -> String {
    let key = toml_position::key_at(text, offset);
    if key.is_empty() {
        toml_position::key_on_line(text, offset)
    } else {
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, usize, String, String) {
        match parse(text, "routes.toml").map(|_| ()).unwrap_err() {
            RoutesError::Invalid {
                line,
                column,
                key,
                message,
                ..
            } => (line, column, key, message),
            other => panic!("unexpected {other}"),
        }
    }

    /// The built-in routes parse and reproduce the seed's routes plus notifications and the
    /// identity provider's public OpenID Connect endpoints.
    #[test]
    fn builtin_routes() {
        let routes = load(None).unwrap();
        let ids: Vec<&str> = routes.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "product-service-write",
                "product-service",
                "order-service",
                "inventory-service",
                "notification-service",
                "identity-provider"
            ]
        );
        assert_eq!(routes[5].access, Access::Public);
        assert_eq!(routes[5].predicates[0].to_string(), "Path=/realms/**");
        assert!(routes.iter().all(|r| r.id.starts_with(&r.upstream)));
        // Catalogue writes need the admin role; everything else any valid token.
        assert_eq!(
            routes[0].access,
            Access::Authenticated {
                roles: vec!["admin".into()]
            }
        );
        assert_eq!(
            routes[0].predicates[1].to_string(),
            "Method=POST,PUT,PATCH,DELETE"
        );
        assert_eq!(routes[1].predicates[0].to_string(), "Path=/api/product/**");
        assert_eq!(routes[1].retry.retries, 2);
        assert_eq!(routes[1].access, Access::Authenticated { roles: vec![] });
        // Stock reservations are not routed: only the stock checks are.
        assert_eq!(
            routes[3].predicates[0].to_string(),
            "Path=/api/inventory,/api/inventory/{skuCode}"
        );
    }

    /// Every kind of predicate and filter parses and prints back in shortcut form.
    #[test]
    fn full_route() {
        let text = r#"
[[routes]]
id = "r"
uri = "lb://svc"
order = -1
predicates = ["Path=/api/{sku}/**", "Method=get,POST", "Host=**.example.org", "Header=X-Tenant, [a-z]+"]
filters = ["StripPrefix=1", "RewritePath=/(?<rest>.*), /v2/$\\{rest}", "AddRequestHeader=X-Sku, sku-{sku}",
           "RemoveRequestHeader=Cookie", "AddResponseHeader=X-Via, gw", "RemoveResponseHeader=Server"]
timeout = "250ms"
roles = ["admin"]
strategy = "round_robin"
retry = { retries = 1, statuses = [503], methods = ["GET", "PUT"], backoff = { first = "1ms", max = "2ms", factor = 3 } }
"#;
        let r = &parse(text, "x").unwrap()[0];
        let shown: Vec<String> = r.predicates.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "Path=/api/{sku}/**",
                "Method=GET,POST",
                "Host=**.example.org",
                "Header=x-tenant, [a-z]+"
            ]
        );
        let f: Vec<String> = r.filters.iter().map(ToString::to_string).collect();
        assert_eq!(f[1], "RewritePath=/(?<rest>.*), /v2/${rest}");
        assert_eq!(r.timeout, Duration::from_millis(250));
        assert_eq!(r.strategy, Strategy::RoundRobin);
        assert_eq!(r.retry.methods, [Method::GET, Method::PUT]);
        assert_eq!(r.retry.statuses, [503]);
        assert_eq!(r.order, -1);
        assert_eq!(r.rewrite_path("/api/A1/x/y"), "/v2/A1/x/y");
    }

    /// Semantic errors name the line, column and key path of the bad value.
    #[test]
    fn semantic_errors_point_at_the_value() {
        let text = "[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a/**\"]\n\n[[routes]]\nid = \"b\"\nuri = \"lb://b\"\npredicates = [\"Path=/b/**\"]\nfilters = [\"StripPrefix=1\", \"StripPrefx=1\"]\n";
        let (line, column, key, message) = err(text);
        assert_eq!((line, key.as_str()), (10, "routes[1].filters[1]"));
        assert_eq!(column, 29);
        assert!(message.contains("unknown filter `StripPrefx`"), "{message}");

        let cases = [
            (
                "uri = \"http://10.0.0.1:8081\"",
                "routes[0].uri",
                "not a registry upstream",
            ),
            (
                "predicates = [\"Path=api\"]",
                "routes[0].predicates[0]",
                "must start with `/`",
            ),
            (
                "predicates = []",
                "routes[0].predicates",
                "at least one predicate",
            ),
            ("timeout = \"soon\"", "routes[0].timeout", "not a duration"),
            (
                "retry = { methods = [\"POST\"] }",
                "routes[0].retry.methods[0]",
                "not idempotent",
            ),
            (
                "retry = { statuses = [200] }",
                "routes[0].retry.statuses[0]",
                "4xx or 5xx",
            ),
            (
                "strategy = \"random\"",
                "routes[0].strategy",
                "unknown strategy",
            ),
            (
                "public = true\nroles = [\"admin\"]",
                "routes[0].roles",
                "public route cannot",
            ),
            (
                "filters = [\"AddRequestHeader=X-A, {nope}\"]",
                "routes[0].filters[0]",
                "not a variable",
            ),
            (
                "filters = [\"RewritePath=/a/(.*), /$2\"]",
                "routes[0].filters[0]",
                "group `2`",
            ),
            (
                "predicates = [\"Header=X-A, [\"]",
                "routes[0].predicates[0]",
                "regular expression",
            ),
            (
                "max_body = \"10 parsecs\"",
                "routes[0].max_body",
                "unknown size unit",
            ),
            ("max_body = \"0\"", "routes[0].max_body", "between 1 byte"),
            ("max_body = \"MiB\"", "routes[0].max_body", "not a size"),
        ];
        for (line, key, needle) in cases {
            let base = "[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a/**\"]\n";
            // Replace the field if the base has it, else add the line.
            let field = line.split(' ').next().unwrap();
            let text = if base.contains(&format!("\n{field} =")) {
                base.lines()
                    .map(|l| {
                        if l.starts_with(&format!("{field} =")) {
                            line
                        } else {
                            l
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                format!("{base}{line}\n")
            };
            let (_, _, k, m) = err(&text);
            assert_eq!(k, key, "{line}: {m}");
            assert!(m.contains(needle), "{line}: {m}");
        }
    }

    /// TOML and type errors carry the line and the key path found in the document.
    #[test]
    fn toml_errors_name_the_key() {
        let text = "[defaults]\ntimeout = \"1s\"\n\n[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a/**\"]\n\n[[routes]]\nid = \"b\"\nuri = \"lb://b\"\npredicates = [\"Path=/b/**\"]\norder = \"first\"\n";
        let (line, _, key, message) = err(text);
        assert_eq!(line, 13);
        assert_eq!(key, "routes[1].order");
        assert!(message.contains("invalid type"), "{message}");

        let (line, _, key, message) = err(
            "[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a\"]\ntimeuot = \"1s\"\n",
        );
        assert_eq!((line, key.as_str()), (5, "routes[0].timeuot"));
        assert!(message.contains("unknown field `timeuot`"), "{message}");

        let (line, _, _, message) = err("[[routes]]\nid = \"a\"\nuri = \"lb://a\"\n");
        assert!(message.contains("missing field `predicates`"), "{message}");
        assert!(line <= 3, "{line}");

        let (line, _, key, _) = err("[[routes]]\nid = \"a\"\nuri = lb://a\n");
        assert_eq!((line, key.as_str()), (3, "uri"));
    }

    /// Duplicate ids and an empty file are refused.
    #[test]
    fn duplicates_and_empty() {
        let text = "[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a\"]\n[[routes]]\nid = \"a\"\nuri = \"lb://b\"\npredicates = [\"Path=/b\"]\n";
        let (line, _, key, message) = err(text);
        assert_eq!((line, key.as_str()), (6, "routes[1].id"));
        assert!(message.contains("used twice"));
        let (_, _, key, _) = err("[defaults]\ntimeout = \"1s\"\n");
        assert_eq!(key, "routes");
    }

    /// `max_body`: a route's own value, else `[defaults]`, else 1 MiB; sizes take units.
    #[test]
    fn max_body() {
        let routes = load(None).unwrap();
        assert!(routes.iter().all(|r| r.max_body == DEFAULT_MAX_BODY));
        let text = "[defaults]\nmax_body = \"64KiB\"\n[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a\"]\n[[routes]]\nid = \"b\"\nuri = \"lb://b\"\npredicates = [\"Path=/b\"]\nmax_body = \"256MiB\"\n";
        let r = parse(text, "x").unwrap();
        assert_eq!((r[0].max_body, r[1].max_body), (64 * 1024, 256 << 20));
        let r = parse(
            "[[routes]]\nid = \"a\"\nuri = \"lb://a\"\npredicates = [\"Path=/a\"]\n",
            "x",
        )
        .unwrap();
        assert_eq!(r[0].max_body, DEFAULT_MAX_BODY);
        for (text, n) in [
            ("4096", 4096),
            ("10MB", 10_000_000),
            ("1 GiB", 1 << 30),
            ("2kB", 2000),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(n), "{text}");
        }
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
        assert!(parse_size("-1").is_err());
    }
}
