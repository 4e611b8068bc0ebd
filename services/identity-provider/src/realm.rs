//! The realm: read from a Keycloak realm export and checked once at start.
//!
//! The export format is Keycloak's `RealmRepresentation` (what
//! `kc.sh export` writes and `--import-realm` reads). Only the fields this
//! provider acts on are modelled; every other field is ignored, so a full
//! export from a real Keycloak loads as well as our hand-written
//! `keycloak/realm.json`. Where the file leaves a field out, Keycloak's
//! import default applies (users and clients are disabled unless
//! `enabled`, direct access grants are off, ...).
//!
//! Everything a token request needs is resolved here, at start: effective
//! roles (composites expanded), each client's audiences from its
//! `oidc-audience-mapper`s, token lifespans, parsed password credentials.
//! A file that cannot work (a confidential client without secret, a role
//! that does not exist, a hash algorithm we cannot check) is refused with
//! a message naming the entry, instead of failing logins later.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use crate::credentials::PasswordCredential;

/// Why a realm file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RealmError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Keycloak realm export: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid realm: {0}")]
    Invalid(String),
}

/// Realms and clients without an `enabled` field count as enabled
/// (Keycloak's exports always write it; users, as in Keycloak's import,
/// count as disabled).
fn enabled_default() -> bool {
    true
}

/// `RealmRepresentation`, the parts we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmExport {
    pub realm: String,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    pub access_token_lifespan: Option<i64>,
    pub sso_session_idle_timeout: Option<i64>,
    pub sso_session_max_lifespan: Option<i64>,
    /// Brute-force detection (Keycloak's realm settings; see `brute_force`).
    #[serde(default)]
    pub brute_force_protected: bool,
    pub failure_factor: Option<u32>,
    pub wait_increment_seconds: Option<i64>,
    pub max_failure_wait_seconds: Option<i64>,
    pub max_delta_time_seconds: Option<i64>,
    pub quick_login_check_milli_seconds: Option<i64>,
    pub minimum_quick_login_wait_seconds: Option<i64>,
    #[serde(default)]
    pub permanent_lockout: bool,
    #[serde(default)]
    pub roles: RolesExport,
    #[serde(default)]
    pub clients: Vec<ClientExport>,
    #[serde(default)]
    pub users: Vec<UserExport>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RolesExport {
    #[serde(default)]
    pub realm: Vec<RoleExport>,
}

#[derive(Debug, Deserialize)]
pub struct RoleExport {
    pub name: String,
    #[serde(default)]
    pub composite: bool,
    #[serde(default)]
    pub composites: Option<CompositesExport>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CompositesExport {
    #[serde(default)]
    pub realm: Vec<String>,
}

/// `ClientRepresentation`, the parts we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientExport {
    pub client_id: String,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    #[serde(default)]
    pub public_client: bool,
    #[serde(default)]
    pub bearer_only: bool,
    pub secret: Option<String>,
    pub client_authenticator_type: Option<String>,
    #[serde(default)]
    pub service_accounts_enabled: bool,
    #[serde(default)]
    pub direct_access_grants_enabled: bool,
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    #[serde(default)]
    pub protocol_mappers: Vec<ProtocolMapperExport>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMapperExport {
    #[serde(default)]
    pub name: String,
    pub protocol_mapper: String,
    #[serde(default)]
    pub config: HashMap<String, String>,
}

/// `UserRepresentation`, the parts we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserExport {
    pub id: Option<String>,
    pub username: String,
    #[serde(default)]
    pub enabled: bool,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[serde(default)]
    pub credentials: Vec<CredentialExport>,
    #[serde(default)]
    pub realm_roles: Vec<String>,
    pub service_account_client_id: Option<String>,
    #[serde(default)]
    pub required_actions: Vec<String>,
}

/// `CredentialRepresentation`: a plain `value` (hashed by Keycloak at
/// import) or the exported hash in `secretData`/`credentialData`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialExport {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<String>,
    #[serde(default)]
    pub temporary: bool,
    pub secret_data: Option<String>,
    pub credential_data: Option<String>,
}

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub enum ClientKind {
    /// No secret; identified by `client_id` alone (CLIs, browser apps).
    Public,
    /// Must present this secret (`client_secret_basic` or `_post`).
    Confidential { secret: SecretString },
}

