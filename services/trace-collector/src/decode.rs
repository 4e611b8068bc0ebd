//! Reading uploaded spans: Zipkin's JSON v2 and proto3 `ListOfSpans`, with
//! Zipkin's validation and normalisation.
//!
//! Rules, as Zipkin's `V2SpanReader`, `Span.Builder` and `Endpoint.Builder`
//! apply them:
//! - ids are lower-hex without prefix; a trace id has at most 32 characters,
//!   a span or parent id at most 16. Shorter ids are left-padded with zeros;
//!   a 32-character trace id whose upper half is zeros becomes 16
//!   characters. All-zero trace and span ids are rejected; an all-zero parent
//!   id means "no parent" (opentelemetry-zipkin writes one on root spans).
//! - span and service names are lower-cased; empty names are absent.
//! - negative timestamps and durations are absent; fields that are `null`
//!   are absent; unknown fields are ignored.
//! - `kind` must be one of Zipkin's four names; a tag must have a value; an
//!   annotation needs both `timestamp` and `value`; a port above 65535 is an
//!   error, IP addresses that do not parse are dropped.
//!
//! One addition to Zipkin's rules: a timestamp after the year 2100 is
//! rejected, because that is a nanosecond or millisecond-times-1000 mistake
//! that would otherwise make the span invisible to every time-window query.
//!
//! A message is decoded and validated completely before anything is stored,
//! so one bad span rejects the whole message and nothing is half-stored.
//! Strings borrow from the request body where they can ([`Cow`]); the store
//! interns them.
//!
//! Memory is bounded before it is spent ([`Limits`]): the JSON list is read
//! element by element and each span is validated as soon as it is read, so
//! a list of millions of `{}` stops at its first element and a list of
//! millions of valid spans stops one element past the limit; tags and
//! annotations are counted while they are read. The protobuf form is walked
//! field by field (no allocation) and counted before prost builds anything.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::model::{Kind, TraceId};

/// 2100-01-01T00:00:00Z in epoch microseconds: later "timestamps" are unit mistakes.
pub const MAX_TIMESTAMP_MICROS: u64 = 4_102_444_800_000_000;

/// Bounds on one upload, enforced while it is decoded, before the spans
/// are built: together with the upload's byte limit they bound the memory
/// one upload can make the collector spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Spans in one message (exporters send batches of hundreds:
    /// OpenTelemetry's batch processor sends at most 512).
    pub max_spans: usize,
    /// Tags of one span (OpenTelemetry's default attribute count limit).
    pub max_span_tags: usize,
    /// Annotations of one span (OpenTelemetry's default event count limit).
    pub max_span_annotations: usize,
    /// Tags plus annotations of all the spans of one message.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_spans: 10_000,
            max_span_tags: 128,
            max_span_annotations: 128,
            max_entries: 100_000,
        }
    }
}

/// Why an upload was refused (always a client error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the expected list (Zipkin: "Expected a JSON_V2 encoded list").
    #[error("{0}")]
    Format(String),
    /// One span breaks a rule.
    #[error("span {index}: {message}")]
    Span { index: usize, message: String },
    /// The message is over one of the [`Limits`] (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
}

impl DecodeError {
    fn too_many_spans(limit: usize) -> DecodeError {
        DecodeError::TooLarge(format!(
            "more than {limit} spans in one message (MAX_UPLOAD_SPANS): send smaller batches"
        ))
    }
}

/// The limits of the JSON decode running on this thread, and what it has
/// counted so far. Tags and annotations are read by `Deserialize` impls
/// that serde's derive calls without context, so the counts live here for
/// the duration of one synchronous [`decode_json`] call (set and cleared by
/// [`BudgetScope`]); outside a decode nothing is counted.
struct Budget {
    limits: Limits,
    entries: usize,
    /// The limit that stopped the decode, reported instead of serde's error.
    exceeded: Option<String>,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Installs a [`Budget`] for one decode and removes it on drop.
struct BudgetScope;

impl BudgetScope {
    fn enter(limits: Limits) -> BudgetScope {
        BUDGET.with(|b| {
            *b.borrow_mut() = Some(Budget {
                limits,
                entries: 0,
                exceeded: None,
            });
        });
        BudgetScope
    }

    /// The limit that stopped the decode, if one did.
    fn exceeded(&self) -> Option<String> {
        BUDGET.with(|b| b.borrow_mut().as_mut().and_then(|b| b.exceeded.take()))
    }
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        BUDGET.with(|b| *b.borrow_mut() = None);
    }
}

/// Which per-span list an entry belongs to.
#[derive(Clone, Copy)]
enum Entry {
    Tag,
    Annotation,
}

