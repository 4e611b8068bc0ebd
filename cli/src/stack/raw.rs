//! The stack file exactly as written: serde types that keep every value's byte span so that
//! validation can name the line of a bad value, and that reject unknown keys.
//!
//! Nothing here is checked beyond TOML types; [`super::validate`] turns this into the model.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole stack file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    /// `[stack]`: name and description.
    pub stack: Spanned<RawHeader>,
    /// `[services.NAME]` tables.
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, Spanned<RawService>>,
}

/// `[stack]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `[services.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub image: Option<Spanned<String>>,
    #[serde(default)]
    pub build: Option<Spanned<RawBuild>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub instances: Option<Spanned<i64>>,
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    #[serde(default)]
    pub ports: Vec<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub depends_on: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    pub volumes: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: Option<Spanned<RawResources>>,
    #[serde(default)]
    pub restart: Option<Spanned<String>>,
}

/// `build = { binary = "order-service" }` or `build = { recipe = "mariadb" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    #[serde(default)]
    pub binary: Option<Spanned<String>>,
    #[serde(default)]
    pub recipe: Option<Spanned<String>>,
}

/// `health = { ... }`: one probe kind plus timing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[serde(default)]
    pub probe: Option<Spanned<bool>>,
    #[serde(default)]
    pub http: Option<Spanned<String>>,
    #[serde(default)]
    pub tcp: Option<Spanned<u16>>,
    #[serde(default)]
    pub exec: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<Spanned<i64>>,
    #[serde(default)]
    pub start_period: Option<Spanned<String>>,
    #[serde(default)]
    pub start_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub docker: Option<Spanned<bool>>,
}

/// `resources = { memory = "128m", cpus = 0.5 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    #[serde(default)]
    pub memory: Option<Spanned<String>>,
    #[serde(default)]
    pub cpus: Option<Spanned<f64>>,
}