/// A client, ready for the token endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub enabled: bool,
    pub bearer_only: bool,
    pub kind: ClientKind,
    pub service_accounts_enabled: bool,
    pub direct_access_grants_enabled: bool,
    /// Id of the service-account user (client-credentials tokens).
    pub service_account_user: Option<String>,
    /// `aud` values of access tokens issued to this client.
    pub audiences: Vec<String>,
    /// `access.token.lifespan` attribute, overriding the realm's.
    pub access_token_lifespan: Option<i64>,
}

/// A user, ready for the password grant and token claims.
#[derive(Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub enabled: bool,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub password: Option<PasswordCredential>,
    /// Effective realm roles, composites expanded, sorted.
    pub roles: Vec<String>,
    /// Set for a client's service-account user: it cannot log in with a password.
    pub service_account_of: Option<String>,
    /// Required actions or a temporary password: Keycloak refuses direct
    /// grants until the account is set up in a browser.
    pub not_fully_set_up: bool,
}

impl User {
    /// `name` as Keycloak builds it from first and last name.
    pub fn full_name(&self) -> Option<String> {
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        }
    }
}

/// Lifespans in seconds, Keycloak's defaults where the file is silent.
#[derive(Debug, Clone, Copy)]
pub struct Lifespans {
    pub access_token: i64,
    /// Refresh tokens expire after this much inactivity...
    pub session_idle: i64,
    /// ...and at the latest this long after login.
    pub session_max: i64,
}

/// The loaded realm.
#[derive(Debug)]
pub struct Realm {
    pub name: String,
    pub lifespans: Lifespans,
    /// Brute-force detection of the password grant.
    pub brute_force: crate::brute_force::Policy,
    clients: HashMap<String, Arc<Client>>,
    /// By lower-cased username (Keycloak usernames are case-insensitive).
    users: HashMap<String, Arc<User>>,
    users_by_id: HashMap<String, Arc<User>>,
    /// By lower-cased e-mail, for login with the e-mail address.
    users_by_email: HashMap<String, Arc<User>>,
}

fn invalid(msg: impl Into<String>) -> RealmError {
    RealmError::Invalid(msg.into())
}

impl Realm {
    /// Reads and checks a realm export file.
    pub fn load(path: &Path) -> Result<Realm, RealmError> {
        let text = std::fs::read(path).map_err(|source| RealmError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let export: RealmExport =
            serde_json::from_slice(&text).map_err(|source| RealmError::Parse {
                path: path.display().to_string(),
                source,
            })?;
        Realm::from_export(export)
    }

    /// Checks an export and resolves it.
    pub fn from_export(export: RealmExport) -> Result<Realm, RealmError> {
        let name = export.realm.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(format!(
                "realm name {name:?} must be non-empty and URL-safe (letters, digits, - _ .)"
            )));
        }
        if !export.enabled {
            return Err(invalid(format!(
                "realm {name} is disabled (\"enabled\": false)"
            )));
        }
        let lifespans = Lifespans {
            access_token: export.access_token_lifespan.unwrap_or(300),
            session_idle: export.sso_session_idle_timeout.unwrap_or(1800),
            session_max: export.sso_session_max_lifespan.unwrap_or(36000),
        };
        for (field, v) in [
            ("accessTokenLifespan", lifespans.access_token),
            ("ssoSessionIdleTimeout", lifespans.session_idle),
            ("ssoSessionMaxLifespan", lifespans.session_max),
        ] {
            if !(1..=366 * 24 * 3600).contains(&v) {
                return Err(invalid(format!("{field} = {v} s is out of range")));
            }
        }