/// Counts one more tag or annotation of a span that already has `in_span`
/// of them; `Err` (after recording why) once a limit is passed.
fn count_entry<E: de::Error>(entry: Entry, in_span: usize) -> Result<(), E> {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        let Some(b) = b.as_mut() else {
            return Ok(());
        };
        b.entries += 1;
        let (limit, what, var) = match entry {
            Entry::Tag => (b.limits.max_span_tags, "tags", "MAX_SPAN_TAGS"),
            Entry::Annotation => (
                b.limits.max_span_annotations,
                "annotations",
                "MAX_SPAN_ANNOTATIONS",
            ),
        };
        let why = if in_span + 1 > limit {
            format!("a span has more than {limit} {what} ({var})")
        } else if b.entries > b.limits.max_entries {
            entries_message(b.limits.max_entries)
        } else {
            return Ok(());
        };
        b.exceeded = Some(why.clone());
        Err(E::custom(why))
    })
}

fn entries_message(limit: usize) -> String {
    format!(
        "more than {limit} tags and annotations in one message (MAX_UPLOAD_ENTRIES): send smaller batches"
    )
}

/// A validated, normalised span whose strings may borrow from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpan<'a> {
    pub trace_id: TraceId,
    pub parent_id: u64,
    pub id: u64,
    pub kind: Option<Kind>,
    pub name: Option<Cow<'a, str>>,
    pub timestamp: u64,
    pub duration: u64,
    pub local_endpoint: Option<ValidEndpoint<'a>>,
    pub remote_endpoint: Option<ValidEndpoint<'a>>,
    pub annotations: Vec<(i64, Cow<'a, str>)>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub debug: bool,
    pub shared: bool,
}

/// A validated endpoint (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEndpoint<'a> {
    pub service_name: Option<Cow<'a, str>>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: u16,
}

// ---------------------------------------------------------------------------
// ids

/// Zipkin's `Span.normalizeTraceId`.
pub fn parse_trace_id(s: &str) -> Result<TraceId, String> {
    let len = s.len();
    if len == 0 {
        return Err("traceId is empty".into());
    }
    if len > 32 {
        return Err("traceId.length > 32".into());
    }
    check_lower_hex(s)?;
    let (high, low) = if len > 16 {
        let split = len - 16;
        (hex_u64(&s[..split]), hex_u64(&s[split..]))
    } else {
        (0, hex_u64(s))
    };
    if high == 0 && low == 0 {
        return Err("traceId is all zeros".into());
    }
    Ok(TraceId { high, low })
}

/// Zipkin's `Span.Builder.id(String)`.
pub fn parse_span_id(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("id is empty".into());
    }
    if s.len() > 16 {
        return Err("id.length > 16".into());
    }
    check_lower_hex(s)?;
    match hex_u64(s) {
        0 => Err("id is all zeros".into()),
        v => Ok(v),
    }
}

/// Zipkin's `Span.Builder.parentId(String)`: all zeros means no parent.
pub fn parse_parent_id(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err("parentId is empty".into());
    }
    if s.len() > 16 {
        return Err("parentId.length > 16".into());
    }
    check_lower_hex(s)?;
    Ok(hex_u64(s))
}

fn check_lower_hex(s: &str) -> Result<(), String> {
    if s.bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        Ok(())
    } else {
        Err(format!("{s} should be lower-hex encoded with no prefix"))
    }
}

/// Hex digits already checked, at most 16 of them.
fn hex_u64(s: &str) -> u64 {
    s.bytes().fold(0u64, |acc, c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        };
        (acc << 4) | u64::from(d)
    })
}

/// Id bytes of the protobuf form, as the hex string Zipkin's reader builds.
fn hex_of_bytes(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

// ---------------------------------------------------------------------------
// endpoints and strings

fn lower<'a>(s: Cow<'a, str>) -> Option<Cow<'a, str>> {
    if s.is_empty() {
        None
    } else if s.chars().any(|c| c.is_uppercase()) {
        Some(Cow::Owned(s.to_lowercase()))
    } else {
        Some(s)
    }
}

/// Netty's IPv4 word rules as Zipkin uses them (leading zeros allowed).
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&s.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in octets.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse::<u16>().ok().filter(|v| *v <= 255)? as u8;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Zipkin's `Endpoint.Builder.parseIp(String)`: IPv4, IPv4 embedded in
/// IPv6 text (`::1.2.3.4`, `::ffff:1.2.3.4`) or IPv6; anything else is ignored.
fn parse_ip_text(s: &str, ep: &mut ValidEndpoint<'_>) {
    if s.is_empty() {
        return;
    }
    let mut has_colon = false;
    let mut has_dot = false;
    for c in s.chars() {
        match c {
            '.' => has_dot = true,
            ':' => {
                if has_dot {
                    return;
                }
                has_colon = true;
            }
            c if c.is_ascii_hexdigit() => {}
            _ => return,
        }
    }
    if has_colon {
        if has_dot {
            let last_colon = s.rfind(':').unwrap_or(0);
            let Some(v4) = parse_ipv4(&s[last_colon + 1..]) else {
                return;
            };
            let embedded = (last_colon == 1 && s.starts_with(':'))
                || (last_colon == 6
                    && s.starts_with("::")
                    && s[2..6].chars().all(|c| matches!(c, 'f' | 'F' | '0')));
            if embedded {
                ep.ipv4 = Some(v4);
            }
            return;
        }
        if let Ok(v6) = s.parse::<Ipv6Addr>() {
            ep.ipv6 = Some(v6);
        }
    } else if has_dot && let Some(v4) = parse_ipv4(s) {
        ep.ipv4 = Some(v4);
    }
}

