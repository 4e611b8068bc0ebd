//! The Zipkin v2 span model as the collector stores and serves it.
//!
//! Spans are kept compact because the store holds hundreds of thousands of
//! them: ids are integers (printed as Zipkin's lower-hex strings on the way
//! out), and every string a span shares with others (names, service names,
//! tag keys and values, annotation values, whole endpoints) is an interned
//! `Arc` (see `store.rs`). Absent numbers are 0, as in Zipkin's own model.
//!
//! The JSON writer reproduces Zipkin's `V2SpanWriter` byte for byte: field
//! order, omitted absent fields, tags sorted by key, annotations sorted and
//! de-duplicated, and Zipkin's string escaping (which also escapes U+2028 and
//! U+2029).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A trace id: 64 bits (`high == 0`) or 128 bits.
///
/// Zipkin normalises a 32-character id whose upper 16 characters are zeros
/// to its 16-character form, so `high == 0` is exactly "64-bit id".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId {
    pub high: u64,
    pub low: u64,
}

impl TraceId {
    /// Whether Zipkin prints this id with 32 characters.
    pub fn is_128(&self) -> bool {
        self.high != 0
    }

    /// The id as Zipkin prints it: 16 or 32 lower-hex characters.
    pub fn to_hex(&self) -> String {
        if self.is_128() {
            format!("{:016x}{:016x}", self.high, self.low)
        } else {
            format!("{:016x}", self.low)
        }
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_128() {
            write!(f, "{:016x}{:016x}", self.high, self.low)
        } else {
            write!(f, "{:016x}", self.low)
        }
    }
}

/// The lower-hex form of a span id.
pub fn span_id_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// What a span represents on the wire (absent for local spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

impl Kind {
    /// Zipkin's name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Client => "CLIENT",
            Kind::Server => "SERVER",
            Kind::Producer => "PRODUCER",
            Kind::Consumer => "CONSUMER",
        }
    }

    /// Parses Zipkin's (case-sensitive) kind names.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "CLIENT" => Some(Kind::Client),
            "SERVER" => Some(Kind::Server),
            "PRODUCER" => Some(Kind::Producer),
            "CONSUMER" => Some(Kind::Consumer),
            _ => None,
        }
    }
}

/// The network context of a node in the service graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Endpoint {
    /// Lower-case service name (Zipkin lower-cases it on the way in).
    pub service_name: Option<Arc<str>>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// 0 when absent.
    pub port: u16,
}

impl Endpoint {
    /// Whether no field is set (Zipkin reads such an endpoint as absent).
    pub fn is_empty(&self) -> bool {
        self.service_name.is_none() && self.ipv4.is_none() && self.ipv6.is_none() && self.port == 0
    }

    /// Fills absent fields from `other` (Zipkin's `Endpoint.Builder.merge`).
    pub fn fill_from(&mut self, other: &Endpoint) {
        if self.service_name.is_none() {
            self.service_name = other.service_name.clone();
        }
        if self.ipv4.is_none() {
            self.ipv4 = other.ipv4;
        }
        if self.ipv6.is_none() {
            self.ipv6 = other.ipv6;
        }
        if self.port == 0 {
            self.port = other.port;
        }
    }

    /// The IPv4 address as Zipkin prints it.
    pub fn ipv4_string(&self) -> Option<String> {
        self.ipv4.map(|a| a.to_string())
    }

    /// The IPv6 address as Zipkin prints it (its own zero compression).
    pub fn ipv6_string(&self) -> Option<String> {
        self.ipv6.map(|a| write_ipv6(&a.octets()))
    }
}

/// An event that explains latency, with its time in epoch microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Annotation {
    pub timestamp: i64,
    pub value: Arc<str>,
}

/// One span, normalised as Zipkin normalises it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    pub trace_id: TraceId,
    /// 0 when this is a root span.
    pub parent_id: u64,
    /// Never 0.
    pub id: u64,
    pub kind: Option<Kind>,
    /// Lower-case span name.
    pub name: Option<Arc<str>>,
    /// Epoch microseconds of the start; 0 when absent.
    pub timestamp: u64,
    /// Microseconds; 0 when absent.
    pub duration: u64,
    pub local_endpoint: Option<Arc<Endpoint>>,
    pub remote_endpoint: Option<Arc<Endpoint>>,
    /// Sorted by (timestamp, value), without duplicates.
    pub annotations: Box<[Annotation]>,
    /// Sorted by key, keys unique.
    pub tags: Tags,
    pub debug: bool,
    pub shared: bool,
}

