//! The Eureka REST API's JSON shapes, shared by the registry server, the kit's
//! registry client and the CLI.
//!
//! Eureka's JSON is the Jackson codec of Netflix's `InstanceInfo`, with quirks
//! that real clients depend on: ports are `{"$": 8081, "@enabled": "true"}`,
//! some timestamps and booleans travel as strings, `dataCenterInfo` carries a
//! Java class name, and clients in other languages send numbers as strings.
//! The types here *read* every variant we know of (numbers or strings, one
//! object or a list) and *write* exactly what a Eureka server writes, so that
//! existing Eureka clients work unchanged against our registry.
//!
//! Beyond Eureka, [`WatchResponse`] is the answer of our long-poll watch
//! endpoint (`GET /eureka/watch?since=<version>`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// The class name Eureka clients put in `dataCenterInfo` for a non-AWS host.
pub const DEFAULT_DATA_CENTER_CLASS: &str =
    "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

/// Status of an instance as Eureka defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum InstanceStatus {
    Up,
    Down,
    Starting,
    OutOfService,
    #[default]
    Unknown,
}

impl InstanceStatus {
    /// The name Eureka uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Up => "UP",
            InstanceStatus::Down => "DOWN",
            InstanceStatus::Starting => "STARTING",
            InstanceStatus::OutOfService => "OUT_OF_SERVICE",
            InstanceStatus::Unknown => "UNKNOWN",
        }
    }

    /// Parses a status the way Eureka does: case-insensitively, and anything
    /// unrecognised is `UNKNOWN` (Eureka's `InstanceStatus.toEnum`).
    pub fn parse_lenient(s: &str) -> InstanceStatus {
        s.parse().unwrap_or(InstanceStatus::Unknown)
    }
}

impl std::str::FromStr for InstanceStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "UP" => Ok(InstanceStatus::Up),
            "DOWN" => Ok(InstanceStatus::Down),
            "STARTING" => Ok(InstanceStatus::Starting),
            "OUT_OF_SERVICE" => Ok(InstanceStatus::OutOfService),
            "UNKNOWN" => Ok(InstanceStatus::Unknown),
            _ => Err(UnknownStatus(s.to_string())),
        }
    }
}

/// A status string that is not one of Eureka's five.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown instance status `{0}` (expected UP, DOWN, STARTING, OUT_OF_SERVICE or UNKNOWN)")]
pub struct UnknownStatus(pub String);

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InstanceStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InstanceStatus {
    /// Leniently, as Eureka reads it: any string (empty, unknown, any case)
    /// and `null` are accepted, the ones Eureka does not know as `UNKNOWN`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(InstanceStatus::parse_lenient(s.as_deref().unwrap_or("")))
    }
}

/// What happened to an instance, as carried in deltas and watch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionType {
    #[default]
    Added,
    Modified,
    Deleted,
}

/// A port as Eureka writes it: `{"$": 8081, "@enabled": "true"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    pub enabled: bool,
}

impl Port {
    pub fn enabled(port: u16) -> Port {
        Port {
            port,
            enabled: true,
        }
    }
    pub fn disabled(port: u16) -> Port {
        Port {
            port,
            enabled: false,
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("$", &self.port)?;
        m.serialize_entry("@enabled", if self.enabled { "true" } else { "false" })?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Object {
                #[serde(rename = "$")]
                port: Flex<u16>,
                #[serde(rename = "@enabled", default)]
                enabled: Option<FlexBool>,
            },
            Plain(Flex<u16>),
        }
        match Raw::deserialize(d)? {
            Raw::Object { port, enabled } => Ok(Port {
                port: port.0,
                enabled: enabled.map(|b| b.0).unwrap_or(true),
            }),
            Raw::Plain(p) => Ok(Port {
                port: p.0,
                enabled: true,
            }),
        }
    }
}

/// `dataCenterInfo`: a Java class name and a name (`MyOwn` or `Amazon`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCenterInfo {
    #[serde(rename = "@class", default = "default_dc_class")]
    pub class: String,
    #[serde(default = "default_dc_name")]
    pub name: String,
}