/// Zipkin's `Endpoint.Builder.parseIp(byte[])` for the protobuf form.
fn parse_ip_bytes(b: &[u8], ep: &mut ValidEndpoint<'_>) {
    match b.len() {
        4 => ep.ipv4 = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            // Embedded IPv4 (compatible or mapped), except ::1 which is localhost.
            let zero_prefix = octets[..10].iter().all(|x| *x == 0);
            let flag = u16::from(octets[10]) << 8 | u16::from(octets[11]);
            let tail = &octets[12..];
            if zero_prefix && flag == 0 && tail != [0, 0, 0, 1] {
                ep.ipv4 = Some(Ipv4Addr::new(tail[0], tail[1], tail[2], tail[3]));
            } else {
                ep.ipv6 = Some(Ipv6Addr::from(octets));
            }
        }
        _ => {}
    }
}

fn check_port(port: i64) -> Result<u16, String> {
    if port > 0xffff {
        return Err(format!("invalid port {port}"));
    }
    Ok(if port <= 0 { 0 } else { port as u16 })
}

fn check_timestamp(field: &str, ts: i64) -> Result<u64, String> {
    if ts <= 0 {
        return Ok(0);
    }
    let ts = ts as u64;
    if ts > MAX_TIMESTAMP_MICROS {
        return Err(format!(
            "{field} {ts} is after the year 2100: Zipkin timestamps are epoch microseconds"
        ));
    }
    Ok(ts)
}

// ---------------------------------------------------------------------------
// JSON v2

/// A string field that, like Gson's `nextString`, also accepts a number.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A 64-bit integer field that, like Gson's `nextLong`, also accepts an
/// integral float or a quoted integer.
#[derive(Debug, Clone, Copy)]
struct Long(i64);