impl Span {
    pub fn local_service_name(&self) -> Option<&str> {
        self.local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
    }

    pub fn remote_service_name(&self) -> Option<&str> {
        self.remote_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
    }

    /// The value of a tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key)
    }

    /// Whether the span carries Zipkin's `error` tag.
    pub fn is_error(&self) -> bool {
        self.tag("error").is_some()
    }

    /// Zipkin's `Span.Builder.merge`: fills absent fields from `source`,
    /// adds its annotations, lets its tags win, ORs the flags. Call
    /// [`Span::normalise`] afterwards.
    pub fn merge_from(&mut self, source: &Span) {
        if self.parent_id == 0 {
            self.parent_id = source.parent_id;
        }
        if self.kind.is_none() {
            self.kind = source.kind;
        }
        if self.name.is_none() {
            self.name = source.name.clone();
        }
        if self.timestamp == 0 {
            self.timestamp = source.timestamp;
        }
        if self.duration == 0 {
            self.duration = source.duration;
        }
        self.local_endpoint = merge_endpoint(self.local_endpoint.take(), &source.local_endpoint);
        self.remote_endpoint = merge_endpoint(self.remote_endpoint.take(), &source.remote_endpoint);
        if !source.annotations.is_empty() {
            let mut all = std::mem::take(&mut self.annotations).into_vec();
            all.extend(source.annotations.iter().cloned());
            self.annotations = all.into_boxed_slice();
        }
        if !source.tags.is_empty() {
            // Appended after ours so that the source's value wins, like TreeMap.putAll.
            let all = self
                .tags
                .iter()
                .chain(source.tags.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.tags = Tags::from_pairs(all);
        }
        self.debug |= source.debug;
        self.shared |= source.shared;
    }

    /// What Zipkin's `Span.Builder.build` enforces: annotations sorted and
    /// unique, no self-parenting, no `shared` flag on a client span (tags
    /// are kept sorted by [`Tags`] itself).
    pub fn normalise(&mut self) {
        if !self.annotations.is_sorted() || has_adjacent_duplicates(&self.annotations) {
            let mut a = std::mem::take(&mut self.annotations).into_vec();
            a.sort();
            a.dedup();
            self.annotations = a.into_boxed_slice();
        }
        if self.parent_id == self.id {
            self.parent_id = 0;
        }
        if self.shared && self.kind == Some(Kind::Client) {
            self.shared = false;
        }
    }
}

/// A span's tags, sorted by key with unique keys.
///
/// Keys and values are kept apart so that the key list can be shared: spans
/// written by one piece of code carry the same keys, and the store interns
/// each distinct key list once. A span then pays one pointer per value
/// instead of two per tag, which is most of its size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags {
    keys: Arc<[Arc<str>]>,
    values: Box<[Arc<str>]>,
}

impl Tags {
    /// Tags from pairs in any order; for a repeated key the last value wins.
    pub fn from_pairs(mut pairs: Vec<(Arc<str>, Arc<str>)>) -> Tags {
        if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
            pairs.sort_by(|a, b| a.0.cmp(&b.0)); // stable: input order kept per key
            let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                match out.last_mut() {
                    Some(last) if last.0 == k => last.1 = v,
                    _ => out.push((k, v)),
                }
            }
            pairs = out;
        }
        let (keys, values): (Vec<Arc<str>>, Vec<Arc<str>>) = pairs.into_iter().unzip();
        Tags {
            keys: keys.into(),
            values: values.into_boxed_slice(),
        }
    }

    /// The key list, for interning.
    pub fn keys(&self) -> &Arc<[Arc<str>]> {
        &self.keys
    }

    /// Replaces the key list by an equal (interned) one.
    pub fn with_keys(mut self, keys: Arc<[Arc<str>]>) -> Tags {
        debug_assert_eq!(*keys, *self.keys);
        if *keys == *self.keys {
            self.keys = keys;
        }
        self
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// (key, value) pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.keys.iter().zip(self.values.iter())
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .binary_search_by(|k| (**k).cmp(key))
            .ok()
            .and_then(|i| self.values.get(i))
            .map(|v| &**v)
    }
}