fn default_dc_class() -> String {
    DEFAULT_DATA_CENTER_CLASS.to_string()
}
fn default_dc_name() -> String {
    "MyOwn".to_string()
}

impl Default for DataCenterInfo {
    fn default() -> Self {
        DataCenterInfo {
            class: default_dc_class(),
            name: default_dc_name(),
        }
    }
}

/// Lease information. Durations in seconds, timestamps in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseInfo {
    #[serde(default = "default_renewal", deserialize_with = "flex")]
    pub renewal_interval_in_secs: u32,
    #[serde(default = "default_duration", deserialize_with = "flex")]
    pub duration_in_secs: u32,
    #[serde(default, deserialize_with = "flex")]
    pub registration_timestamp: u64,
    #[serde(default, deserialize_with = "flex")]
    pub last_renewal_timestamp: u64,
    #[serde(default, deserialize_with = "flex")]
    pub eviction_timestamp: u64,
    #[serde(default, deserialize_with = "flex")]
    pub service_up_timestamp: u64,
}

/// Our defaults: renew every 5 s, expire after 15 s (Eureka's are 30/90).
pub const DEFAULT_RENEWAL_INTERVAL_SECS: u32 = 5;
/// See [`DEFAULT_RENEWAL_INTERVAL_SECS`].
pub const DEFAULT_LEASE_DURATION_SECS: u32 = 15;

fn default_renewal() -> u32 {
    DEFAULT_RENEWAL_INTERVAL_SECS
}
fn default_duration() -> u32 {
    DEFAULT_LEASE_DURATION_SECS
}

impl Default for LeaseInfo {
    fn default() -> Self {
        LeaseInfo {
            renewal_interval_in_secs: DEFAULT_RENEWAL_INTERVAL_SECS,
            duration_in_secs: DEFAULT_LEASE_DURATION_SECS,
            registration_timestamp: 0,
            last_renewal_timestamp: 0,
            eviction_timestamp: 0,
            service_up_timestamp: 0,
        }
    }
}

/// One registered instance: Eureka's `InstanceInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    /// Unique id; old clients omit it, then the host name is the id.
    #[serde(default, deserialize_with = "nullable")]
    pub instance_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub host_name: String,
    /// Application name, upper-case by Eureka convention (taken from the
    /// path when a registration leaves it out).
    #[serde(default, deserialize_with = "nullable")]
    pub app: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addr: String,
    /// Eureka's `InstanceInfo` starts as UP, so a body without `status` registers UP.
    #[serde(default = "default_status")]
    pub status: InstanceStatus,
    #[serde(default, alias = "overriddenstatus")]
    pub overridden_status: InstanceStatus,
    #[serde(default = "default_port")]
    pub port: Port,
    #[serde(default = "default_secure_port")]
    pub secure_port: Port,
    #[serde(default = "default_country", deserialize_with = "flex")]
    pub country_id: u32,
    #[serde(default, deserialize_with = "nullable")]
    pub data_center_info: DataCenterInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub lease_info: LeaseInfo,
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub home_page_url: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub status_page_url: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub health_check_url: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub secure_health_check_url: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub vip_address: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub secure_vip_address: String,
    #[serde(default, serialize_with = "as_string", deserialize_with = "flex_bool")]
    pub is_coordinating_discovery_server: bool,
    #[serde(default, serialize_with = "as_string", deserialize_with = "flex")]
    pub last_updated_timestamp: u64,
    #[serde(default, serialize_with = "as_string", deserialize_with = "flex")]
    pub last_dirty_timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<ActionType>,
}

fn default_status() -> InstanceStatus {
    InstanceStatus::Up
}
fn default_port() -> Port {
    Port::enabled(7001)
}
fn default_secure_port() -> Port {
    Port::disabled(7002)
}
fn default_country() -> u32 {
    1
}

