//! Log line formats that carry the trace and span ids.
//!
//! tracing-subscriber's formats print span *fields*, but the OpenTelemetry
//! ids live in the span's OpenTelemetry context, not in its fields. These
//! formats look the ids up for the span an event is written in and add
//! `trace_id` and `span_id` to the line, so every line of a request, at any
//! depth of nested spans, can be joined with its trace.
//!
//! The JSON format keeps each span's fields with [`JsonSpanFields`] rather
//! than tracing-subscriber's `JsonFields`: the fields of every span are
//! formatted when the span is created, whether or not a line is ever
//! logged in it, and `JsonFields` builds a map and serialises it for each
//! span, then parses and re-serialises it on every `span.record` (each
//! request records its status). That was over a third of a service's
//! instructions per request at the default `info` level. The lines written
//! are the same (a test holds them to `JsonFields`' output).

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::output::Batched;
use crate::config::LogFormat;

/// The log layer for `format`, writing to `out`.
pub fn layer<S>(format: LogFormat, out: Batched) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .fmt_fields(DefaultFields::new())
            .event_format(PrettyWithIds(Format::default().with_target(true)))
            .with_writer(out)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonSpanFields)
            .event_format(JsonWithIds)
            .with_writer(out)
            .boxed(),
    }
}

/// The OpenTelemetry trace and span id of the span with `id`.
fn ids_of(id: &tracing::span::Id) -> Option<(String, String)> {
    tracing::dispatcher::get_default(|dispatch| {
        tracing_opentelemetry::get_otel_context(id, dispatch)
    })
    .and_then(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    })
}

/// The default human format with ` trace_id=.. span_id=..` appended.
struct PrettyWithIds(Format);

impl<S, N> FormatEvent<S, N> for PrettyWithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ctx
            .lookup_current()
            .map(|s| s.id())
            .and_then(|id| ids_of(&id));
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match ids {
            Some((t, s)) => writeln!(writer, "{line} trace_id={t} span_id={s}"),
            None => writeln!(writer, "{line}"),
        }
    }
}

/// One JSON object per line: timestamp, level, target, message, the
/// event's fields, the fields of the spans it is in (outer first, inner
/// ones win), the innermost span's name, and the trace/span ids.
struct JsonWithIds;

impl<S> FormatEvent<S, JsonSpanFields> for JsonWithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonSpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut obj = Map::new();
        obj.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        obj.insert("level".into(), event.metadata().level().as_str().into());
        obj.insert("target".into(), event.metadata().target().into());
        let mut span_id = None;
        if let Some(span) = ctx.lookup_current() {
            obj.insert("span".into(), span.name().into());
            span_id = Some(span.id());
            for s in span.scope().from_root() {
                let ext = s.extensions();
                if let Some(fields) = ext.get::<FormattedFields<JsonSpanFields>>()
                    && let Some(map) = JsonSpanFields::parse(fields)
                {
                    obj.extend(map);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut obj));
        if let Some((t, s)) = span_id.and_then(|id| ids_of(&id)) {
            obj.insert("trace_id".into(), t.into());
            obj.insert("span_id".into(), s.into());
        }
        writeln!(writer, "{}", Value::Object(obj))
    }
}

/// A span's fields for the JSON format, kept as the members of a JSON
/// object without its braces (`"a":1,"b":"x"`): creating a span writes
/// them once, `span.record` appends (a later value of a name wins when the
/// line is written), and nothing is parsed until a line is logged in the
/// span. Values are those of tracing-subscriber's `JsonFields` (numbers,
/// booleans and strings as such, `Debug`/`Display` values as strings,
/// `r#` prefixes dropped, `log.*` debug fields skipped), and the fields
/// reach the line sorted by name, as `JsonFields` sorts them.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl JsonSpanFields {
    /// The fields as a map, a later value of a name replacing an earlier one.
    fn parse(fields: &str) -> Option<BTreeMap<String, Value>> {
        if fields.is_empty() {
            return None;
        }
        let mut text = String::with_capacity(fields.len() + 2);
        text.push('{');
        text.push_str(fields);
        text.push('}');
        serde_json::from_str(&text).ok()
    }
}

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut members = Members {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut members = Members {
            out: &mut current.fields,
            first,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }
}

/// Writes visited fields as JSON object members.
struct Members<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> Members<'_, W> {
    fn member(&mut self, name: &str, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.out.write_char(',')?;
            }
            self.first = false;
            write_json_str(self.out, format_args!("{name}"))?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

