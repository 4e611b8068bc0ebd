//! The labels that mark what platform created. Every container, network and volume carries
//! [`STACK`]; containers also carry [`SERVICE`] and [`INSTANCE`]. The runtime refuses to stop,
//! remove or change anything without them, so a user's own containers are never touched.

use std::collections::HashMap;

/// The stack a container, network or volume belongs to.
pub const STACK: &str = "platform.stack";
/// The service a container runs.
pub const SERVICE: &str = "platform.service";
/// The 1-based instance number of a container within its service.
pub const INSTANCE: &str = "platform.instance";
/// On containers: the hash of the spec they were created from, so a re-run of `up` keeps
/// containers whose spec is unchanged and replaces the others.
pub const SPEC_HASH: &str = "platform.spec-hash";
/// On containers: the restart policy the stack gave them (`on-failure`, `no`, ...), so that a
/// fault that suspends the policy can put it back without the stack file.
pub const RESTART: &str = "platform.restart";
/// On containers: what the CLI checks from outside while Docker's health check still says
/// `starting` (`http:<port><path>` or `tcp:<port>`, see `observe::ready`).
pub const PROBE: &str = "platform.probe";
/// On images built here: the recipe's image name (`order-service`, `nisshi`, `mariadb`, ...).
pub const IMAGE: &str = "platform.image";
/// On images built here: the hash of everything that went into the image.
pub const CONTENT_HASH: &str = "platform.content-hash";
/// On images built here: which recipe built it (`binary`, `broker`, `mariadb`, `mariadb-base`).
pub const RECIPE: &str = "platform.recipe";

/// The labels of a stack-level object (network, volume).
pub fn for_stack(stack: &str) -> HashMap<String, String> {
    HashMap::from([(STACK.to_string(), stack.to_string())])
}

/// The labels of one container.
pub fn for_container(stack: &str, service: &str, instance: u32) -> HashMap<String, String> {
    HashMap::from([
        (STACK.to_string(), stack.to_string()),
        (SERVICE.to_string(), service.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
    ])
}

/// A Docker `label` filter value: `key` alone, or `key=value`.
pub fn filter(key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{key}={v}"),
        None => key.to_string(),
    }
}
