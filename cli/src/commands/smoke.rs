//! `platform smoke [--junit FILE] [--timeout T]`: the end-to-end check CI runs against a running
//! stack. One order travels the whole system and every step is timed:
//!
//! 1. `stack`: the stack runs and every service the check needs has a running instance.
//! 2. `token`: a password-grant token from the identity provider (user admin, client
//!    platform-cli), whose issuer must be the one the services check.
//! 3. `create product`: `POST /api/product` through the gateway (published port).
//! 4. `set stock`: `PUT /admin/inventory/{sku}` on an inventory-service instance (admin API,
//!    not routed by the gateway), with the same token (admin has the `admin` role).
//! 5. `place order`: `POST /api/order` through the gateway; its `X-Trace-Id` names the trace.
//! 6. `notification`: `GET /api/notifications?orderNumber=` through the gateway until the
//!    notification-service has stored it (Kafka in between).
//! 7. `trace`: the trace collector holds the order's trace with spans from every hop
//!    (api-gateway, order-service, inventory-service, notification-service); a missing hop
//!    fails the step and names it, with the spans that did arrive.
//!
//! A failed step stops the run (later steps are reported as skipped). Everything is bounded:
//! one product, one order, polls stop at the step's limit or the overall `--timeout`. The exit
//! code is 1 on any failure; `--junit` writes a JUnit XML report either way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use url::Url;

use super::Global;
use crate::observe::auth::{self, Grant};
use crate::observe::traces::{self, Collector};
use crate::observe::{self, ObserveError, Observer, Route};
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Error, Result, output};

/// The entry point users and the smoke's shopping steps go through.
pub const GATEWAY: &str = "api-gateway";
const PRODUCT: &str = "product-service";
const INVENTORY: &str = "inventory-service";
const ORDER: &str = "order-service";
const NOTIFICATION: &str = "notification-service";

/// Services whose spans the order's trace must contain: every hop of an order.
pub const TRACE_HOPS: [&str; 4] = [GATEWAY, ORDER, INVENTORY, NOTIFICATION];

/// Units of stock the check puts on its product.
const STOCK: u64 = 10;
/// Unit price of the check's product.
const PRICE: &str = "19.99";

/// `platform smoke` arguments.
#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Also write the result as JUnit XML to this file (written on failure too).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Fail when the whole check has not passed after this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The gateway's URL [default: the api-gateway's published port on localhost].
    #[arg(long, env = "PLATFORM_GATEWAY_URL")]
    pub gateway: Option<Url>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Not run because an earlier step failed.
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// What it found (passed) or why it failed.
    pub detail: String,
}

/// The order's trace as the collector has it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub trace_id: String,
    /// The collector's UI page of the trace.
    pub link: String,
    pub spans: usize,
    /// Span names by service.
    pub services: BTreeMap<String, BTreeSet<String>>,
    /// Required hops without a span.
    pub missing: Vec<String>,
}

/// What `smoke --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    pub stack: String,
    pub passed: bool,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<String>,
    pub steps: Vec<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceReport>,
}

/// The steps in order, with the longest each may take.
const STEPS: [(&str, Duration); 7] = [
    ("stack", Duration::from_secs(10)),
    ("token", Duration::from_secs(10)),
    ("create product", Duration::from_secs(15)),
    ("set stock", Duration::from_secs(15)),
    ("place order", Duration::from_secs(20)),
    ("notification", Duration::from_secs(30)),
    ("trace", Duration::from_secs(30)),
];

