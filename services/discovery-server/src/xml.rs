//! Eureka's XML shapes, for clients that read the registry as XML.
//!
//! A Eureka server answers XML unless the `Accept` header mentions JSON
//! (`ApplicationsResource`: `acceptHeader == null || !acceptHeader.contains("json")`),
//! and some third-party clients (py-eureka-client among them) parse only
//! XML. The shapes are those of Eureka's XStream converters: attributes for
//! port flags and the data-center class, one element per metadata key, and
//! an `EmptyMap` class marker on empty metadata.
//!
//! Registrations arrive as JSON from most clients (Spring Cloud's
//! RestTemplate transport, py-eureka-client, our kit) and as XML from
//! Eureka's Jersey clients and hand-written ones: [`instance_body`] reads
//! an XML `<instance>` into the JSON shape Eureka's Jackson codec uses, so
//! both go through the one lenient reader of the registry model.

use std::fmt::Write as _;

use kit::registry::model::{Application, Applications, InstanceInfo, Port};
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// Media type of XML answers.
pub const APPLICATION_XML: &str = "application/xml";

/// `<applications>` (full registry, delta or VIP answer).
pub fn applications(apps: &Applications) -> String {
    let mut out = String::with_capacity(256 + apps.application.len() * 1500);
    out.push_str("<applications>");
    element(
        &mut out,
        "versions__delta",
        &apps.versions_delta.to_string(),
    );
    element(&mut out, "apps__hashcode", &apps.apps_hashcode);
    for app in &apps.application {
        write_application(&mut out, app);
    }
    out.push_str("</applications>");
    out
}

/// `<application>` (`GET /eureka/apps/{APP}`).
pub fn application(app: &Application) -> String {
    let mut out = String::with_capacity(64 + app.instance.len() * 1500);
    write_application(&mut out, app);
    out
}

/// `<instance>` (`GET /eureka/apps/{APP}/{ID}` and `/eureka/instances/{ID}`).
pub fn instance(i: &InstanceInfo) -> String {
    let mut out = String::with_capacity(1500);
    write_instance(&mut out, i);
    out
}

fn write_application(out: &mut String, app: &Application) {
    out.push_str("<application>");
    element(out, "name", &app.name);
    for i in &app.instance {
        write_instance(out, i);
    }
    out.push_str("</application>");
}

fn write_instance(out: &mut String, i: &InstanceInfo) {
    out.push_str("<instance>");
    element(out, "instanceId", &i.instance_id);
    element(out, "hostName", &i.host_name);
    element(out, "app", &i.app);
    element(out, "ipAddr", &i.ip_addr);
    element(out, "status", i.status.as_str());
    element(out, "overriddenstatus", i.overridden_status.as_str());
    port(out, "port", i.port);
    port(out, "securePort", i.secure_port);
    element(out, "countryId", &i.country_id.to_string());
    out.push_str("<dataCenterInfo class=\"");
    escape_into(out, &i.data_center_info.class, true);
    out.push_str("\">");
    element(out, "name", &i.data_center_info.name);
    out.push_str("</dataCenterInfo>");
    let l = &i.lease_info;
    out.push_str("<leaseInfo>");
    for (name, v) in [
        (
            "renewalIntervalInSecs",
            u64::from(l.renewal_interval_in_secs),
        ),
        ("durationInSecs", u64::from(l.duration_in_secs)),
        ("registrationTimestamp", l.registration_timestamp),
        ("lastRenewalTimestamp", l.last_renewal_timestamp),
        ("evictionTimestamp", l.eviction_timestamp),
        ("serviceUpTimestamp", l.service_up_timestamp),
    ] {
        element(out, name, &v.to_string());
    }
    out.push_str("</leaseInfo>");
    // Keys that are not XML names cannot be elements; Eureka's XStream
    // output would be broken by them, we leave them out of XML (JSON has them).
    let keys: Vec<_> = i.metadata.iter().filter(|(k, _)| is_xml_name(k)).collect();
    if keys.is_empty() {
        out.push_str("<metadata class=\"java.util.Collections$EmptyMap\"/>");
    } else {
        out.push_str("<metadata>");
        for (k, v) in keys {
            element(out, k, v);
        }
        out.push_str("</metadata>");
    }
    for (name, v) in [
        ("homePageUrl", &i.home_page_url),
        ("statusPageUrl", &i.status_page_url),
        ("healthCheckUrl", &i.health_check_url),
        ("secureHealthCheckUrl", &i.secure_health_check_url),
        ("vipAddress", &i.vip_address),
        ("secureVipAddress", &i.secure_vip_address),
    ] {
        if !v.is_empty() {
            element(out, name, v);
        }
    }
    element(
        out,
        "isCoordinatingDiscoveryServer",
        if i.is_coordinating_discovery_server {
            "true"
        } else {
            "false"
        },
    );
    element(
        out,
        "lastUpdatedTimestamp",
        &i.last_updated_timestamp.to_string(),
    );
    element(
        out,
        "lastDirtyTimestamp",
        &i.last_dirty_timestamp.to_string(),
    );
    if let Some(a) = i.action_type {
        let a = match a {
            kit::registry::model::ActionType::Added => "ADDED",
            kit::registry::model::ActionType::Modified => "MODIFIED",
            kit::registry::model::ActionType::Deleted => "DELETED",
        };
        element(out, "actionType", a);
    }
    out.push_str("</instance>");
}