/// Why an instance body is not acceptable for registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInstance {
    #[error("`{0}` is required and must not be empty")]
    Missing(&'static str),
    #[error("`{field}` is too long ({len} characters, at most {max})")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("`port` must be between 1 and 65535 when enabled")]
    InvalidPort,
    #[error("the instance's `app` ({body}) does not match the application in the path ({path})")]
    AppMismatch { body: String, path: String },
    #[error(
        "`leaseInfo.durationInSecs` ({duration}) must be greater than `renewalIntervalInSecs` ({renewal}), which must be at least 1"
    )]
    InvalidLease { renewal: u32, duration: u32 },
}

/// Longest id/host/app we accept; Eureka has no limit, but a registry that
/// stores whatever it is sent can be filled by one bad client.
pub const MAX_FIELD_LEN: usize = 255;

impl InstanceInfo {
    /// A new instance with our defaults for everything but the essentials.
    pub fn new(app: &str, instance_id: &str, host: &str, ip: &str, port: u16) -> InstanceInfo {
        let app_upper = app.to_ascii_uppercase();
        let base = format!("http://{host}:{port}");
        InstanceInfo {
            instance_id: instance_id.to_string(),
            host_name: host.to_string(),
            app: app_upper,
            ip_addr: ip.to_string(),
            status: InstanceStatus::Up,
            overridden_status: InstanceStatus::Unknown,
            port: Port::enabled(port),
            secure_port: Port::disabled(443),
            country_id: 1,
            data_center_info: DataCenterInfo::default(),
            lease_info: LeaseInfo::default(),
            metadata: BTreeMap::new(),
            home_page_url: format!("{base}/"),
            status_page_url: format!("{base}/info"),
            health_check_url: format!("{base}/health/ready"),
            secure_health_check_url: String::new(),
            vip_address: app.to_ascii_lowercase(),
            secure_vip_address: app.to_ascii_lowercase(),
            is_coordinating_discovery_server: false,
            last_updated_timestamp: 0,
            last_dirty_timestamp: 0,
            action_type: None,
        }
    }

    /// Fills what old clients leave out and upper-cases the app, then checks
    /// what a registry needs. `path_app` is the `{APP}` of the request path.
    pub fn normalize_and_validate(&mut self, path_app: &str) -> Result<(), InvalidInstance> {
        self.app = self.app.trim().to_ascii_uppercase();
        if self.app.is_empty() {
            self.app = path_app.to_ascii_uppercase();
        }
        if self.app != path_app.to_ascii_uppercase() {
            return Err(InvalidInstance::AppMismatch {
                body: self.app.clone(),
                path: path_app.to_string(),
            });
        }
        if self.host_name.trim().is_empty() {
            return Err(InvalidInstance::Missing("hostName"));
        }
        if self.instance_id.trim().is_empty() {
            self.instance_id = self.host_name.clone();
        }
        if self.ip_addr.trim().is_empty() {
            self.ip_addr = self.host_name.clone();
        }
        for (field, value) in [
            ("instanceId", &self.instance_id),
            ("hostName", &self.host_name),
            ("app", &self.app),
            ("ipAddr", &self.ip_addr),
        ] {
            if value.len() > MAX_FIELD_LEN {
                return Err(InvalidInstance::TooLong {
                    field,
                    len: value.len(),
                    max: MAX_FIELD_LEN,
                });
            }
        }
        if self.port.enabled && self.port.port == 0 {
            return Err(InvalidInstance::InvalidPort);
        }
        let lease = &self.lease_info;
        if lease.renewal_interval_in_secs == 0
            || lease.duration_in_secs <= lease.renewal_interval_in_secs
        {
            return Err(InvalidInstance::InvalidLease {
                renewal: lease.renewal_interval_in_secs,
                duration: lease.duration_in_secs,
            });
        }
        Ok(())
    }