        // Roles and their composites (Keycloak's built-ins exist in every realm).
        let mut composites: HashMap<String, Vec<String>> = HashMap::new();
        for builtin in ["offline_access", "uma_authorization"] {
            composites.insert(builtin.into(), Vec::new());
        }
        composites.insert(
            format!("default-roles-{name}"),
            vec!["offline_access".into(), "uma_authorization".into()],
        );
        for role in &export.roles.realm {
            let children = match (&role.composite, &role.composites) {
                (true, Some(c)) => c.realm.clone(),
                _ => Vec::new(),
            };
            if composites.insert(role.name.clone(), children).is_some()
                && !role.name.starts_with("default-roles-")
                && role.name != "offline_access"
                && role.name != "uma_authorization"
            {
                return Err(invalid(format!(
                    "realm role {} is defined twice",
                    role.name
                )));
            }
        }
        for (role, children) in &composites {
            if let Some(missing) = children.iter().find(|c| !composites.contains_key(*c)) {
                return Err(invalid(format!(
                    "composite role {role} includes unknown role {missing}"
                )));
            }
        }
        let expand = |direct: &[String]| -> Result<Vec<String>, String> {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> = direct.iter().collect();
            while let Some(r) = stack.pop() {
                let children = composites
                    .get(r)
                    .ok_or_else(|| format!("unknown realm role {r}"))?;
                if seen.insert(r.clone()) {
                    stack.extend(children.iter());
                }
            }
            Ok(seen.into_iter().collect())
        };

