//! What a load run needs before its first request: where the gateway is (and that it may be
//! loaded), users with tokens that stay fresh ([`TokenPool`]), and products with stock of its
//! own ([`Fixture::prepare`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use url::Url;

use super::report::TokenReport;
use super::{LoadConfig, LoadError};
use crate::observe::auth::{self, Grant};
use crate::observe::{self, Observer};

/// The service whose admin API sets stock.
const INVENTORY: &str = "inventory-service";
/// Unit price of the run's products.
pub const PRICE: &str = "9.99";
/// A token is renewed when less than this share of its lifetime is left (and at least
/// [`MIN_RENEW_MARGIN`] before it expires).
const RENEW_WHEN_LEFT: f64 = 0.25;
const MIN_RENEW_MARGIN: Duration = Duration::from_secs(20);
/// Wait before trying a failed renewal again.
const RENEW_RETRY: Duration = Duration::from_secs(2);

/// A person who logs in with the password grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl User {
    /// The dev realm's enabled people (keycloak/README.md): alice, bob, carol and admin.
    pub fn dev_realm() -> Vec<User> {
        [
            ("alice", "alice"),
            ("bob", "bob-password"),
            ("carol", "carol-password"),
            ("admin", "admin"),
        ]
        .into_iter()
        .map(|(n, p)| User {
            name: n.to_string(),
            password: p.to_string(),
        })
        .collect()
    }

    /// `name:password,name:password` (a name alone uses itself as password, as the dev realm's
    /// alice and admin do).
    pub fn parse_list(text: &str) -> Result<Vec<User>, String> {
        let mut users = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, password) = part.split_once(':').unwrap_or((part, part));
            if name.is_empty() {
                return Err(format!("`{part}` names no user: write name:password"));
            }
            users.push(User {
                name: name.to_string(),
                password: password.to_string(),
            });
        }
        if users.is_empty() {
            return Err("no users: write name:password pairs separated by commas".to_string());
        }
        Ok(users)
    }
}

/// One user's current token.
#[derive(Debug, Clone)]
struct Current {
    access: Arc<str>,
    refresh: Option<String>,
    /// When the provider said it expires.
    expires: Instant,
    /// When to renew it (or try again after a failure).
    renew_at: Instant,
}

/// The users' tokens, handed out in turn and renewed before they expire.
#[derive(Debug)]
pub struct TokenPool {
    http: reqwest::Client,
    endpoint: Url,
    issuer: Url,
    client_id: String,
    users: Vec<User>,
    /// One slot per user; requests read it, the renewer replaces it.
    tokens: Vec<RwLock<Current>>,
    /// Logins, refreshes and failures so far.
    stats: Mutex<TokenReport>,
}

impl TokenPool {
    /// Logs every user in through the stack's identity provider (the `platform-cli` client).
    pub async fn login(obs: &Observer, users: Vec<User>) -> Result<Arc<TokenPool>, LoadError> {
        let issuer = obs.issuer_in_network()?;
        let endpoint = obs.resolve(&auth::token_endpoint(&issuer)?)?;
        let mut pool = TokenPool {
            http: obs.http().clone(),
            endpoint,
            issuer,
            client_id: auth::CLI_CLIENT.to_string(),
            tokens: Vec::with_capacity(users.len()),
            users,
            stats: Mutex::new(TokenReport::default()),
        };
        for user in pool.users.clone() {
            let current = pool
                .password_grant(&user)
                .await
                .map_err(|e| LoadError::Setup {
                    step: format!("log in as {}", user.name),
                    message: e,
                })?;
            pool.tokens.push(RwLock::new(current));
        }
        if let Ok(mut s) = pool.stats.lock() {
            s.users = pool.users.iter().map(|u| u.name.clone()).collect();
            s.logins = pool.users.len() as u64;
        }
        Ok(Arc::new(pool))
    }

