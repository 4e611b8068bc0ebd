//! Eureka's XML shapes, for clients that read the registry as XML.
//!
//! A Eureka server answers XML unless the `Accept` header mentions JSON
//! (`ApplicationsResource`: `acceptHeader == null || !acceptHeader.contains("json")`),
//! and some third-party clients (py-eureka-client among them) parse only
//! XML. The shapes are those of Eureka's XStream converters: attributes for
//! port flags and the data-center class, one element per metadata key, and
//! an `EmptyMap` class marker on empty metadata.
//!
//! Only output is XML; registrations are JSON, which every client we know
//! of sends (Spring Cloud, py-eureka-client, our kit).

use std::fmt::Write as _;

use kit::registry::model::{Application, Applications, InstanceInfo, Port};

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

/// Escapes markup characters and drops characters XML 1.0 cannot carry.
fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
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
}