fn has_adjacent_duplicates<T: PartialEq>(v: &[T]) -> bool {
    v.windows(2).any(|w| w[0] == w[1])
}

fn merge_endpoint(
    mine: Option<Arc<Endpoint>>,
    theirs: &Option<Arc<Endpoint>>,
) -> Option<Arc<Endpoint>> {
    match (mine, theirs) {
        (None, t) => t.clone(),
        (Some(m), None) => Some(m),
        (Some(m), Some(t)) => {
            let mut merged = (*m).clone();
            merged.fill_from(t);
            if merged == *m {
                Some(m)
            } else {
                Some(Arc::new(merged))
            }
        }
    }
}

/// A dependency link between two services (`/api/v2/dependencies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyLink {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    pub error_count: u64,
}

// ---------------------------------------------------------------------------
// JSON output, byte-compatible with Zipkin's writers.

/// Appends `s` as a JSON string body (no quotes) escaped like Zipkin's
/// `JsonEscaper`.
pub fn json_escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let replacement: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xe2 if i + 2 < bytes.len()
                && bytes[i + 1] == 0x80
                && (bytes[i + 2] == 0xa8 || bytes[i + 2] == 0xa9) =>
            {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        match replacement {
            Some(r) => out.extend_from_slice(r),
            None => {
                let _ = std::io::Write::write_fmt(out, format_args!("\\u{b:04x}"));
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut n = v;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

fn push_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

fn push_trace_id(out: &mut Vec<u8>, id: TraceId) {
    if id.is_128() {
        push_hex16(out, id.high);
    }
    push_hex16(out, id.low);
}

/// Writes an endpoint like Zipkin's `V2SpanWriter.writeEndpoint`.
pub fn write_endpoint_json(out: &mut Vec<u8>, e: &Endpoint) {
    out.push(b'{');
    let mut wrote = false;
    if let Some(name) = &e.service_name {
        out.extend_from_slice(b"\"serviceName\":\"");
        json_escape_into(out, name);
        out.push(b'"');
        wrote = true;
    }
    if let Some(ip) = e.ipv4_string() {
        if wrote {
            out.push(b',');
        }
        out.extend_from_slice(b"\"ipv4\":\"");
        out.extend_from_slice(ip.as_bytes());
        out.push(b'"');
        wrote = true;
    }
    if let Some(ip) = e.ipv6_string() {
        if wrote {
            out.push(b',');
        }
        out.extend_from_slice(b"\"ipv6\":\"");
        out.extend_from_slice(ip.as_bytes());
        out.push(b'"');
        wrote = true;
    }
    if e.port != 0 {
        if wrote {
            out.push(b',');
        }
        out.extend_from_slice(b"\"port\":");
        push_u64(out, u64::from(e.port));
    }
    out.push(b'}');
}

/// Writes one span like Zipkin's `SpanBytesEncoder.JSON_V2`.
pub fn write_span_json(out: &mut Vec<u8>, s: &Span) {
    out.extend_from_slice(b"{\"traceId\":\"");
    push_trace_id(out, s.trace_id);
    out.push(b'"');
    if s.parent_id != 0 {
        out.extend_from_slice(b",\"parentId\":\"");
        push_hex16(out, s.parent_id);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"id\":\"");
    push_hex16(out, s.id);
    out.push(b'"');
    if let Some(kind) = s.kind {
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(name) = &s.name {
        out.extend_from_slice(b",\"name\":\"");
        json_escape_into(out, name);
        out.push(b'"');
    }
    if s.timestamp != 0 {
        out.extend_from_slice(b",\"timestamp\":");
        push_u64(out, s.timestamp);
    }
    if s.duration != 0 {
        out.extend_from_slice(b",\"duration\":");
        push_u64(out, s.duration);
    }
    if let Some(e) = &s.local_endpoint {
        out.extend_from_slice(b",\"localEndpoint\":");
        write_endpoint_json(out, e);
    }
    if let Some(e) = &s.remote_endpoint {
        out.extend_from_slice(b",\"remoteEndpoint\":");
        write_endpoint_json(out, e);
    }
    if !s.annotations.is_empty() {
        out.extend_from_slice(b",\"annotations\":[");
        for (i, a) in s.annotations.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"timestamp\":");
            push_i64(out, a.timestamp);
            out.extend_from_slice(b",\"value\":\"");
            json_escape_into(out, &a.value);
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
    }
    if !s.tags.is_empty() {
        out.extend_from_slice(b",\"tags\":{");
        for (i, (k, v)) in s.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            json_escape_into(out, k);
            out.extend_from_slice(b"\":\"");
            json_escape_into(out, v);
            out.push(b'"');
        }
        out.push(b'}');
    }
    if s.debug {
        out.extend_from_slice(b",\"debug\":true");
    }
    if s.shared {
        out.extend_from_slice(b",\"shared\":true");
    }
    out.push(b'}');
}

/// Writes a list of spans (one trace, or any list) as a JSON array.
pub fn write_spans_json<S: std::ops::Deref<Target = Span>>(out: &mut Vec<u8>, spans: &[S]) {
    out.push(b'[');
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_span_json(out, s);
    }
    out.push(b']');
}

/// Writes a list of traces as a JSON array of arrays.
pub fn write_traces_json<S: std::ops::Deref<Target = Span>>(out: &mut Vec<u8>, traces: &[Vec<S>]) {
    out.push(b'[');
    for (i, t) in traces.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_spans_json(out, t);
    }
    out.push(b']');
}