impl<'de> Deserialize<'de> for Long {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Long;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-bit integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Long, E> {
                Ok(Long(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Long, E> {
                i64::try_from(v)
                    .map(Long)
                    .map_err(|_| E::custom(format!("{v} does not fit a 64-bit signed integer")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Long, E> {
                if v.fract() == 0.0 && v >= i64::MIN as f64 && v <= i64::MAX as f64 {
                    Ok(Long(v as i64))
                } else {
                    Err(E::custom(format!("expected an integer, found {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Long, E> {
                v.trim()
                    .parse::<i64>()
                    .map(Long)
                    .map_err(|_| E::custom(format!("expected an integer, found {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Span tags: a JSON object of string values (a `null` value is an error).
#[derive(Debug, Default)]
struct Tags<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string tags")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8).min(128));
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    count_entry(Entry::Tag, out.len())?;
                    let value: Option<Str<'de>> = map.next_value()?;
                    match value {
                        Some(v) => out.push((key.0, v.0)),
                        None => {
                            return Err(de::Error::custom(format!("No value at tags.{}", key.0)));
                        }
                    }
                }
                Ok(Tags(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Span annotations: a JSON list, counted as it is read.
#[derive(Debug, Default)]
struct Annotations<'a>(Vec<WireAnnotation<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Annotations<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Annotations<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of annotations")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Annotations<'de>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(128));
                while let Some(a) = seq.next_element::<WireAnnotation<'de>>()? {
                    count_entry(Entry::Annotation, out.len())?;
                    out.push(a);
                }
                Ok(Annotations(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Debug, Deserialize)]
struct WireAnnotation<'a> {
    #[serde(default)]
    timestamp: Option<Long>,
    #[serde(default, borrow)]
    value: Option<Str<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEndpoint<'a> {
    #[serde(default, borrow)]
    service_name: Option<Str<'a>>,
    #[serde(default, borrow)]
    ipv4: Option<Str<'a>>,
    #[serde(default, borrow)]
    ipv6: Option<Str<'a>>,
    #[serde(default)]
    port: Option<Long>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpan<'a> {
    #[serde(default, borrow)]
    trace_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    parent_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    kind: Option<Str<'a>>,
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default)]
    timestamp: Option<Long>,
    #[serde(default)]
    duration: Option<Long>,
    #[serde(default, borrow)]
    local_endpoint: Option<WireEndpoint<'a>>,
    #[serde(default, borrow)]
    remote_endpoint: Option<WireEndpoint<'a>>,
    #[serde(default, borrow)]
    annotations: Option<Annotations<'a>>,
    #[serde(default, borrow)]
    tags: Option<Tags<'a>>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    shared: Option<bool>,
}

fn endpoint_from_wire<'a>(w: WireEndpoint<'a>) -> Result<Option<ValidEndpoint<'a>>, String> {
    let mut ep = ValidEndpoint {
        service_name: w.service_name.and_then(|s| lower(s.0)),
        ipv4: None,
        ipv6: None,
        port: 0,
    };
    for ip in [w.ipv4, w.ipv6].into_iter().flatten() {
        parse_ip_text(&ip.0, &mut ep);
    }
    if let Some(p) = w.port {
        ep.port = check_port(p.0)?;
    }
    Ok(non_empty(ep))
}

fn non_empty(ep: ValidEndpoint<'_>) -> Option<ValidEndpoint<'_>> {
    if ep.service_name.is_none() && ep.ipv4.is_none() && ep.ipv6.is_none() && ep.port == 0 {
        None
    } else {
        Some(ep)
    }
}

fn span_from_wire(w: WireSpan<'_>) -> Result<ValidSpan<'_>, String> {
    let trace_id = match &w.trace_id {
        Some(s) => parse_trace_id(&s.0)?,
        None => return Err("Missing : traceId".into()),
    };
    let id = match &w.id {
        Some(s) => parse_span_id(&s.0)?,
        None => return Err("Missing : id".into()),
    };
    let parent_id = match &w.parent_id {
        Some(s) => parse_parent_id(&s.0)?,
        None => 0,
    };
    let kind = match &w.kind {
        Some(k) => Some(Kind::parse(&k.0).ok_or_else(|| {
            format!(
                "kind {:?} is not one of CLIENT, SERVER, PRODUCER, CONSUMER",
                k.0
            )
        })?),
        None => None,
    };
    let timestamp = match w.timestamp {
        Some(t) => check_timestamp("timestamp", t.0)?,
        None => 0,
    };
    let duration = w.duration.map(|d| d.0.max(0) as u64).unwrap_or(0);
    let local_endpoint = w
        .local_endpoint
        .map(endpoint_from_wire)
        .transpose()?
        .flatten();
    let remote_endpoint = w
        .remote_endpoint
        .map(endpoint_from_wire)
        .transpose()?
        .flatten();
    let mut annotations = Vec::new();
    for (i, a) in w.annotations.into_iter().flat_map(|a| a.0).enumerate() {
        match (a.timestamp, a.value) {
            (Some(t), Some(v)) => {
                if t.0 > 0 {
                    check_timestamp("annotation timestamp", t.0)?;
                }
                annotations.push((t.0, v.0));
            }
            _ => return Err(format!("Incomplete annotation at annotations[{i}]")),
        }
    }
    let tags = w.tags.map(|t| t.0).unwrap_or_default();
    Ok(finish(ValidSpan {
        trace_id,
        parent_id,
        id,
        kind,
        name: w.name.and_then(|n| lower(n.0)),
        timestamp,
        duration,
        local_endpoint,
        remote_endpoint,
        annotations,
        tags,
        debug: w.debug == Some(true),
        shared: w.shared == Some(true),
    }))
}

/// `Span.Builder.build`'s fix-ups.
fn finish(mut s: ValidSpan<'_>) -> ValidSpan<'_> {
    if s.parent_id == s.id {
        s.parent_id = 0;
    }
    if s.shared && s.kind == Some(Kind::Client) {
        s.shared = false;
    }
    s
}

/// What the body looks like, for Zipkin's format detection messages.
fn first_non_space(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Decodes a JSON v2 list of spans within [`Limits`]. An empty body or
/// `[]` is an empty list.
pub fn decode_json(body: &[u8], limits: Limits) -> Result<Vec<ValidSpan<'_>>, DecodeError> {
    match first_non_space(body) {
        None => return Ok(Vec::new()),
        Some(b'[') => {}
        Some(_) => {
            return Err(DecodeError::Format(
                "Expected a JSON_V2 encoded list".into(),
            ));
        }
    }
    if contains(body, b"binaryAnnotations\"") {
        return Err(DecodeError::Format(
            "Expected a JSON_V2 encoded list, but received: JSON_V1".into(),
        ));
    }
    let scope = BudgetScope::enter(limits);
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = de
        .deserialize_seq(SpanList {
            max_spans: limits.max_spans,
            failure: &failure,
        })
        .and_then(|spans| de.end().map(|()| spans));
    result.map_err(|e| {
        if let Some(why) = scope.exceeded() {
            DecodeError::TooLarge(why)
        } else if let Some(failure) = failure.into_inner() {
            failure
        } else {
            DecodeError::Format(format!("Malformed reading List<Span> from json: {e}"))
        }
    })
}

/// Reads the top-level JSON list one span at a time: each is validated
/// before the next is read, and reading stops one element past the limit.
struct SpanList<'f> {
    max_spans: usize,
    /// Why a span was refused or the list stopped; serde's error only
    /// carries text, so the typed error travels here.
    failure: &'f RefCell<Option<DecodeError>>,
}

impl<'de> Visitor<'de> for SpanList<'_> {
    type Value = Vec<ValidSpan<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of spans")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            if out.len() == self.max_spans {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    let e = DecodeError::too_many_spans(self.max_spans);
                    let msg = e.to_string();
                    *self.failure.borrow_mut() = Some(e);
                    return Err(de::Error::custom(msg));
                }
                return Ok(out);
            }
            let Some(wire) = seq.next_element::<WireSpan<'de>>()? else {
                return Ok(out);
            };
            match span_from_wire(wire) {
                Ok(span) => out.push(span),
                Err(message) => {
                    let e = DecodeError::Span {
                        index: out.len(),
                        message,
                    };
                    let msg = e.to_string();
                    *self.failure.borrow_mut() = Some(e);
                    return Err(de::Error::custom(msg));
                }
            }
        }
    }
}

/// How many elements a JSON list holds, counting at most `cap` of them
/// (without building them).
pub fn count_json(body: &[u8], cap: usize) -> usize {
    struct Count(usize);
    impl<'de> Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            // Past the cap the rest is skipped, not counted (serde_json wants the list read
            // to its end).
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n = (n + 1).min(self.0);
            }
            Ok(n)
        }
    }
    serde_json::Deserializer::from_slice(body)
        .deserialize_seq(Count(cap))
        .unwrap_or(0)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// proto3 (zipkin.proto), decoded with prost; message types written by hand
// from the published definition, so no protoc or build script is needed.

/// `zipkin.proto3.ListOfSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<ProtoSpan>,
}

/// `zipkin.proto3.Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    /// 0 unspecified, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER.
    #[prost(int32, tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(fixed64, tag = "6")]
    pub timestamp: u64,
    #[prost(uint64, tag = "7")]
    pub duration: u64,
    #[prost(message, optional, tag = "8")]
    pub local_endpoint: Option<ProtoEndpoint>,
    #[prost(message, optional, tag = "9")]
    pub remote_endpoint: Option<ProtoEndpoint>,
    #[prost(message, repeated, tag = "10")]
    pub annotations: Vec<ProtoAnnotation>,
    #[prost(map = "string, string", tag = "11")]
    pub tags: std::collections::HashMap<String, String>,
    #[prost(bool, tag = "12")]
    pub debug: bool,
    #[prost(bool, tag = "13")]
    pub shared: bool,
}

/// `zipkin.proto3.Endpoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoEndpoint {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub ipv4: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub port: i32,
}