fn port(out: &mut String, name: &str, p: Port) {
    let _ = write!(
        out,
        "<{name} enabled=\"{}\">{}</{name}>",
        if p.enabled { "true" } else { "false" },
        p.port
    );
}

fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, text, false);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Escapes markup characters (quick-xml's escaper: `&`, `<`, `>`, and
/// quotes in attributes) after dropping characters XML 1.0 cannot carry.
fn escape_into(out: &mut String, s: &str, attribute: bool) {
    let carried: String = s
        .chars()
        .filter(|&c| (c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r'))
        .filter(|&c| c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect();
    if attribute {
        out.push_str(&quick_xml::escape::escape(carried.as_str()));
    } else {
        out.push_str(&quick_xml::escape::partial_escape(carried.as_str()));
    }
}

/// Whether `s` can be an element name (the ASCII-safe part of XML's Name
/// production, plus non-ASCII letters).
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let start_ok = first.is_alphabetic() || first == '_';
    start_ok
        && !s.to_ascii_lowercase().starts_with("xml")
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

// ---- reading registrations ------------------------------------------------

/// Deepest element nesting a registration may have (an instance is 3 deep).
const MAX_DEPTH: usize = 16;

/// An XML registration body that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the XML body is not an `<instance>` document: {0}")]
pub struct XmlError(String);

/// Reads an XML registration (`<instance>...</instance>`, Eureka's XStream
/// shape) into the JSON shape of Eureka's Jackson codec, `{"instance":
/// {...}}`, for the registry model's lenient reader:
///
/// - an element holding only text becomes a string (`<app>SHOP</app>`);
/// - an element with children becomes an object, repeated children a list;
/// - attributes become `@name` members and the text of an element with
///   attributes becomes `$` (`<port enabled="true">8080</port>` is
///   `{"$": "8080", "@enabled": "true"}`, as in Eureka's JSON);
/// - an empty element is `""`, or its attributes when it has some
///   (`<metadata class="java.util.Collections$EmptyMap"/>`).
///
/// The XML declaration, comments and processing instructions are skipped;
/// a DOCTYPE (entity definitions) and undefined entities are refused.
pub fn instance_body(body: &[u8]) -> Result<Value, XmlError> {
    let text = std::str::from_utf8(body).map_err(|e| XmlError(format!("not UTF-8: {e}")))?;
    let mut reader = quick_xml::Reader::from_str(text);
    // Open elements: name, attributes and children so far, text so far.
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError(format!("at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(XmlError("content after the root element".into()));
                }
                if stack.len() == MAX_DEPTH {
                    return Err(XmlError(format!("nested deeper than {MAX_DEPTH} elements")));
                }
                stack.push((name_of(&e)?, attributes_of(&e)?, String::new()));
            }
            Event::Empty(e) => {
                let value = finish(attributes_of(&e)?, String::new());
                attach(&mut stack, &mut root, name_of(&e)?, value)?;
            }
            Event::End(_) => {
                let (name, attrs, text) = stack
                    .pop()
                    .ok_or_else(|| XmlError("an end tag without a start".into()))?;
                attach(&mut stack, &mut root, name, finish(attrs, text))?;
            }
            Event::Text(t) => {
                let t = t
                    .xml_content()
                    .map_err(|e| XmlError(format!("bad text: {e}")))?;
                push_text(&mut stack, &t)?;
            }
            Event::CData(t) => {
                let t = t
                    .decode()
                    .map_err(|e| XmlError(format!("bad CDATA: {e}")))?;
                push_text(&mut stack, &t)?;
            }
            Event::GeneralRef(r) => {
                let name = r
                    .decode()
                    .map_err(|e| XmlError(format!("bad reference: {e}")))?;
                let resolved = quick_xml::escape::unescape(&format!("&{name};"))
                    .map_err(|e| XmlError(format!("unknown reference &{name};: {e}")))?
                    .into_owned();
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError("a DOCTYPE is not accepted".into())),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("the document ends inside an element".into()));
    }
    match root {
        Some((name, value)) if name == "instance" => {
            let mut envelope = Map::new();
            envelope.insert(name, value);
            Ok(Value::Object(envelope))
        }
        Some((name, _)) => Err(XmlError(format!("the root element is <{name}>"))),
        None => Err(XmlError("the body is empty".into())),
    }
}

fn name_of(e: &BytesStart<'_>) -> Result<String, XmlError> {
    std::str::from_utf8(e.name().as_ref())
        .map(str::to_string)
        .map_err(|_| XmlError("an element name is not UTF-8".into()))
}

fn attributes_of(e: &BytesStart<'_>) -> Result<Map<String, Value>, XmlError> {
    let mut attrs = Map::new();
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError(format!("bad attribute: {err}")))?;
        let key = std::str::from_utf8(a.key.as_ref())
            .map_err(|_| XmlError("an attribute name is not UTF-8".into()))?;
        let value = a
            .unescape_value()
            .map_err(|err| XmlError(format!("bad value of attribute {key}: {err}")))?;
        attrs.insert(format!("@{key}"), Value::String(value.into_owned()));
    }
    Ok(attrs)
}