    /// The status clients should act on, by Eureka's rules: an instance
    /// that says it is DOWN, STARTING or UNKNOWN is believed (Eureka's
    /// `DownOrStartingRule`); otherwise an override (set through the status
    /// endpoint) wins over what the instance reports. A Eureka server has
    /// already applied these rules to `status`, so for instances read from
    /// a registry this is `status`, which is what Eureka clients count in
    /// `apps__hashcode`.
    pub fn effective_status(&self) -> InstanceStatus {
        match (self.status, self.overridden_status) {
            (InstanceStatus::Up | InstanceStatus::OutOfService, InstanceStatus::Unknown) => {
                self.status
            }
            (InstanceStatus::Up | InstanceStatus::OutOfService, overridden) => overridden,
            (reported, _) => reported,
        }
    }

    /// `http://host:port`, preferring the IP address as Spring's
    /// `preferIpAddress` does, because container host names are not always
    /// resolvable from where the caller runs.
    pub fn base_url(&self) -> String {
        let host = if self.ip_addr.is_empty() {
            &self.host_name
        } else {
            &self.ip_addr
        };
        format!("http://{host}:{}", self.port.port)
    }
}

/// `{"instance": {...}}`, the body of register and of single-instance reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceEnvelope {
    pub instance: InstanceInfo,
}

/// One application with its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub instance: Vec<InstanceInfo>,
}

/// `{"application": {...}}`, the answer of `GET /eureka/apps/{APP}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationEnvelope {
    pub application: Application,
}

/// The registry's content (or a delta of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Applications {
    #[serde(
        rename = "versions__delta",
        default,
        serialize_with = "as_string",
        deserialize_with = "flex"
    )]
    pub versions_delta: u64,
    #[serde(rename = "apps__hashcode", default)]
    pub apps_hashcode: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub application: Vec<Application>,
}

/// `{"applications": {...}}`, the answer of `GET /eureka/apps` and `/delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ApplicationsEnvelope {
    pub applications: Applications,
}

impl Applications {
    /// Every instance of every application.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceInfo> {
        self.application.iter().flat_map(|a| a.instance.iter())
    }
}

/// Eureka's `apps__hashcode`: for each status in name order, `STATUS_count_`
/// (e.g. `DOWN_1_UP_3_`). Clients recompute it after applying a delta and
/// fall back to a full fetch when it differs, so it must match Eureka's
/// exactly: it counts the *effective* status of every instance.
pub fn apps_hashcode<'a>(instances: impl IntoIterator<Item = &'a InstanceInfo>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in instances {
        *counts.entry(i.effective_status().as_str()).or_default() += 1;
    }
    counts.iter().map(|(s, n)| format!("{s}_{n}_")).collect()
}

/// One change in a watch answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub action: ActionType,
    pub instance: InstanceInfo,
}

/// Answer of `GET /eureka/watch?since=<version>&timeoutSecs=<n>`: the changes
/// after `since`, up to `version`. When the server no longer holds the
/// changes after `since` (or `since` is 0), `reset` is true and `changes`
/// holds the whole registry as `ADDED`: the client replaces its view.
/// When nothing changed before the timeout, `changes` is empty and
/// `version` equals `since`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchResponse {
    pub version: u64,
    pub reset: bool,
    pub changes: Vec<Change>,
}

// ---- lenient readers -------------------------------------------------------

/// A number that may arrive as a JSON number or a string.
struct Flex<T>(T);

impl<'de, T> Deserialize<'de> for Flex<T>
where
    T: std::str::FromStr + TryFrom<u64>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            F(f64),
            S(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::N(n) => T::try_from(n).ok(),
            Raw::F(f) if f >= 0.0 && f.fract() == 0.0 => T::try_from(f as u64).ok(),
            Raw::F(_) => None,
            // py-eureka-client and hand-written clients send "" for "not set".
            Raw::S(s) if s.trim().is_empty() => T::try_from(0).ok(),
            Raw::S(s) => s.trim().parse::<T>().ok(),
        };
        parsed
            .map(Flex)
            .ok_or_else(|| de::Error::custom("expected a non-negative integer in range"))
    }
}

fn flex<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + TryFrom<u64>,
{
    Flex::<T>::deserialize(d).map(|f| f.0)
}