/// `text` as a JSON string (quoted, escaped), written without an
/// intermediate `String`.
fn write_json_str(out: &mut impl fmt::Write, text: fmt::Arguments<'_>) -> fmt::Result {
    struct Escaped<'a, W: fmt::Write>(&'a mut W);
    impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let mut start = 0;
            for (i, b) in s.bytes().enumerate() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    self.0.write_str(&s[start..i])?;
                    match b {
                        b'"' => self.0.write_str("\\\"")?,
                        b'\\' => self.0.write_str("\\\\")?,
                        b'\n' => self.0.write_str("\\n")?,
                        b'\r' => self.0.write_str("\\r")?,
                        b'\t' => self.0.write_str("\\t")?,
                        _ => write!(self.0, "\\u{b:04x}")?,
                    }
                    start = i + 1;
                }
            }
            self.0.write_str(&s[start..])
        }
    }
    out.write_char('"')?;
    fmt::write(&mut Escaped(out), text)?;
    out.write_char('"')
}

impl<W: fmt::Write> Visit for Members<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // As JsonFields: `log.*` fields are log metadata already handled.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.member(name, |out| write_json_str(out, format_args!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field.name(), |out| {
            write_json_str(out, format_args!("{value}"))
        });
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field.name(), |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field.name(), |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field.name(), |out| write!(out, "{}", Value::from(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field.name(), |out| write!(out, "{value}"));
    }
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.member(field.name(), |out| write!(out, "{}", Value::from(value)));
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::JsonFields;
    use tracing_subscriber::layer::SubscriberExt;

    /// The JSON format as it was with tracing-subscriber's `JsonFields`:
    /// span fields parsed from each span's formatted object.
    struct Reference;

    impl<S, N> FormatEvent<S, N> for Reference
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let mut obj = Map::new();
            obj.insert("timestamp".into(), "".into());
            obj.insert("level".into(), event.metadata().level().as_str().into());
            obj.insert("target".into(), event.metadata().target().into());
            if let Some(span) = ctx.lookup_current() {
                obj.insert("span".into(), span.name().into());
                for s in span.scope().from_root() {
                    let ext = s.extensions();
                    if let Some(fields) = ext.get::<FormattedFields<N>>()
                        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                    {
                        obj.extend(map);
                    }
                }
            }
            event.record(&mut JsonVisitor(&mut obj));
            writeln!(writer, "{}", Value::Object(obj))
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| {
                    // Timestamps differ between the two runs: blank them.
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    v["timestamp"] = "".into();
                    v.to_string()
                })
                .collect()
        }
    }

    /// Spans, records and events of every field kind, nested.
    fn scenario() {
        let err = io::Error::other("boom \"quoted\"");
        let outer = tracing::info_span!(
            "http.request",
            otel.name = %"GET /x",
            http.route = %"/x",
            n = 3u64,
            neg = -2i64,
            ok = true,
            ratio = 0.5f64,
            nan = f64::NAN,
            s = "plain \"quoted\" \\ \n\t\u{1}",
            r#type = ?"raw",
            log.file = ?"skipped",
            status = tracing::field::Empty,
            e = tracing::field::Empty,
        );
        let _o = outer.enter();
        tracing::info!(x = 1, "before records");
        outer.record("status", 200u16);
        outer.record("n", 4u64);
        outer.record("e", &err as &(dyn std::error::Error + 'static));
        tracing::warn!(x = 2, "inside outer");
        let inner = tracing::info_span!("inner", n = %"shadow", big = 1u128 << 100, z = "é ü");
        let _i = inner.enter();
        tracing::error!(y = ?vec![1, 2], "inside inner");
        inner.record("z", "changed");
        tracing::error!("after inner record");
        drop(_i);
        let empty = tracing::info_span!("empty");
        let _e = empty.enter();
        tracing::info!("no fields");
    }

    /// The JSON lines written with [`JsonSpanFields`] are those written
    /// with tracing-subscriber's `JsonFields`: same span fields, values,
    /// overrides by later records and inner spans, and order.
    #[test]
    fn json_span_fields_match_json_fields() {
        let reference = Captured::default();
        let w = reference.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(Reference)
                .with_writer(move || w.clone()),
        );
        tracing::subscriber::with_default(subscriber, scenario);

        let ours = Captured::default();
        let w = ours.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonSpanFields)
                .event_format(JsonWithIds)
                .with_writer(move || w.clone()),
        );
        tracing::subscriber::with_default(subscriber, scenario);

        let (reference, ours) = (reference.lines(), ours.lines());
        assert_eq!(reference.len(), 5);
        assert_eq!(reference, ours);
    }
}
