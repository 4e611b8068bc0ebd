//! Log line formats that carry the trace and span ids.
//!
//! tracing-subscriber's formats print span *fields*, but the OpenTelemetry
//! ids live in the span's OpenTelemetry context, not in its fields. These
//! formats look the ids up for the span an event is written in and add
//! `trace_id` and `span_id` to the line, so every line of a request, at any
//! depth of nested spans, can be joined with its trace.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{DefaultFields, Format, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// The log layer for `format`, writing to stdout.
pub fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .fmt_fields(DefaultFields::new())
            .event_format(PrettyWithIds(Format::default().with_target(true)))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithIds)
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

impl<S, N> FormatEvent<S, N> for JsonWithIds
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
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
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