/// A boolean that may arrive as `true` or `"true"`.
struct FlexBool(bool);

impl<'de> Deserialize<'de> for FlexBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(b) => Ok(FlexBool(b)),
            Raw::S(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(FlexBool(true)),
                "false" | "" => Ok(FlexBool(false)),
                other => Err(de::Error::custom(format!(
                    "expected true or false, got `{other}`"
                ))),
            },
        }
    }
}

fn flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    FlexBool::deserialize(d).map(|b| b.0)
}

/// `null` read as the type's default: Spring Cloud's Jackson mapper writes
/// unset members (`secureHealthCheckUrl`, `appGroupName`, ...) as `null`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn as_string<T: ToString, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Eureka writes an empty metadata map as `{"@class": "java.util.Collections$EmptyMap"}`;
/// values may be non-strings in hand-written clients.
fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "@class")
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// Old Eureka JSON writes a single element as an object instead of a list.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<T> {
        Many(Vec<T>),
        One(T),
        Null,
    }
    Ok(match Option::<Raw<T>>::deserialize(d)? {
        Some(Raw::Many(v)) => v,
        Some(Raw::One(t)) => vec![t],
        Some(Raw::Null) | None => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration body as Spring Cloud Netflix's Eureka client sends it parses, and its port shape survives.
    #[test]
    fn parses_spring_cloud_registration() {
        let body = r#"{"instance":{"instanceId":"host1:order-service:8082","hostName":"10.0.0.5","app":"ORDER-SERVICE",
            "ipAddr":"10.0.0.5","status":"UP","overriddenStatus":"UNKNOWN","port":{"$":8082,"@enabled":"true"},
            "securePort":{"$":443,"@enabled":"false"},"countryId":1,
            "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
            "leaseInfo":{"renewalIntervalInSecs":30,"durationInSecs":90},
            "metadata":{"management.port":"8082"},"homePageUrl":"http://10.0.0.5:8082/",
            "statusPageUrl":"http://10.0.0.5:8082/actuator/info","healthCheckUrl":"http://10.0.0.5:8082/actuator/health",
            "vipAddress":"order-service","secureVipAddress":"order-service","isCoordinatingDiscoveryServer":"false",
            "lastUpdatedTimestamp":"1700000000000","lastDirtyTimestamp":"1700000000000"}}"#;
        let env: InstanceEnvelope = serde_json::from_str(body).unwrap();
        let i = env.instance;
        assert_eq!(i.port, Port::enabled(8082));
        assert_eq!(i.secure_port, Port::disabled(443));
        assert_eq!(i.lease_info.duration_in_secs, 90);
        assert_eq!(i.last_dirty_timestamp, 1_700_000_000_000);
        let out = serde_json::to_value(&i).unwrap();
        assert_eq!(
            out["port"],
            serde_json::json!({"$": 8082, "@enabled": "true"})
        );
        assert_eq!(
            out["lastDirtyTimestamp"],
            serde_json::json!("1700000000000")
        );
        assert_eq!(
            out["isCoordinatingDiscoveryServer"],
            serde_json::json!("false")
        );
    }

    /// Clients that send numbers as strings, the legacy `overriddenstatus` key and an `@class` metadata marker are read.
    #[test]
    fn parses_lenient_variants() {
        let body = r#"{"instance":{"hostName":"h","app":"x","port":{"$":"8081","@enabled":true},
            "overriddenstatus":"OUT_OF_SERVICE","status":"up","countryId":"1",
            "leaseInfo":{"renewalIntervalInSecs":"5","durationInSecs":"15"},
            "metadata":{"@class":"java.util.Collections$EmptyMap"}}}"#;
        let mut i = serde_json::from_str::<InstanceEnvelope>(body)
            .unwrap()
            .instance;
        i.normalize_and_validate("X").unwrap();
        assert_eq!(i.instance_id, "h");
        assert_eq!(i.app, "X");
        assert_eq!(i.port.port, 8081);
        assert_eq!(i.effective_status(), InstanceStatus::OutOfService);
        assert!(i.metadata.is_empty());
    }

    /// Validation rejects what would corrupt the registry: mismatched app, port 0, impossible leases, overlong ids.
    #[test]
    fn validation_rejects_bad_instances() {
        let base = InstanceInfo::new("a", "id", "h", "127.0.0.1", 80);
        let mut i = base.clone();
        assert!(matches!(
            i.normalize_and_validate("B"),
            Err(InvalidInstance::AppMismatch { .. })
        ));
        let mut i2 = base.clone();
        i2.port = Port::enabled(0);
        assert_eq!(
            i2.normalize_and_validate("A"),
            Err(InvalidInstance::InvalidPort)
        );
        let mut i3 = base.clone();
        i3.lease_info.duration_in_secs = 5;
        assert!(matches!(
            i3.normalize_and_validate("A"),
            Err(InvalidInstance::InvalidLease { .. })
        ));
        let mut i4 = base.clone();
        i4.host_name = "x".repeat(300);
        assert!(matches!(
            i4.normalize_and_validate("A"),
            Err(InvalidInstance::TooLong { .. })
        ));
        let mut ok = base;
        assert!(ok.normalize_and_validate("a").is_ok());
        let _ = &mut i;
    }

    /// A port beyond u16 or a negative number is a parse error, not a wrap-around.
    #[test]
    fn rejects_out_of_range_port() {
        let body = r#"{"instance":{"hostName":"h","app":"x","port":{"$":70000}}}"#;
        assert!(serde_json::from_str::<InstanceEnvelope>(body).is_err());
        let body = r#"{"instance":{"hostName":"h","app":"x","port":{"$":-1}}}"#;
        assert!(serde_json::from_str::<InstanceEnvelope>(body).is_err());
    }

    /// The hash code matches Eureka's format: statuses in name order, effective status counted.
    #[test]
    fn hashcode_matches_eureka_format() {
        let mut a = InstanceInfo::new("a", "1", "h", "i", 1);
        let b = InstanceInfo::new("a", "2", "h", "i", 2);
        let mut c = InstanceInfo::new("b", "3", "h", "i", 3);
        c.status = InstanceStatus::Down;
        assert_eq!(apps_hashcode([&a, &b, &c]), "DOWN_1_UP_2_");
        a.overridden_status = InstanceStatus::OutOfService;
        assert_eq!(apps_hashcode([&a, &b, &c]), "DOWN_1_OUT_OF_SERVICE_1_UP_1_");
        assert_eq!(apps_hashcode(std::iter::empty()), "");
    }

    /// An instance reporting DOWN or STARTING is believed over an override, as Eureka's rules say.
    #[test]
    fn down_or_starting_wins_over_override() {
        let mut i = InstanceInfo::new("a", "1", "h", "i", 1);
        i.status = InstanceStatus::Down;
        i.overridden_status = InstanceStatus::Up;
        assert_eq!(i.effective_status(), InstanceStatus::Down);
        assert_eq!(apps_hashcode([&i]), "DOWN_1_");
        i.status = InstanceStatus::Up;
        i.overridden_status = InstanceStatus::OutOfService;
        assert_eq!(i.effective_status(), InstanceStatus::OutOfService);
    }

    /// A single application written as an object (old XStream JSON) is read as a one-element list.
    #[test]
    fn reads_single_application_object() {
        let body = r#"{"applications":{"versions__delta":"1","apps__hashcode":"UP_1_",
            "application":{"name":"A","instance":{"hostName":"h","app":"A","port":{"$":1}}}}}"#;
        let env: ApplicationsEnvelope = serde_json::from_str(body).unwrap();
        assert_eq!(env.applications.application.len(), 1);
        assert_eq!(env.applications.instances().count(), 1);
        assert_eq!(env.applications.versions_delta, 1);
        let first = env.applications.instances().next().unwrap();
        assert_eq!(
            first.status,
            InstanceStatus::Up,
            "no status means UP, as in Eureka"
        );
    }
}