/// `zipkin.proto3.Annotation`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAnnotation {
    #[prost(fixed64, tag = "1")]
    pub timestamp: u64,
    #[prost(string, tag = "2")]
    pub value: String,
}

fn endpoint_from_proto(p: ProtoEndpoint) -> Result<Option<ValidEndpoint<'static>>, String> {
    let mut ep = ValidEndpoint {
        service_name: lower(Cow::Owned(p.service_name)),
        ipv4: None,
        ipv6: None,
        port: check_port(i64::from(p.port))?,
    };
    parse_ip_bytes(&p.ipv4, &mut ep);
    parse_ip_bytes(&p.ipv6, &mut ep);
    Ok(non_empty(ep))
}

fn span_from_proto(p: ProtoSpan) -> Result<ValidSpan<'static>, String> {
    if p.trace_id.is_empty() {
        return Err("Missing : traceId".into());
    }
    if p.id.is_empty() {
        return Err("Missing : id".into());
    }
    let trace_id = parse_trace_id(&hex_of_bytes(&p.trace_id))?;
    let id = parse_span_id(&hex_of_bytes(&p.id))?;
    let parent_id = if p.parent_id.is_empty() {
        0
    } else {
        parse_parent_id(&hex_of_bytes(&p.parent_id))?
    };
    // Zipkin ignores kinds it does not know in the binary form.
    let kind = match p.kind {
        1 => Some(Kind::Client),
        2 => Some(Kind::Server),
        3 => Some(Kind::Producer),
        4 => Some(Kind::Consumer),
        _ => None,
    };
    let timestamp = check_timestamp("timestamp", i64::try_from(p.timestamp).unwrap_or(-1))?;
    let duration = i64::try_from(p.duration)
        .map(|d| d.max(0) as u64)
        .unwrap_or(0);
    let mut annotations = Vec::with_capacity(p.annotations.len());
    for a in p.annotations {
        let ts = i64::try_from(a.timestamp).unwrap_or(i64::MAX);
        if ts > 0 {
            check_timestamp("annotation timestamp", ts)?;
        }
        annotations.push((ts, Cow::Owned(a.value)));
    }
    let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> = p
        .tags
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
        .collect();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(finish(ValidSpan {
        trace_id,
        parent_id,
        id,
        kind,
        name: lower(Cow::Owned(p.name)),
        timestamp,
        duration,
        local_endpoint: p
            .local_endpoint
            .map(endpoint_from_proto)
            .transpose()?
            .flatten(),
        remote_endpoint: p
            .remote_endpoint
            .map(endpoint_from_proto)
            .transpose()?
            .flatten(),
        annotations,
        tags,
        debug: p.debug,
        shared: p.shared,
    }))
}

/// What [`scan_proto`] found: fields counted without decoding them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProtoCounts {
    pub spans: usize,
    pub entries: usize,
}

fn proto_malformed(e: impl fmt::Display) -> DecodeError {
    DecodeError::Format(format!("Malformed reading List<Span> from proto3: {e}"))
}