    /// Fixed tokens given by the caller (a token from `platform token`, tests), never renewed;
    /// `issuer` only names where they came from.
    pub fn fixed(
        http: reqwest::Client,
        issuer: Url,
        tokens: Vec<(String, String)>,
    ) -> Arc<TokenPool> {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let (users, slots): (Vec<User>, Vec<RwLock<Current>>) = tokens
            .into_iter()
            .map(|(name, token)| {
                (
                    User {
                        name,
                        password: String::new(),
                    },
                    RwLock::new(Current {
                        access: Arc::from(token.as_str()),
                        refresh: None,
                        expires: far,
                        renew_at: far,
                    }),
                )
            })
            .unzip();
        Arc::new(TokenPool {
            http,
            endpoint: issuer.clone(),
            issuer,
            client_id: auth::CLI_CLIENT.to_string(),
            stats: Mutex::new(TokenReport {
                users: users.iter().map(|u| u.name.clone()).collect(),
                ..TokenReport::default()
            }),
            users,
            tokens: slots,
        })
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user for the `n`-th request of a kind and their token: each kind takes the users in
    /// turn on its own, so a mix never pins one kind to one user.
    pub fn pick(&self, n: u64) -> (usize, Arc<str>) {
        let i = (n % self.tokens.len().max(1) as u64) as usize;
        (i, self.token_of(i))
    }

    /// User `i`'s current token.
    pub fn token_of(&self, i: usize) -> Arc<str> {
        match self.tokens.get(i).map(|t| t.read()) {
            Some(Ok(c)) => c.access.clone(),
            _ => Arc::from(""),
        }
    }

    /// What the pool did so far.
    pub fn report(&self) -> TokenReport {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Renews tokens until `cancel`: a refresh-token grant when one is due, a new login when
    /// that fails; on failure the old token stays in use and the renewal is tried again soon.
    pub fn spawn_renewer(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.clone();
        tokio::spawn(async move {
            loop {
                pool.renew_due().await;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        })
    }

    /// Renews every token that is due now.
    pub async fn renew_due(&self) {
        for (i, user) in self.users.iter().enumerate() {
            let due = match self.tokens[i].read() {
                Ok(c) => (c.renew_at <= Instant::now()).then(|| c.refresh.clone()),
                Err(_) => None,
            };
            let Some(refresh) = due else { continue };
            let refreshed = match refresh {
                Some(rt) => self
                    .grant(&Grant::Refresh {
                        client_id: self.client_id.clone(),
                        refresh_token: rt,
                    })
                    .await
                    .map(|c| (c, true)),
                None => Err("no refresh token".to_string()),
            };
            let result = match refreshed {
                Ok(ok) => Ok(ok),
                Err(_) => self.password_grant(user).await.map(|c| (c, false)),
            };
            let mut stats = self.stats.lock().ok();
            match result {
                Ok((current, was_refresh)) => {
                    if let Ok(mut slot) = self.tokens[i].write() {
                        *slot = current;
                    }
                    if let Some(s) = stats.as_mut() {
                        if was_refresh {
                            s.refreshes += 1;
                        } else {
                            s.logins += 1;
                        }
                    }
                }
                Err(e) => {
                    if let Ok(mut slot) = self.tokens[i].write() {
                        slot.renew_at = Instant::now() + RENEW_RETRY;
                    }
                    if let Some(s) = stats.as_mut() {
                        s.failures += 1;
                        s.last_failure = Some(format!("{}: {e}", user.name));
                    }
                }
            }
        }
    }

    async fn password_grant(&self, user: &User) -> Result<Current, String> {
        self.grant(&Grant::Password {
            client_id: self.client_id.clone(),
            username: user.name.clone(),
            password: user.password.clone(),
        })
        .await
    }

    async fn grant(&self, grant: &Grant) -> Result<Current, String> {
        let set = auth::request_token(&self.http, &self.endpoint, &self.issuer, grant)
            .await
            .map_err(|e| e.to_string())?;
        set.check_issuer().map_err(|e| e.to_string())?;
        let now = Instant::now();
        let lifetime = Duration::from_secs(set.token.expires_in.max(1));
        let margin = lifetime
            .mul_f64(RENEW_WHEN_LEFT)
            .max(MIN_RENEW_MARGIN)
            .min(lifetime / 2);
        Ok(Current {
            access: Arc::from(set.token.access_token.as_str()),
            refresh: set.token.refresh_token.clone(),
            expires: now + lifetime,
            renew_at: now + lifetime - margin,
        })
    }

    /// Seconds until the soonest token expires (for progress lines).
    pub fn soonest_expiry(&self) -> Option<Duration> {
        self.tokens
            .iter()
            .filter_map(|t| t.read().ok().map(|c| c.expires))
            .min()
            .map(|e| e.saturating_duration_since(Instant::now()))
    }
}

/// A product of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub sku: String,
}

/// How to prepare a run.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    /// Products to create (orders and reads spread over them).
    pub products: usize,
    /// Stock per product; `None`: enough for the planned orders, with room to spare.
    pub stock: Option<u64>,
    /// Who sends the requests.
    pub users: Vec<User>,
    /// The gateway's URL; `None`: its published port on this machine.
    pub gateway: Option<Url>,
}

impl User {
    /// `$PLATFORM_LOAD_USERS` (`name:password,...`) when set and valid, else
    /// [`User::dev_realm`].
    pub fn from_env_or_dev_realm() -> Vec<User> {
        std::env::var("PLATFORM_LOAD_USERS")
            .ok()
            .and_then(|v| User::parse_list(&v).ok())
            .unwrap_or_else(User::dev_realm)
    }
}

impl Default for FixtureOptions {
    /// 4 products, stock for the planned orders, the users of `$PLATFORM_LOAD_USERS` or the
    /// dev realm, the published gateway.
    fn default() -> Self {
        FixtureOptions {
            products: 4,
            stock: None,
            users: User::from_env_or_dev_realm(),
            gateway: None,
        }
    }
}

/// Everything the requests refer to.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The gateway's base URL.
    pub gateway: Url,
    /// Users' tokens; `None` when the mix needs none.
    pub tokens: Option<Arc<TokenPool>>,
    /// The run's products.
    pub products: Vec<Product>,
    /// Names the run's SKUs and idempotency keys.
    pub run_id: String,
}