fn push_text(
    stack: &mut [(String, Map<String, Value>, String)],
    text: &str,
) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some((_, _, buf)) => {
            buf.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError("text outside the root element".into())),
    }
}

/// The JSON value of a closed element from its attributes and children
/// (`members`) and its text.
/// Surrounding whitespace (indentation) is not part of a value.
fn finish(mut members: Map<String, Value>, text: String) -> Value {
    let text = text.trim().to_string();
    let has_children = members.keys().any(|k| !k.starts_with('@'));
    if members.is_empty() {
        Value::String(text)
    } else {
        if !has_children && !text.is_empty() {
            members.insert("$".into(), Value::String(text));
        }
        Value::Object(members)
    }
}

/// Adds a closed element to its parent (a repeated name turns into a list),
/// or makes it the root.
fn attach(
    stack: &mut [(String, Map<String, Value>, String)],
    root: &mut Option<(String, Value)>,
    name: String,
    value: Value,
) -> Result<(), XmlError> {
    let Some((_, parent, _)) = stack.last_mut() else {
        if root.is_some() {
            return Err(XmlError("more than one root element".into()));
        }
        *root = Some((name, value));
        return Ok(());
    };
    match parent.get_mut(&name) {
        Some(Value::Array(list)) => list.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            parent.insert(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::registry::model::ActionType;

    /// An instance renders with Eureka's XML shapes: port attributes, data-center class, metadata elements, escaped text.
    #[test]
    fn instance_shape() {
        let mut i = InstanceInfo::new("shop", "h:shop:1", "h", "10.0.0.1", 8081);
        i.metadata.insert("management.port".into(), "8081".into());
        i.metadata.insert("bad key".into(), "x".into());
        i.metadata.insert("note".into(), "a<b & \"c\"\u{1}".into());
        i.action_type = Some(ActionType::Added);
        let x = instance(&i);
        assert!(
            x.starts_with("<instance><instanceId>h:shop:1</instanceId>"),
            "{x}"
        );
        assert!(x.contains(r#"<port enabled="true">8081</port>"#), "{x}");
        assert!(
            x.contains(r#"<securePort enabled="false">443</securePort>"#),
            "{x}"
        );
        assert!(x.contains(r#"<dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>"#), "{x}");
        assert!(x.contains("<management.port>8081</management.port>"), "{x}");
        assert!(x.contains("<note>a&lt;b &amp; \"c\"</note>"), "{x}");
        assert!(!x.contains("bad key"), "{x}");
        assert!(x.contains("<actionType>ADDED</actionType>"), "{x}");
        assert!(
            x.contains("<overriddenstatus>UNKNOWN</overriddenstatus>"),
            "{x}"
        );
    }

    /// The applications envelope carries versions__delta and apps__hashcode first, and empty metadata has Eureka's class marker.
    #[test]
    fn applications_shape() {
        let i = InstanceInfo::new("shop", "1", "h", "10.0.0.1", 8081);
        let apps = Applications {
            versions_delta: 7,
            apps_hashcode: "UP_1_".into(),
            application: vec![Application {
                name: "SHOP".into(),
                instance: vec![i],
            }],
        };
        let x = applications(&apps);
        assert!(x.starts_with("<applications><versions__delta>7</versions__delta><apps__hashcode>UP_1_</apps__hashcode><application><name>SHOP</name><instance>"), "{x}");
        assert!(
            x.contains(r#"<metadata class="java.util.Collections$EmptyMap"/>"#),
            "{x}"
        );
        assert!(
            x.ends_with("</instance></application></applications>"),
            "{x}"
        );
    }

    /// Only valid XML names become metadata elements.
    #[test]
    fn xml_names() {
        for ok in ["a", "management.port", "_x-1", "zoné"] {
            assert!(is_xml_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a b", "a<b", "xmlns", "-a", "a/b"] {
            assert!(!is_xml_name(bad), "{bad}");
        }
    }

    /// XML registrations read into Eureka's JSON shape: text, attributes as `@` members, `$` for text beside attributes, repeated elements as lists, references and CDATA resolved.
    #[test]
    fn reads_xml_into_the_json_shape() {
        let body = br#"<?xml version="1.0"?><!-- a client --><instance>
            <app>SHOP</app><port enabled="true"> 8080 </port>
            <metadata class="java.util.Collections$EmptyMap"/><empty/>
            <note>a &amp; b &#x3C; c<![CDATA[ <raw> ]]></note>
            <tag>1</tag><tag>2</tag><tag>3</tag></instance>"#;
        let v = instance_body(body).unwrap();
        let i = &v["instance"];
        assert_eq!(i["app"], "SHOP");
        assert_eq!(
            i["port"],
            serde_json::json!({"$": "8080", "@enabled": "true"})
        );
        assert_eq!(
            i["metadata"],
            serde_json::json!({"@class": "java.util.Collections$EmptyMap"})
        );
        assert_eq!(i["empty"], "");
        assert_eq!(i["note"], "a & b < c <raw>");
        assert_eq!(i["tag"], serde_json::json!(["1", "2", "3"]));
    }

    /// Bodies that are not one `<instance>` document are errors, never panics: bad UTF-8, deep nesting, DOCTYPEs, unknown entities, two roots, text outside the root, unclosed elements.
    #[test]
    fn refuses_what_is_not_an_instance() {
        let deep = format!(
            "<instance>{}{}</instance>",
            "<a>".repeat(40),
            "</a>".repeat(40)
        );
        let cases: [(&str, &[u8]); 9] = [
            ("bad UTF-8", b"<instance><app>\xff</app></instance>"),
            ("deep", deep.as_bytes()),
            (
                "doctype",
                b"<!DOCTYPE instance [<!ENTITY e \"x\">]><instance/>",
            ),
            ("entity", b"<instance><app>&e;</app></instance>"),
            ("two roots", b"<instance/><instance/>"),
            ("text outside", b"hello<instance/>"),
            ("unclosed", b"<instance><app>x</app>"),
            ("other root", b"<applications/>"),
            ("empty", b""),
        ];
        for (what, body) in cases {
            assert!(instance_body(body).is_err(), "{what}");
        }
    }
}