        // Clients.
        let mut clients: HashMap<String, Client> = HashMap::new();
        for c in export.clients {
            let id = c.client_id.clone();
            let kind = if c.public_client {
                ClientKind::Public
            } else {
                if let Some(t) = &c.client_authenticator_type
                    && t != "client-secret"
                {
                    return Err(invalid(format!(
                        "client {id}: authenticator {t} is not supported (only client-secret)"
                    )));
                }
                match &c.secret {
                    Some(s) if !s.is_empty() => ClientKind::Confidential {
                        secret: SecretString::from(s.clone()),
                    },
                    _ if c.bearer_only => ClientKind::Public,
                    _ => {
                        return Err(invalid(format!(
                            "confidential client {id} has no \"secret\" (Keycloak would generate one; give it in the file)"
                        )));
                    }
                }
            };
            let audiences = audiences_of(&c);
            let access_token_lifespan = match c.attributes.get("access.token.lifespan") {
                Some(v) if !v.is_empty() => Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    invalid(format!("client {id}: access.token.lifespan {v:?} is not a positive number of seconds"))
                })?),
                _ => None,
            };
            let client = Client {
                client_id: id.clone(),
                enabled: c.enabled,
                bearer_only: c.bearer_only,
                kind,
                service_accounts_enabled: c.service_accounts_enabled,
                direct_access_grants_enabled: c.direct_access_grants_enabled,
                service_account_user: None,
                audiences,
                access_token_lifespan,
            };
            if clients.insert(id.clone(), client).is_some() {
                return Err(invalid(format!("client {id} is defined twice")));
            }
        }

        // Users.
        let mut users = HashMap::new();
        let mut users_by_id = HashMap::new();
        let mut users_by_email = HashMap::new();
        for u in export.users {
            let username = u.username.trim().to_lowercase();
            if username.is_empty() {
                return Err(invalid("a user has an empty username"));
            }
            let id =
                u.id.clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let roles =
                expand(&u.realm_roles).map_err(|e| invalid(format!("user {username}: {e}")))?;
            let mut password = None;
            let mut temporary = false;
            for cred in &u.credentials {
                if cred.kind.as_deref().unwrap_or("password") != "password" {
                    continue; // OTP, WebAuthn...: not usable by direct grants anyway
                }
                password = Some(
                    PasswordCredential::from_export(cred)
                        .map_err(|e| invalid(format!("user {username}: {e}")))?,
                );
                temporary |= cred.temporary;
            }
            if let Some(client_id) = &u.service_account_client_id {
                let client = clients.get_mut(client_id).ok_or_else(|| {
                    invalid(format!(
                        "user {username} is the service account of unknown client {client_id}"
                    ))
                })?;
                client.service_account_user = Some(id.clone());
            }
            let user = Arc::new(User {
                id: id.clone(),
                username: username.clone(),
                enabled: u.enabled,
                email: u.email.clone().filter(|e| !e.is_empty()),
                email_verified: u.email_verified,
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                password,
                roles,
                service_account_of: u.service_account_client_id.clone(),
                not_fully_set_up: temporary || !u.required_actions.is_empty(),
            });
            if users.insert(username.clone(), user.clone()).is_some() {
                return Err(invalid(format!("user {username} is defined twice")));
            }
            if users_by_id.insert(id.clone(), user.clone()).is_some() {
                return Err(invalid(format!("user id {id} is used twice")));
            }
            if let Some(email) = &user.email {
                users_by_email.insert(email.to_lowercase(), user.clone());
            }
        }

        // A client with service accounts but no exported service-account
        // user gets one, as Keycloak creates it (default roles only).
        for client in clients.values_mut() {
            if client.service_accounts_enabled && client.service_account_user.is_none() {
                let username = format!("service-account-{}", client.client_id);
                let id = uuid::Uuid::new_v4().to_string();
                tracing::warn!(client = %client.client_id, "no service-account user in the realm file; created {username} with the default roles");
                let roles = expand(&[format!("default-roles-{name}")]).map_err(invalid)?;
                let user = Arc::new(User {
                    id: id.clone(),
                    username: username.clone(),
                    enabled: true,
                    email: None,
                    email_verified: false,
                    first_name: None,
                    last_name: None,
                    password: None,
                    roles,
                    service_account_of: Some(client.client_id.clone()),
                    not_fully_set_up: false,
                });
                users.insert(username, user.clone());
                users_by_id.insert(id.clone(), user);
                client.service_account_user = Some(id);
            }
        }

        let defaults = crate::brute_force::Policy::default();
        let brute_force = crate::brute_force::Policy {
            enabled: export.brute_force_protected,
            failure_factor: export.failure_factor.unwrap_or(defaults.failure_factor),
            wait_increment_secs: export
                .wait_increment_seconds
                .unwrap_or(defaults.wait_increment_secs),
            max_failure_wait_secs: export
                .max_failure_wait_seconds
                .unwrap_or(defaults.max_failure_wait_secs),
            max_delta_time_secs: export
                .max_delta_time_seconds
                .unwrap_or(defaults.max_delta_time_secs),
            quick_login_check_ms: export
                .quick_login_check_milli_seconds
                .unwrap_or(defaults.quick_login_check_ms),
            minimum_quick_login_wait_secs: export
                .minimum_quick_login_wait_seconds
                .unwrap_or(defaults.minimum_quick_login_wait_secs),
            permanent_lockout: export.permanent_lockout,
        };
        Ok(Realm {
            name,
            lifespans,
            brute_force,
            clients: clients.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            users,
            users_by_id,
            users_by_email,
        })
    }

    pub fn client(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }

    /// A user by username (case-insensitive) or, as Keycloak allows, e-mail.
    pub fn user_by_login(&self, login: &str) -> Option<&Arc<User>> {
        let key = login.trim().to_lowercase();
        self.users.get(&key).or_else(|| {
            key.contains('@')
                .then(|| self.users_by_email.get(&key))
                .flatten()
        })
    }

    pub fn user_by_id(&self, id: &str) -> Option<&Arc<User>> {
        self.users_by_id.get(id)
    }

    /// Access-token lifespan for `client`.
    pub fn access_token_lifespan(&self, client: &Client) -> i64 {
        client
            .access_token_lifespan
            .unwrap_or(self.lifespans.access_token)
    }

    /// The longest any token of this realm lives: how long a retired
    /// signing key must stay published.
    pub fn longest_token_lifespan(&self) -> i64 {
        let access = self
            .clients
            .values()
            .filter_map(|c| c.access_token_lifespan)
            .chain([self.lifespans.access_token])
            .max()
            .unwrap_or(self.lifespans.access_token);
        access.max(self.lifespans.session_idle.min(self.lifespans.session_max))
    }
}