/// Writes dependency links like Zipkin's `DependencyLinkBytesEncoder.JSON_V1`
/// (`errorCount` only when positive).
pub fn write_links_json(out: &mut Vec<u8>, links: &[DependencyLink]) {
    out.push(b'[');
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"parent\":\"");
        json_escape_into(out, &l.parent);
        out.extend_from_slice(b"\",\"child\":\"");
        json_escape_into(out, &l.child);
        out.extend_from_slice(b"\",\"callCount\":");
        push_u64(out, l.call_count);
        if l.error_count > 0 {
            out.extend_from_slice(b",\"errorCount\":");
            push_u64(out, l.error_count);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// Writes a sorted list of names as a JSON array of strings.
pub fn write_names_json<S: AsRef<str>>(out: &mut Vec<u8>, names: &[S]) {
    out.push(b'[');
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        json_escape_into(out, n.as_ref());
        out.push(b'"');
    }
    out.push(b']');
}

/// Formats IPv6 bytes exactly like Zipkin's `Endpoint.writeIpV6`, whose zero
/// compression differs from RFC 5952 in corner cases (a trailing run of zeros
/// is only compressed when there is no earlier run).
pub fn write_ipv6(ip: &[u8; 16]) -> String {
    let mut zc_index: isize = -1;
    let mut zc_len: isize = -1;
    let mut zero_index: isize = -1;
    let mut all_zeros = true;
    let mut i = 0usize;
    while i < 16 {
        if ip[i] == 0 && ip[i + 1] == 0 {
            if zero_index < 0 {
                zero_index = i as isize;
            }
            i += 2;
            continue;
        }
        all_zeros = false;
        if zero_index >= 0 {
            let zero_len = i as isize - zero_index;
            if zero_len > zc_len {
                zc_index = zero_index;
                zc_len = zero_len;
            }
            zero_index = -1;
        }
        i += 2;
    }
    if all_zeros {
        return "::".to_string();
    }
    if zc_index == -1 && zero_index != -1 {
        zc_index = zero_index;
        zc_len = 16 - zero_index;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(39);
    let mut i = 0usize;
    while i < 16 {
        if i as isize == zc_index {
            out.push(':');
            i += zc_len as usize;
            if i == 16 {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        let high = ip[i];
        let low = ip[i + 1];
        i += 2;
        let mut leading_zero;
        let v = HEX[(high >> 4) as usize] as char;
        leading_zero = v == '0';
        if !leading_zero {
            out.push(v);
        }
        let v = HEX[(high & 0xf) as usize] as char;
        leading_zero = leading_zero && v == '0';
        if !leading_zero {
            out.push(v);
        }
        let v = HEX[(low >> 4) as usize] as char;
        if !(leading_zero && v == '0') {
            out.push(v);
        }
        out.push(HEX[(low & 0xf) as usize] as char);
    }
    out
}

/// Formats microseconds for people: `850µs`, `12.345ms`, `1.204s`.
pub fn human_duration(micros: u64) -> String {
    let mut s = String::new();
    if micros < 1_000 {
        let _ = write!(s, "{micros}µs");
    } else if micros < 1_000_000 {
        let _ = write!(s, "{:.3}ms", micros as f64 / 1_000.0);
    } else {
        let _ = write!(s, "{:.3}s", micros as f64 / 1_000_000.0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            service_name: Some(name.into()),
            ipv4: Some(Ipv4Addr::new(192, 168, 99, 1)),
            ipv6: None,
            port: 3306,
        })
    }

    /// The JSON of a span is byte-identical to the example in Zipkin's API definition.
    #[test]
    fn writes_zipkin_api_example() {
        let span = Span {
            trace_id: TraceId {
                high: 0,
                low: 0x5af7183fb1d4cf5f,
            },
            parent_id: 0x6b221d5bc9e6496c,
            id: 0x352bff9a74ca9ad2,
            kind: Some(Kind::Server),
            name: Some("get /api".into()),
            timestamp: 1556604172355737,
            duration: 1431,
            local_endpoint: Some(ep("backend")),
            remote_endpoint: Some(Arc::new(Endpoint {
                service_name: None,
                ipv4: Some(Ipv4Addr::new(172, 19, 0, 2)),
                ipv6: None,
                port: 58648,
            })),
            annotations: Box::new([]),
            tags: Tags::from_pairs(vec![
                ("http.method".into(), "GET".into()),
                ("http.path".into(), "/api".into()),
            ]),
            debug: false,
            shared: false,
        };
        let mut out = Vec::new();
        write_span_json(&mut out, &span);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","id":"352bff9a74ca9ad2","kind":"SERVER","name":"get /api","timestamp":1556604172355737,"duration":1431,"localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},"remoteEndpoint":{"ipv4":"172.19.0.2","port":58648},"tags":{"http.method":"GET","http.path":"/api"}}"#
        );
    }

    /// Zipkin's escaping: control characters, quotes, backslashes and the two JavaScript line separators.
    #[test]
    fn escapes_like_zipkin() {
        let mut out = Vec::new();
        json_escape_into(&mut out, "a\"b\\c\td\u{1}e\u{2028}f\u{2029}g€");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\\"b\\\\c\\td\\u0001e\\u2028f\\u2029g€"
        );
    }

    /// IPv6 zero compression follows Zipkin's writer, including its corner cases.
    #[test]
    fn ipv6_like_zipkin() {
        let p = |s: &str| write_ipv6(&s.parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(p("2001:db8::c001"), "2001:db8::c001");
        assert_eq!(p("::"), "::");
        assert_eq!(p("::1"), "::1");
        // Zipkin's writer keeps the first zero run when a later, longer one trails (its comment says otherwise).
        assert_eq!(p("2001:0:0:4::"), "2001::4:0:0:0:0");
        assert_eq!(p("2001:0:0:4:0000:0:0:8"), "2001:0:0:4::8");
        assert_eq!(p("2001:db8:0:1:1:1:1:1"), "2001:db8::1:1:1:1:1");
    }

    /// Merging fills absent fields, lets the source's tags win and normalises the result.
    #[test]
    fn merge_and_normalise() {
        let mut a = Span {
            id: 1,
            parent_id: 0,
            name: Some("get".into()),
            tags: Tags::from_pairs(vec![("a".into(), "1".into()), ("b".into(), "1".into())]),
            annotations: vec![Annotation {
                timestamp: 5,
                value: "x".into(),
            }]
            .into_boxed_slice(),
            ..Span::default()
        };
        let b = Span {
            id: 1,
            parent_id: 9,
            timestamp: 10,
            kind: Some(Kind::Client),
            shared: true,
            tags: Tags::from_pairs(vec![("b".into(), "2".into())]),
            annotations: vec![
                Annotation {
                    timestamp: 5,
                    value: "x".into(),
                },
                Annotation {
                    timestamp: 1,
                    value: "y".into(),
                },
            ]
            .into_boxed_slice(),
            ..Span::default()
        };
        a.merge_from(&b);
        a.normalise();
        assert_eq!(a.parent_id, 9);
        assert_eq!(a.timestamp, 10);
        assert_eq!(a.tag("b"), Some("2"));
        assert_eq!(a.tags.len(), 2);
        assert_eq!(a.annotations.len(), 2);
        assert_eq!(&*a.annotations[0].value, "y");
        assert!(!a.shared, "shared is removed from client spans");
    }
}