/// Walks the fields of a message, calling `each(tag, payload)` for every
/// length-delimited one and skipping the rest; allocates nothing.
fn walk_proto(
    mut buf: &[u8],
    mut each: impl FnMut(u32, &[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(proto_malformed)?;
        if wire_type == WireType::LengthDelimited {
            let len = decode_varint(&mut buf).map_err(proto_malformed)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= buf.len())
                .ok_or_else(|| proto_malformed("buffer underflow"))?;
            let (payload, rest) = buf.split_at(len);
            each(tag, payload)?;
            buf = rest;
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())
                .map_err(proto_malformed)?;
        }
    }
    Ok(())
}

/// Counts the spans of a proto3 `ListOfSpans` and the tags and annotations
/// of each, refusing the message as soon as one of the [`Limits`] is
/// passed: nothing is built until the message is known to fit.
pub fn scan_proto(body: &[u8], limits: Limits) -> Result<ProtoCounts, DecodeError> {
    let mut counts = ProtoCounts::default();
    walk_proto(body, |tag, span| {
        if tag != 1 {
            return Ok(());
        }
        counts.spans += 1;
        if counts.spans > limits.max_spans {
            return Err(DecodeError::too_many_spans(limits.max_spans));
        }
        let (mut tags, mut annotations) = (0usize, 0usize);
        walk_proto(span, |tag, _| {
            let (n, limit, what, var) = match tag {
                10 => (
                    &mut annotations,
                    limits.max_span_annotations,
                    "annotations",
                    "MAX_SPAN_ANNOTATIONS",
                ),
                11 => (&mut tags, limits.max_span_tags, "tags", "MAX_SPAN_TAGS"),
                _ => return Ok(()),
            };
            *n += 1;
            counts.entries += 1;
            if *n > limit {
                Err(DecodeError::TooLarge(format!(
                    "a span has more than {limit} {what} ({var})"
                )))
            } else if counts.entries > limits.max_entries {
                Err(DecodeError::TooLarge(entries_message(limits.max_entries)))
            } else {
                Ok(())
            }
        })
    })?;
    Ok(counts)
}