pub async fn run(g: &Global, args: SmokeArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let stack_name = stack.name.clone();
    let obs = match connect(stack).await {
        Ok(obs) => obs,
        Err(e) => {
            // CI reads the JUnit file: say there why nothing ran.
            if let Some(path) = &args.junit {
                let report = SmokeReport::not_run(&stack_name, &e);
                write_junit(path, &report)?;
            }
            return Err(e);
        }
    };
    let json = g.json;
    let report = smoke(obs, args.gateway.clone(), args.timeout, |step| {
        if !json {
            crate::outln!("{}", step_line(step));
        }
    })
    .await;
    if let Some(path) = &args.junit {
        write_junit(path, &report)?;
    }
    if json {
        output::json(&report)?;
    } else {
        crate::outln!("{}", report.summary());
    }
    if report.passed {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}

async fn connect(stack: crate::stack::Stack) -> Result<Observer> {
    let rt = Runtime::connect().await?;
    Ok(Observer::new(rt, stack).await?)
}

fn write_junit(path: &std::path::Path, report: &SmokeReport) -> Result<()> {
    let xml = report.to_junit(&chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string());
    std::fs::write(path, xml).map_err(|e| {
        Error::Output(format!(
            "cannot write the JUnit report {}: {e}",
            path.display()
        ))
    })
}

/// One step as a line: `  ok    token           0.12s  user admin, ...`.
pub fn step_line(step: &StepReport) -> String {
    let mark = match step.outcome {
        Outcome::Passed => "ok",
        Outcome::Failed => "FAIL",
        Outcome::Skipped => "skip",
    };
    format!(
        "  {mark:<5} {:<15} {:>6.2}s  {}",
        step.name, step.seconds, step.detail
    )
}

/// Runs the check; `on_step` sees each step as it ends.
pub async fn smoke(
    obs: Observer,
    gateway: Option<Url>,
    timeout: Duration,
    on_step: impl Fn(&StepReport),
) -> SmokeReport {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut run = Run {
        obs,
        gateway,
        token: None,
        sku: format!(
            "smoke-{}-{:04x}",
            chrono::Utc::now().timestamp_millis(),
            rand_u16()
        ),
        product_id: None,
        order_number: None,
        trace_id: None,
        trace: None,
    };
    let mut steps = Vec::new();
    let mut failed = false;
    for (index, (name, limit)) in STEPS.iter().enumerate() {
        if failed {
            let step = StepReport {
                name: name.to_string(),
                outcome: Outcome::Skipped,
                seconds: 0.0,
                detail: "an earlier step failed".to_string(),
            };
            on_step(&step);
            steps.push(step);
            continue;
        }
        let t0 = Instant::now();
        let left = deadline.saturating_duration_since(t0);
        let step_deadline = t0 + (*limit).min(left);
        let budget = step_deadline.saturating_duration_since(t0);
        // The steps stop their own polls at the deadline with a precise message; the timeout
        // is the backstop for a request that hangs.
        let result = match tokio::time::timeout(
            budget + Duration::from_secs(1),
            run.step(index, step_deadline),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no result within {budget:.1?}")),
        };
        let seconds = t0.elapsed().as_secs_f64();
        let step = match result {
            Ok(detail) => StepReport {
                name: name.to_string(),
                outcome: Outcome::Passed,
                seconds,
                detail,
            },
            Err(detail) => {
                failed = true;
                StepReport {
                    name: name.to_string(),
                    outcome: Outcome::Failed,
                    seconds,
                    detail,
                }
            }
        };
        on_step(&step);
        steps.push(step);
    }
    SmokeReport {
        stack: run.obs.stack().name.clone(),
        passed: !failed,
        seconds: started.elapsed().as_secs_f64(),
        gateway: run.gateway.as_ref().map(|u| u.to_string()),
        order_number: run.order_number.clone(),
        steps,
        trace: run.trace.take(),
    }
}

/// A few random bits for the SKU, so runs never collide (no RNG crate needed for this).
fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(since_epoch);
    (h.finish() & 0xffff) as u16
}

/// What the steps hand to each other.
struct Run {
    obs: Observer,
    gateway: Option<Url>,
    token: Option<String>,
    sku: String,
    product_id: Option<String>,
    order_number: Option<String>,
    trace_id: Option<String>,
    trace: Option<TraceReport>,
}

/// A step's (or a request's) result, with the failure as text for the report.
type Checked<T> = std::result::Result<T, String>;
type StepResult = Checked<String>;

