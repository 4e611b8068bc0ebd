//! The status page at `/`, in the spirit of Eureka's dashboard: system
//! status, self-preservation, applications and every instance with its
//! status, lease age and last renewal. Server-rendered HTML that refreshes
//! itself with a meta tag; no JavaScript. Everything that came from a
//! client (names, ids, hosts, statuses) is escaped.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use kit::registry::model::{InstanceInfo, InstanceStatus};

use crate::AppState;

pub async fn status_page(State(s): State<AppState>) -> Html<String> {
    Html(render(&s))
}

/// `1h 2m`, `3m 4s`, `5s`, from milliseconds.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn status_class(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Up => "up",
        InstanceStatus::Down => "down",
        _ => "other",
    }
}

fn status_cell(i: &InstanceInfo) -> String {
    let mut out = format!(
        "<span class=\"{}\">{}</span>",
        status_class(i.status),
        text(i.status.as_str())
    );
    if i.overridden_status != InstanceStatus::Unknown {
        let _ = write!(
            out,
            " <small>(override {})</small>",
            text(i.overridden_status.as_str())
        );
    }
    out
}

/// The whole page.
pub fn render(s: &AppState) -> String {
    let now = s.registry.clock().now_millis();
    let apps = s.registry.applications();
    let stats = s.registry.stats();
    let pres = s.registry.preservation();
    let opts = s.registry.options();
    let mut h = String::with_capacity(8192 + stats.instances * 400);
    h.push_str(concat!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"5\">",
        "<title>discovery-server</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}",
        "table{border-collapse:collapse;margin-bottom:1.5em}",
        "th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left;vertical-align:top}",
        "th{background:#f0f0f0}.up{color:#16794a;font-weight:600}.down{color:#b3261e;font-weight:600}",
        ".other{color:#a15c00;font-weight:600}",
        ".alert{background:#fde2e1;border:1px solid #b3261e;color:#7a1510;padding:.8em;margin:1em 0;font-weight:600}",
        ".note{background:#fff4d6;border:1px solid #a15c00;padding:.8em;margin:1em 0}",
        "</style></head><body><h1>discovery-server</h1>"
    ));

    if pres.active {
        let _ = write!(
            h,
            "<div class=\"alert\">SELF-PRESERVATION MODE: renewals ({}) are below the threshold ({:.1}) \
             since {}. The registry's own network is more likely broken than most instances dead, \
             so expired instances are NOT being evicted and may be listed although they are gone.</div>",
            pres.last.map(|e| e.measured).unwrap_or(0),
            pres.last.map(|e| e.threshold).unwrap_or(0.0),
            text(&pres.since_ms.map(timestamp).unwrap_or_default())
        );
    } else if !opts.preservation.enabled {
        h.push_str("<div class=\"note\">Self-preservation is switched off: expired leases are always evicted.</div>");
    }

    h.push_str("<h2>System status</h2><table>");
    let last = pres.last;
    let rows: Vec<(&str, String)> = vec![
        ("Version", text(s.version).to_string()),
        ("Current time", timestamp(now)),
        ("Uptime", age(now.saturating_sub(s.registry.started_at()))),
        ("Registry version", stats.version.to_string()),
        ("Applications", stats.applications.to_string()),
        ("Instances", stats.instances.to_string()),
        (
            "Self-preservation",
            if pres.active {
                "ACTIVE (evictions stopped)".into()
            } else if opts.preservation.enabled {
                format!(
                    "inactive (engages below {:.0} % of expected renewals with at least {} instances)",
                    opts.preservation.threshold * 100.0,
                    opts.preservation.min_instances
                )
            } else {
                "disabled".into()
            },
        ),
        (
            "Renewals in the last window",
            last.map(|e| {
                format!(
                    "{} measured / {:.1} expected (threshold {:.1}, window {} s)",
                    e.measured,
                    e.expected,
                    e.threshold,
                    opts.renewal_window_ms / 1000
                )
            })
            .unwrap_or_else(|| "not evaluated yet".into()),
        ),
        (
            "Totals",
            format!(
                "{} registrations, {} renewals, {} cancellations, {} evictions",
                stats.registrations, stats.renewals, stats.cancellations, stats.evictions
            ),
        ),
        ("Watch clients waiting", stats.watchers.to_string()),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>");

    h.push_str("<h2>Applications</h2>");
    if apps.application.is_empty() {
        h.push_str("<p>No instances are registered.</p>");
    } else {
        h.push_str("<table><tr><th>Application</th><th>Instances</th><th>By status</th></tr>");
        for app in &apps.application {
            let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
            for i in &app.instance {
                *counts.entry(i.status.as_str()).or_default() += 1;
            }
            let by: Vec<String> = counts
                .iter()
                .map(|(st, n)| format!("{} ({n})", text(st)))
                .collect();
            let _ = write!(
                h,
                "<tr><td><a href=\"#app-{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                attr(&app.name),
                text(&app.name),
                app.instance.len(),
                by.join(", ")
            );
        }
        h.push_str("</table><h2>Instances</h2>");
        for app in &apps.application {
            let _ = write!(
                h,
                "<h3 id=\"app-{}\">{}</h3><table><tr><th>Instance id</th><th>Host:port</th>\
                 <th>Status</th><th>Lease age</th><th>Last renewal</th><th>Lease</th><th>Up since</th></tr>",
                attr(&app.name),
                text(&app.name)
            );
            for i in &app.instance {
                let l = &i.lease_info;
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td>{} ago</td>\
                     <td>renew {} s, expire {} s</td><td>{}</td></tr>",
                    text(&i.instance_id),
                    text(&i.host_name),
                    i.port.port,
                    status_cell(i),
                    age(now.saturating_sub(l.registration_timestamp)),
                    age(now.saturating_sub(l.last_renewal_timestamp)),
                    l.renewal_interval_in_secs,
                    l.duration_in_secs,
                    if l.service_up_timestamp > 0 {
                        timestamp(l.service_up_timestamp)
                    } else {
                        "-".into()
                    }
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("<p><small>Eureka REST API under <code>/eureka</code>; long-poll watch at <code>/eureka/watch</code>; \
                metrics at <code>/metrics</code>. This page refreshes every 5 s.</small></p></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ages read like a person would say them.
    #[test]
    fn ages() {
        assert_eq!(age(5_400), "5s");
        assert_eq!(age(125_000), "2m 5s");
        assert_eq!(age(3_726_000), "1h 2m");
        assert_eq!(age(90_000_000), "1d 1h");
    }
}