/// Decodes a proto3 `ListOfSpans` within [`Limits`]. An empty body is an
/// empty list.
pub fn decode_proto(body: &[u8], limits: Limits) -> Result<Vec<ValidSpan<'static>>, DecodeError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    scan_proto(body, limits)?;
    let list = <ProtoListOfSpans as prost::Message>::decode(body).map_err(|e| {
        DecodeError::Format(format!("Malformed reading List<Span> from proto3: {e}"))
    })?;
    list.spans
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            span_from_proto(p).map_err(|message| DecodeError::Span { index, message })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<ValidSpan<'_>, DecodeError> {
        decode_json(json.as_bytes(), Limits::default()).map(|mut v| v.remove(0))
    }

    /// Ids are normalised like Zipkin: padding, 128-bit ids with a zero upper half shortened, zero parent dropped.
    #[test]
    fn normalises_ids() {
        let s = one(r#"[{"traceId":"00000000000000001","id":"a","parentId":"0000000000000000"}]"#)
            .unwrap();
        assert_eq!(s.trace_id, TraceId { high: 0, low: 1 });
        assert_eq!(s.id, 0xa);
        assert_eq!(s.parent_id, 0);
        let s = one(r#"[{"traceId":"0000000000000000463ac35c9f6413ad","id":"1"}]"#).unwrap();
        assert!(!s.trace_id.is_128());
        let s = one(r#"[{"traceId":"48485a3953bb6124463ac35c9f6413ad","id":"1","parentId":"1"}]"#)
            .unwrap();
        assert_eq!(s.trace_id.to_hex(), "48485a3953bb6124463ac35c9f6413ad");
        assert_eq!(s.parent_id, 0, "a span is not its own parent");
    }

    /// Bad ids, kinds, tags, annotations and ports are rejected with Zipkin's messages.
    #[test]
    fn rejects_like_zipkin() {
        let cases = [
            (
                r#"[{"traceId":"48485A3953BB6124","id":"1"}]"#,
                "48485A3953BB6124 should be lower-hex encoded with no prefix",
            ),
            (r#"[{"id":"1"}]"#, "Missing : traceId"),
            (r#"[{"traceId":"1"}]"#, "Missing : id"),
            (r#"[{"traceId":"0","id":"1"}]"#, "traceId is all zeros"),
            (r#"[{"traceId":"1","id":"0000"}]"#, "id is all zeros"),
            (
                r#"[{"traceId":"1","id":"12345678901234567"}]"#,
                "id.length > 16",
            ),
            (
                r#"[{"traceId":"1","id":"1","parentId":""}]"#,
                "parentId is empty",
            ),
            (r#"[{"traceId":"1","id":"1","kind":"client"}]"#, "kind"),
            (
                r#"[{"traceId":"1","id":"1","tags":{"a":null}}]"#,
                "No value at tags.a",
            ),
            (
                r#"[{"traceId":"1","id":"1","annotations":[{"value":"x"}]}]"#,
                "Incomplete annotation",
            ),
            (
                r#"[{"traceId":"1","id":"1","localEndpoint":{"port":70000}}]"#,
                "invalid port 70000",
            ),
            (
                r#"[{"traceId":"1","id":"1","timestamp":1700000000000000000}]"#,
                "epoch microseconds",
            ),
        ];
        for (json, msg) in cases {
            let err = decode_json(json.as_bytes(), Limits::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(msg), "{json}: {err}");
        }
        assert!(matches!(
            decode_json(b"{}", Limits::default()).unwrap_err(),
            DecodeError::Format(_)
        ));
        assert!(
            decode_json(
                b"[{\"traceId\":\"1\",\"id\":\"1\",\"binaryAnnotations\":[]}]",
                Limits::default()
            )
            .unwrap_err()
            .to_string()
            .contains("JSON_V1")
        );
    }

    /// Names are lower-cased, nulls and unknown fields ignored, numbers accepted as strings.
    #[test]
    fn lenient_where_zipkin_is() {
        let s = one(
            r#"[{"traceId":"1","id":"2","name":"GET /Api","kind":null,"extra":{"a":[1]},
                "timestamp":"1556604172355737","duration":-5,
                "localEndpoint":{"serviceName":"Frontend","ipv4":"not an ip","port":0},
                "remoteEndpoint":{"ipv6":"::ffff:192.168.1.2"},
                "tags":{"http.status_code":200,"b":"x"},"debug":false,"shared":true}]"#,
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("get /api"));
        assert_eq!(s.timestamp, 1556604172355737);
        assert_eq!(s.duration, 0);
        let le = s.local_endpoint.unwrap();
        assert_eq!(le.service_name.as_deref(), Some("frontend"));
        assert_eq!(le.ipv4, None);
        assert_eq!(
            s.remote_endpoint.unwrap().ipv4,
            Some(Ipv4Addr::new(192, 168, 1, 2))
        );
        assert_eq!(s.tags[0].1, "200");
        assert!(!s.debug);
        assert!(s.shared);
        assert!(decode_json(b"  ", Limits::default()).unwrap().is_empty());
        assert!(decode_json(b"[]", Limits::default()).unwrap().is_empty());
        let s = one(r#"[{"traceId":"1","id":"2","localEndpoint":{}}]"#).unwrap();
        assert!(s.local_endpoint.is_none(), "an empty endpoint is absent");
    }

    /// The protobuf form decodes to the same span as the JSON form.
    #[test]
    fn proto_matches_json() {
        let proto = ProtoListOfSpans {
            spans: vec![ProtoSpan {
                trace_id: vec![
                    0x48, 0x48, 0x5a, 0x39, 0x53, 0xbb, 0x61, 0x24, 0x46, 0x3a, 0xc3, 0x5c, 0x9f,
                    0x64, 0x13, 0xad,
                ],
                parent_id: vec![0; 8],
                id: vec![0, 0, 0, 0, 0, 0, 0, 2],
                kind: 2,
                name: "GET".into(),
                timestamp: 1556604172355737,
                duration: 10,
                local_endpoint: Some(ProtoEndpoint {
                    service_name: "Backend".into(),
                    ipv4: vec![10, 0, 0, 1],
                    ipv6: vec![],
                    port: 8080,
                }),
                remote_endpoint: None,
                annotations: vec![ProtoAnnotation {
                    timestamp: 1556604172355738,
                    value: "ws".into(),
                }],
                tags: [("k".to_string(), "v".to_string())].into_iter().collect(),
                debug: false,
                shared: true,
            }],
        };
        let bytes = prost::Message::encode_to_vec(&proto);
        let from_proto = decode_proto(&bytes, Limits::default()).unwrap().remove(0);
        let json = r#"[{"traceId":"48485a3953bb6124463ac35c9f6413ad","parentId":"0000000000000000","id":"0000000000000002","kind":"SERVER","name":"GET","timestamp":1556604172355737,"duration":10,"localEndpoint":{"serviceName":"Backend","ipv4":"10.0.0.1","port":8080},"annotations":[{"timestamp":1556604172355738,"value":"ws"}],"tags":{"k":"v"},"shared":true}]"#;
        let from_json = one(json).unwrap();
        assert_eq!(from_proto, from_json);
        assert!(decode_proto(b"hello", Limits::default()).is_err());
    }

    fn small() -> Limits {
        Limits {
            max_spans: 3,
            max_span_tags: 2,
            max_span_annotations: 2,
            max_entries: 5,
        }
    }

    fn span_json(i: usize, tags: usize, annotations: usize) -> String {
        let tags: Vec<String> = (0..tags).map(|t| format!(r#""k{t}":"v""#)).collect();
        let anns: Vec<String> = (0..annotations)
            .map(|a| format!(r#"{{"timestamp":{},"value":"a"}}"#, 1 + a))
            .collect();
        format!(
            r#"{{"traceId":"1","id":"{:x}","tags":{{{}}},"annotations":[{}]}}"#,
            i + 1,
            tags.join(","),
            anns.join(",")
        )
    }

    fn list_json(spans: &[String]) -> Vec<u8> {
        format!("[{}]", spans.join(",")).into_bytes()
    }

    /// Three million `{}` (9 MB) are refused at the first element, not built.
    #[test]
    fn millions_of_empty_objects_stop_at_the_first() {
        let mut body = Vec::with_capacity(9_000_002);
        body.push(b'[');
        for i in 0..3_000_000 {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{}");
        }
        body.push(b']');
        let err = decode_json(&body, Limits::default()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Span {
                index: 0,
                message: "Missing : traceId".into()
            }
        );
    }

    /// A list one span longer than the limit is TooLarge; at the limit it decodes.
    #[test]
    fn span_count_limit() {
        let three: Vec<String> = (0..3).map(|i| span_json(i, 0, 0)).collect();
        assert_eq!(decode_json(&list_json(&three), small()).unwrap().len(), 3);
        let four: Vec<String> = (0..4).map(|i| span_json(i, 0, 0)).collect();
        let err = decode_json(&list_json(&four), small()).unwrap_err();
        assert!(
            matches!(&err, DecodeError::TooLarge(m) if m.contains("more than 3 spans")),
            "{err:?}"
        );
        // Also when the extra elements are not spans at all.
        let mut junk = three.clone();
        junk.push("{}".into());
        assert!(matches!(
            decode_json(&list_json(&junk), small()),
            Err(DecodeError::TooLarge(_))
        ));
    }

    /// Tags and annotations are bounded per span and per message while they are read.
    #[test]
    fn tag_and_annotation_limits() {
        let ok = list_json(&[span_json(0, 2, 2)]);
        assert_eq!(decode_json(&ok, small()).unwrap()[0].tags.len(), 2);
        let cases = [
            (vec![span_json(0, 3, 0)], "more than 2 tags (MAX_SPAN_TAGS)"),
            (
                vec![span_json(0, 0, 3)],
                "more than 2 annotations (MAX_SPAN_ANNOTATIONS)",
            ),
            (
                vec![span_json(0, 2, 2), span_json(1, 2, 0)],
                "more than 5 tags and annotations",
            ),
        ];
        for (spans, msg) in cases {
            let err = decode_json(&list_json(&spans), small()).unwrap_err();
            assert!(
                matches!(&err, DecodeError::TooLarge(m) if m.contains(msg)),
                "{msg}: {err:?}"
            );
        }
        // The budget belongs to one decode: the next one starts afresh.
        assert!(decode_json(&ok, small()).is_ok());
        // Outside a decode nothing is counted (no budget is left installed).
        BUDGET.with(|b| assert!(b.borrow().is_none()));
    }

    fn proto_span(i: u8, tags: usize, annotations: usize) -> ProtoSpan {
        ProtoSpan {
            trace_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            id: vec![0, 0, 0, 0, 0, 0, 0, i + 1],
            tags: (0..tags).map(|t| (format!("k{t}"), "v".into())).collect(),
            annotations: (0..annotations)
                .map(|a| ProtoAnnotation {
                    timestamp: 1 + a as u64,
                    value: "a".into(),
                })
                .collect(),
            ..ProtoSpan::default()
        }
    }

    fn proto_bytes(spans: Vec<ProtoSpan>) -> Vec<u8> {
        prost::Message::encode_to_vec(&ProtoListOfSpans { spans })
    }

    /// The protobuf form is counted before it is decoded, with the same limits.
    #[test]
    fn proto_limits() {
        let ok = proto_bytes((0..3).map(|i| proto_span(i, 2, 2)).take(1).collect());
        assert_eq!(decode_proto(&ok, small()).unwrap().len(), 1);
        assert_eq!(
            scan_proto(&ok, small()).unwrap(),
            ProtoCounts {
                spans: 1,
                entries: 4
            }
        );
        let cases = [
            (
                proto_bytes((0..4).map(|i| proto_span(i, 0, 0)).collect()),
                "more than 3 spans",
            ),
            (proto_bytes(vec![proto_span(0, 3, 0)]), "more than 2 tags"),
            (
                proto_bytes(vec![proto_span(0, 0, 3)]),
                "more than 2 annotations",
            ),
            (
                proto_bytes(vec![proto_span(0, 2, 2), proto_span(1, 2, 0)]),
                "more than 5 tags and annotations",
            ),
        ];
        for (body, msg) in cases {
            let err = decode_proto(&body, small()).unwrap_err();
            assert!(
                matches!(&err, DecodeError::TooLarge(m) if m.contains(msg)),
                "{msg}: {err:?}"
            );
        }
        // Three million empty spans (field 1, length 0): refused, none built.
        let hostile = [0x0a_u8, 0x00].repeat(3_000_000);
        assert!(matches!(
            decode_proto(&hostile, Limits::default()),
            Err(DecodeError::TooLarge(_))
        ));
        // A length running past the end is malformed, not a panic.
        assert!(matches!(
            decode_proto(&[0x0a, 0x05, 0x01], Limits::default()),
            Err(DecodeError::Format(_))
        ));
    }

    /// The element count used for the dropped-spans metric stops at its cap.
    #[test]
    fn count_json_is_capped() {
        assert_eq!(count_json(b"[{},{},{}]", 10), 3);
        assert_eq!(count_json(b"[{},{},{}]", 2), 2);
        assert_eq!(count_json(b"{}", 2), 0);
    }
}