/// Audiences from the client's `oidc-audience-mapper`s that add to the
/// access token: `included.client.audience` and `included.custom.audience`.
fn audiences_of(c: &ClientExport) -> Vec<String> {
    let mut out = Vec::new();
    for m in &c.protocol_mappers {
        if m.protocol_mapper != "oidc-audience-mapper" {
            continue;
        }
        if m.config.get("access.token.claim").map(String::as_str) == Some("false") {
            continue;
        }
        for key in ["included.client.audience", "included.custom.audience"] {
            if let Some(a) = m.config.get(key).filter(|a| !a.is_empty())
                && !out.contains(a)
            {
                out.push(a.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: serde_json::Value) -> Result<Realm, RealmError> {
        Realm::from_export(serde_json::from_value(v).unwrap())
    }

    /// The repository's realm file loads: clients, users, roles, audiences and lifespans as written.
    #[test]
    fn repository_realm_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../keycloak/realm.json");
        let realm = Realm::load(&path).unwrap();
        assert_eq!(realm.name, "platform");
        assert_eq!(realm.lifespans.access_token, 300);
        let svc = realm.client("platform-service").unwrap();
        assert!(matches!(svc.kind, ClientKind::Confidential { .. }));
        assert!(svc.service_accounts_enabled && !svc.direct_access_grants_enabled);
        assert_eq!(svc.audiences, ["platform-api"]);
        let sa = realm
            .user_by_id(svc.service_account_user.as_deref().unwrap())
            .unwrap();
        assert_eq!(sa.username, "service-account-platform-service");
        let cli = realm.client("platform-cli").unwrap();
        assert!(matches!(cli.kind, ClientKind::Public) && cli.direct_access_grants_enabled);
        assert_eq!(
            realm.user_by_login("ADMIN").unwrap().roles,
            ["admin", "user"]
        );
        assert_eq!(
            realm.user_by_login("alice@example.com").unwrap().username,
            "alice"
        );
        assert!(!realm.user_by_login("mallory").unwrap().enabled);
        assert!(realm.user_by_login("nobody").is_none());
    }

    /// Files that cannot work are refused with a message naming the entry.
    #[test]
    fn broken_realms_are_refused() {
        let base = |extra: serde_json::Value| {
            let mut v = json!({"realm": "r", "enabled": true});
            for (k, val) in extra.as_object().unwrap() {
                v[k] = val.clone();
            }
            v
        };
        let cases = [
            (json!({"realm": "bad name/x"}), "URL-safe"),
            (
                base(json!({"clients": [{"clientId": "c", "enabled": true}]})),
                "no \"secret\"",
            ),
            (
                base(
                    json!({"clients": [{"clientId": "c", "secret": "s"}, {"clientId": "c", "secret": "s"}]}),
                ),
                "defined twice",
            ),
            (
                base(json!({"users": [{"username": "u", "realmRoles": ["ghost"]}]})),
                "unknown realm role ghost",
            ),
            (
                base(json!({"users": [{"username": "u", "serviceAccountClientId": "nope"}]})),
                "unknown client nope",
            ),
            (
                base(
                    json!({"users": [{"username": "u", "credentials": [{"type": "password", "secretData": "{\"value\":\"AA==\",\"salt\":\"AA==\"}", "credentialData": "{\"hashIterations\":1,\"algorithm\":\"argon2\"}"}]}]}),
                ),
                "argon2",
            ),
            (base(json!({"accessTokenLifespan": 0})), "out of range"),
            (
                base(
                    json!({"roles": {"realm": [{"name": "a", "composite": true, "composites": {"realm": ["zz"]}}]}}),
                ),
                "unknown role zz",
            ),
        ];
        for (v, want) in cases {
            let err = load(v.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    /// Composite roles expand; a service-account user is created when the file has none.
    #[test]
    fn composites_and_implicit_service_account() {
        let realm = load(json!({
            "realm": "r", "enabled": true,
            "roles": {"realm": [
                {"name": "admin", "composite": true, "composites": {"realm": ["user"]}},
                {"name": "user"}
            ]},
            "clients": [{"clientId": "m", "secret": "s", "enabled": true, "serviceAccountsEnabled": true,
                         "attributes": {"access.token.lifespan": "60"}}],
            "users": [{"username": "Root", "enabled": true, "realmRoles": ["admin"]}]
        }))
        .unwrap();
        assert_eq!(
            realm.user_by_login("root").unwrap().roles,
            ["admin", "user"]
        );
        let m = realm.client("m").unwrap();
        let sa = realm
            .user_by_id(m.service_account_user.as_deref().unwrap())
            .unwrap();
        assert_eq!(
            sa.roles,
            ["default-roles-r", "offline_access", "uma_authorization"]
        );
        assert_eq!(realm.access_token_lifespan(m), 60);
    }
}