impl Fixture {
    /// Only the gateway, for mixes that need no token or product (`health`).
    pub fn bare(gateway: Url) -> Fixture {
        Fixture {
            gateway,
            tokens: None,
            products: Vec::new(),
            run_id: run_id(),
        }
    }

    /// Finds and checks the gateway, logs the users in and creates products with stock, as
    /// far as `config`'s mix needs them; the orders it plans size the default stock.
    pub async fn prepare(
        obs: &Observer,
        config: &LoadConfig,
        opts: &FixtureOptions,
    ) -> Result<Fixture, LoadError> {
        let (mix, planned_orders) = (&config.mix, config.planned_orders());
        let gateway = match &opts.gateway {
            Some(url) => url.clone(),
            None => crate::commands::smoke::gateway_url(obs)?,
        };
        check_target(&gateway, obs).await?;
        let mut fixture = Fixture::bare(gateway);
        if mix.needs_tokens() {
            if opts.users.is_empty() {
                return Err(LoadError::Config(
                    "the mix needs users, and none are given".into(),
                ));
            }
            fixture.tokens = Some(TokenPool::login(obs, opts.users.clone()).await?);
        }
        if mix.needs_products() {
            let n = opts.products.clamp(1, 100);
            let stock = opts
                .stock
                .unwrap_or_else(|| (planned_orders / n as u64 + 1).saturating_mul(2).max(1000));
            fixture.products = create_products(obs, &fixture, n, stock).await?;
        }
        Ok(fixture)
    }
}