impl Run {
    async fn step(&mut self, index: usize, deadline: Instant) -> StepResult {
        match index {
            0 => self.stack(),
            1 => self.token().await,
            2 => self.create_product().await,
            3 => self.set_stock().await,
            4 => self.place_order().await,
            5 => self.notification(deadline).await,
            _ => self.trace(deadline).await,
        }
    }

    fn bearer(&self) -> Checked<&str> {
        self.token
            .as_deref()
            .ok_or_else(|| "no token (the token step did not pass)".to_string())
    }

    fn gateway(&self) -> Checked<&Url> {
        self.gateway
            .as_ref()
            .ok_or_else(|| "no gateway URL".to_string())
    }

    fn stack(&mut self) -> StepResult {
        self.obs.require_running().map_err(|e| with_hint(&e))?;
        let needed = [GATEWAY, PRODUCT, INVENTORY, ORDER, NOTIFICATION];
        let down: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|s| self.obs.running(s).is_empty())
            .collect();
        if !down.is_empty() {
            return Err(format!(
                "no running instance of {} (`platform up {}` starts them)",
                down.join(", "),
                down.join(" ")
            ));
        }
        if self.gateway.is_none() {
            self.gateway = Some(gateway_url(&self.obs).map_err(|e| with_hint(&e))?);
        }
        let running = self
            .obs
            .containers()
            .iter()
            .filter(|c| c.state == "running")
            .count();
        Ok(format!(
            "{running} containers running; gateway {}",
            self.gateway()?
        ))
    }

    async fn token(&mut self) -> StepResult {
        let grant = Grant::default_user();
        let set = auth::fetch_token(&self.obs, &grant)
            .await
            .map_err(|e| with_hint(&e))?;
        let user = match &grant {
            Grant::Password { username, .. } => username.clone(),
            Grant::ClientCredentials { client_id, .. } | Grant::Refresh { client_id, .. } => {
                client_id.clone()
            }
        };
        self.token = Some(set.token.access_token.clone());
        Ok(format!(
            "user {user}, issuer {}, expires in {}s",
            set.token_issuer().unwrap_or_default(),
            set.token.expires_in
        ))
    }

    async fn create_product(&mut self) -> StepResult {
        let url = join(self.gateway()?, "api/product")?;
        let body = serde_json::json!({
            "skuCode": self.sku,
            "name": "Smoke test product",
            "description": "created by platform smoke",
            "price": PRICE,
        });
        let req = self
            .obs
            .http()
            .post(url.clone())
            .bearer_auth(self.bearer()?)
            .json(&body);
        let created: serde_json::Value = call("create a product", &url, req).await?;
        let id = created["id"]
            .as_str()
            .ok_or_else(|| format!("the answer has no product id: {created}"))?
            .to_string();
        self.product_id = Some(id.clone());
        Ok(format!("product {id}, sku {}", self.sku))
    }

    async fn set_stock(&mut self) -> StepResult {
        let base = self.obs.service_url(INVENTORY).map_err(|e| with_hint(&e))?;
        let url = join(&base, &format!("admin/inventory/{}", self.sku))?;
        let req = self
            .obs
            .http()
            .put(url.clone())
            .bearer_auth(self.bearer()?)
            .json(&serde_json::json!({ "quantity": STOCK }));
        let stock: serde_json::Value = call("set stock", &url, req).await?;
        Ok(format!(
            "{} units of {} at {}",
            stock["quantity"].as_u64().unwrap_or(STOCK),
            self.sku,
            base.as_str().trim_end_matches('/')
        ))
    }

    async fn place_order(&mut self) -> StepResult {
        let url = join(self.gateway()?, "api/order")?;
        let body = serde_json::json!({
            "lines": [{ "skuCode": self.sku, "price": PRICE, "quantity": 1 }],
        });
        let req = self
            .obs
            .http()
            .post(url.clone())
            .bearer_auth(self.bearer()?)
            .json(&body);
        let what = "place an order";
        let res = observe::send(what, &url, req)
            .await
            .map_err(|e| e.to_string())?;
        let trace_id = res
            .headers()
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let res = observe::expect_success(what, &url, res)
            .await
            .map_err(|e| e.to_string())?;
        let order: serde_json::Value = observe::read_json(what, &url, res)
            .await
            .map_err(|e| e.to_string())?;
        let number = order["orderNumber"]
            .as_str()
            .ok_or_else(|| format!("the answer has no orderNumber: {order}"))?
            .to_string();
        let trace_id =
            trace_id.ok_or_else(|| "the gateway's answer has no X-Trace-Id header".to_string())?;
        self.order_number = Some(number.clone());
        self.trace_id = Some(trace_id.clone());
        Ok(format!(
            "order {number} ({}), trace {trace_id}",
            order["status"].as_str().unwrap_or("?")
        ))
    }

    async fn notification(&mut self, deadline: Instant) -> StepResult {
        let number = self
            .order_number
            .clone()
            .ok_or_else(|| "no order number".to_string())?;
        let mut url = join(self.gateway()?, "api/notifications")?;
        url.query_pairs_mut().append_pair("orderNumber", &number);
        let t0 = Instant::now();
        loop {
            let req = self.obs.http().get(url.clone()).bearer_auth(self.bearer()?);
            let last = match call::<serde_json::Value>("read notifications", &url, req).await {
                Ok(page) => {
                    if let Some(n) = page["items"].as_array().and_then(|items| items.first()) {
                        return Ok(format!(
                            "notification {} \"{}\" after {:.2}s",
                            n["id"],
                            n["subject"].as_str().unwrap_or(""),
                            t0.elapsed().as_secs_f64()
                        ));
                    }
                    "none stored yet".to_string()
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "no notification for order {number} after {:.1}s (last: {last}); \
                     `platform logs notification-service` and `platform logs order-service` show why",
                    t0.elapsed().as_secs_f64()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn trace(&mut self, deadline: Instant) -> StepResult {
        let trace_id = self
            .trace_id
            .clone()
            .ok_or_else(|| "no trace id".to_string())?;
        let collector = Collector::of(&self.obs).map_err(|e| with_hint(&e))?;
        let link = collector.link(&trace_id);
        let t0 = Instant::now();
        let mut spans = Vec::new();
        let mut last_error = None;
        loop {
            match collector.trace(&self.obs, &trace_id).await {
                Ok(Some(found)) => {
                    spans = found;
                    last_error = None;
                }
                Ok(None) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            let missing = traces::missing_services(&spans, &TRACE_HOPS);
            let report = TraceReport {
                trace_id: trace_id.clone(),
                link: link.clone(),
                spans: spans.len(),
                services: traces::span_names(&spans),
                missing: missing.iter().map(|s| s.to_string()).collect(),
            };
            if missing.is_empty() {
                let detail = format!(
                    "{} spans from {} after {:.2}s: {link}",
                    spans.len(),
                    report
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    t0.elapsed().as_secs_f64()
                );
                self.trace = Some(report);
                return Ok(detail);
            }
            if Instant::now() >= deadline {
                let seen = if report.services.is_empty() {
                    "no spans".to_string()
                } else {
                    report
                        .services
                        .iter()
                        .map(|(s, names)| {
                            format!(
                                "{s} ({})",
                                names.iter().cloned().collect::<Vec<_>>().join(", ")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                self.trace = Some(report);
                return Err(format!(
                    "trace {trace_id} has no spans from {} after {:.1}s; it has: {seen}{}; {link}",
                    missing.join(", "),
                    t0.elapsed().as_secs_f64(),
                    last_error
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The gateway as users reach it: its published port on localhost, else whatever route the
/// observer has to it.
pub fn gateway_url(obs: &Observer) -> observe::Result<Url> {
    let localhost = Route::Published {
        host: "localhost".to_string(),
    };
    let network = obs.stack().network_name();
    let port = obs.stack().services.get(GATEWAY).and_then(|s| s.port);
    for c in obs.running(GATEWAY) {
        if let Some(port) = port
            && let Ok(url) = localhost.base_url(c, &network, port)
        {
            return Ok(url);
        }
    }
    obs.service_url(GATEWAY)
}

fn join(base: &Url, path: &str) -> Checked<Url> {
    base.join(path)
        .map_err(|e| format!("bad URL {base}{path}: {e}"))
}

/// Sends, expects 2xx and reads JSON, with the error as text for the report.
async fn call<T: serde::de::DeserializeOwned>(
    what: &str,
    url: &Url,
    req: reqwest::RequestBuilder,
) -> Checked<T> {
    observe::send_json(what, url, req)
        .await
        .map_err(|e| e.to_string())
}

/// An error with its hint, as one line for the report.
fn with_hint(e: &ObserveError) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}

impl SmokeReport {
    /// A report of a check that could not start (Docker unreachable): the `stack` step
    /// failed with the error and its hint, the others skipped.
    pub fn not_run(stack: &str, error: &Error) -> Self {
        let detail = match error.hint() {
            Some(h) => format!("{error} (hint: {h})"),
            None => error.to_string(),
        };
        let steps = STEPS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| StepReport {
                name: name.to_string(),
                outcome: if i == 0 {
                    Outcome::Failed
                } else {
                    Outcome::Skipped
                },
                seconds: 0.0,
                detail: if i == 0 {
                    detail.clone()
                } else {
                    "an earlier step failed".to_string()
                },
            })
            .collect();
        Self {
            stack: stack.to_string(),
            passed: false,
            seconds: 0.0,
            gateway: None,
            order_number: None,
            steps,
            trace: None,
        }
    }

    /// The last line of the text output.
    pub fn summary(&self) -> String {
        if self.passed {
            format!(
                "smoke passed: {} steps in {:.2}s",
                self.steps.len(),
                self.seconds
            )
        } else {
            let failed = self
                .steps
                .iter()
                .find(|s| s.outcome == Outcome::Failed)
                .map_or("?", |s| s.name.as_str());
            format!("smoke FAILED at step `{failed}` after {:.2}s", self.seconds)
        }
    }

    /// The report as JUnit XML (one test suite, one test case per step); `timestamp` is the
    /// suite's start as `YYYY-MM-DDTHH:MM:SS` (UTC). Written by quick-junit, like the scenarios'
    /// report.
    pub fn to_junit(&self, timestamp: &str) -> String {
        use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
        let time = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
        let mut report = Report::new("platform smoke");
        report.set_time(time(self.seconds));
        let mut suite = TestSuite::new(format!("platform smoke (stack {})", self.stack));
        suite.set_time(time(self.seconds));
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S") {
            suite.set_timestamp(t.and_utc().fixed_offset());
        }
        for s in &self.steps {
            // quick-junit's XmlString escapes markup and drops what XML cannot carry.
            let detail = s.detail.clone();
            let status = match s.outcome {
                Outcome::Passed => TestCaseStatus::success(),
                Outcome::Failed => {
                    let mut f = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    f.set_message(first_line(&detail))
                        .set_type("smoke")
                        .set_description(detail.clone());
                    f
                }
                Outcome::Skipped => {
                    let mut k = TestCaseStatus::skipped();
                    k.set_message(detail.clone());
                    k
                }
            };
            let mut case = TestCase::new(s.name.clone(), status);
            case.set_classname("platform.smoke")
                .set_time(time(s.seconds));
            if s.outcome == Outcome::Passed {
                case.set_system_out(detail);
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
        report
            .to_string()
            .unwrap_or_else(|e| format!("<!-- the JUnit report could not be written: {e} -->\n"))
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps print as aligned lines with their outcome and time.
    #[test]
    fn step_lines() {
        let s = StepReport {
            name: "token".into(),
            outcome: Outcome::Failed,
            seconds: 0.5,
            detail: "refused".into(),
        };
        assert_eq!(step_line(&s), "  FAIL  token             0.50s  refused");
    }
}