/// A run id: milliseconds since the epoch in base 36, short and unique enough per machine.
fn run_id() -> String {
    let mut n = chrono::Utc::now().timestamp_millis().unsigned_abs();
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Creates `n` products through the gateway and gives each `stock` units at inventory-service
/// (its admin API), as the dev realm's admin.
async fn create_products(
    obs: &Observer,
    fixture: &Fixture,
    n: usize,
    stock: u64,
) -> Result<Vec<Product>, LoadError> {
    let setup = |step: &str, e: String| LoadError::Setup {
        step: step.to_string(),
        message: e,
    };
    let admin = auth::fetch_token(obs, &Grant::default_user())
        .await
        .map_err(|e| setup("log in as the admin", e.to_string()))?
        .token
        .access_token;
    let inventory = obs.service_url(INVENTORY)?;
    let mut products = Vec::with_capacity(n);
    for k in 0..n {
        let sku = format!("load-{}-{k}", fixture.run_id);
        let url = join(&fixture.gateway, "api/product")?;
        let req = obs
            .http()
            .post(url.clone())
            .bearer_auth(&admin)
            .json(&serde_json::json!({
                "skuCode": sku,
                "name": format!("Load test product {k}"),
                "description": "created by platform load",
                "price": PRICE,
            }));
        let created: serde_json::Value =
            observe::send_json::<serde_json::Value>("create a product", &url, req)
                .await
                .map_err(|e| setup("create a product", e.to_string()))?;
        let id = created["id"]
            .as_str()
            .ok_or_else(|| {
                setup(
                    "create a product",
                    format!("the answer has no id: {created}"),
                )
            })?
            .to_string();
        let url = join(&inventory, &format!("admin/inventory/{sku}"))?;
        let req = obs
            .http()
            .put(url.clone())
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "quantity": stock }));
        let _: serde_json::Value = observe::send_json("set stock", &url, req)
            .await
            .map_err(|e| setup("set stock", e.to_string()))?;
        products.push(Product { id, sku });
    }
    Ok(products)
}

fn join(base: &Url, path: &str) -> Result<Url, LoadError> {
    base.join(path)
        .map_err(|e| LoadError::Config(format!("bad URL {base}{path}: {e}")))
}

/// Load may only go to this machine: a loopback address, or an address of one of the stack's
/// own containers (on a network the project made). Anything else is refused before a single
/// request is sent.
pub async fn check_target(url: &Url, obs: &Observer) -> Result<(), LoadError> {
    let stack_addresses: Vec<IpAddr> = obs
        .containers()
        .iter()
        .flat_map(|c| c.addresses.values())
        .filter_map(|a| a.parse().ok())
        .collect();
    check_target_against(url, &stack_addresses).await
}

/// [`check_target`] with the allowed container addresses given.
pub async fn check_target_against(url: &Url, allowed: &[IpAddr]) -> Result<(), LoadError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LoadError::Target(format!("{url} is not an http(s) URL")));
    }
    let host = url
        .host_str()
        .ok_or_else(|| LoadError::Target(format!("{url} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| LoadError::Target(format!("cannot resolve {host}: {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    let refused: Vec<String> = addresses
        .iter()
        .filter(|ip| !ip.is_loopback() && !allowed.contains(ip))
        .map(ToString::to_string)
        .collect();
    if addresses.is_empty() || !refused.is_empty() {
        return Err(LoadError::Target(format!(
            "refusing to send load to {url}: {} is neither a loopback address nor one of the stack's containers",
            if refused.is_empty() {
                host.to_string()
            } else {
                refused.join(", ")
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback addresses and names, and the stack's own container addresses, may be loaded;
    /// any other address is refused with a message naming it.
    #[tokio::test]
    async fn targets() {
        let stack: Vec<IpAddr> = vec!["172.30.0.5".parse().unwrap()];
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
            "http://172.30.0.5:8080",
        ] {
            check_target_against(&Url::parse(ok).unwrap(), &stack)
                .await
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://172.30.0.6:8080",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
        ] {
            let e = check_target_against(&Url::parse(bad).unwrap(), &stack)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("refusing"), "{bad}: {e}");
        }
        assert!(
            check_target_against(&Url::parse("ftp://127.0.0.1/").unwrap(), &stack)
                .await
                .is_err()
        );
    }

    /// User lists read as name:password pairs; a bare name is its own password.
    #[test]
    fn user_lists() {
        let u = User::parse_list("alice, bob:secret").unwrap();
        assert_eq!(u[0].password, "alice");
        assert_eq!(u[1].name, "bob");
        assert_eq!(u[1].password, "secret");
        assert!(User::parse_list(" , ").is_err());
        assert!(User::parse_list(":x").is_err());
        assert_eq!(User::dev_realm().len(), 4);
    }

    /// Run ids are short base-36 text.
    #[test]
    fn run_ids() {
        let id = run_id();
        assert!(
            id.len() >= 8 && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id}"
        );
    }
}
