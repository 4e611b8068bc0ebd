//! Application-layer faults through the kit's `/admin/faults` endpoint, which every service
//! serves behind the admin role (like `/admin/breakers`): the CLI posts a
//! [`fault_model::FaultRequest`] to one instance with the record's id; the service applies it to
//! its own requests and drops it at its end by itself. `kill-app` makes the process exit.

use std::time::Duration;

use chrono::Utc;
use fault_model::{AppFault, Assault, FaultRequest};
use url::Url;

use super::record::{FaultRecord, Revert};
use super::spec::Kind;
use super::{Ctx, EFFECT_TIMEOUT, FaultError, Result, wait_until};
use crate::observe::auth::{self, Grant};
use crate::observe::{self, Observer};
use crate::runtime::{ContainerInfo, Runtime};

/// The path of the endpoint under each service.
pub const PATH: &str = "/admin/faults";

/// An admin token and the means to reach the stack's services.
#[derive(Debug)]
pub struct AdminClient {
    obs: Observer,
    token: String,
}

impl AdminClient {
    /// Gets a service-account token with the admin role from the stack's identity provider.
    pub async fn connect(ctx: &Ctx) -> Result<AdminClient> {
        let obs = ctx.observer().await?;
        let token = auth::fetch_token(&obs, &Grant::default_service()).await?;
        Ok(AdminClient {
            obs,
            token: token.token.access_token,
        })
    }

    /// The fault endpoint of one container.
    fn url(&self, info: &ContainerInfo, suffix: &str) -> Result<Url> {
        let base = self.obs.container_url(info)?;
        base.join(&format!("{PATH}{suffix}"))
            .map_err(|e| FaultError::State {
                message: format!("bad fault URL under {base}: {e}"),
            })
    }

    /// The faults one container's service holds.
    pub async fn list(&self, info: &ContainerInfo) -> Result<Vec<AppFault>> {
        let url = self.url(info, "")?;
        Ok(self
            .obs
            .get_json("list application faults", &url, Some(&self.token))
            .await?)
    }

    async fn post(&self, info: &ContainerInfo, request: &FaultRequest) -> Result<()> {
        let url = self.url(info, "")?;
        let what = "inject an application fault";
        let req = self
            .obs
            .http()
            .post(url.clone())
            .bearer_auth(&self.token)
            .json(request);
        let res = observe::send(what, &url, req).await?;
        observe::expect_success(what, &url, res).await?;
        Ok(())
    }

    async fn delete(&self, info: &ContainerInfo, id: &str) -> Result<()> {
        let url = self.url(info, &format!("/{id}"))?;
        let what = "remove an application fault";
        let req = self.obs.http().delete(url.clone()).bearer_auth(&self.token);
        let res = observe::send(what, &url, req).await?;
        // Already gone (expired, or the process restarted) is what a revert wants.
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        observe::expect_success(what, &url, res).await?;
        Ok(())
    }
}

/// The request for a record (pure, tested).
pub fn request_for(rec: &FaultRecord, duration: Duration) -> Option<FaultRequest> {
    let o = &rec.options;
    let assault = match rec.kind {
        Kind::AppLatency => Assault::Latency {
            min_ms: o.min_ms.unwrap_or(0),
            max_ms: o.max_ms.unwrap_or(0),
        },
        Kind::AppError => Assault::Error {
            status: o.status.unwrap_or(500),
        },
        Kind::KillApp => Assault::Kill,
        _ => return None,
    };
    Some(FaultRequest {
        id: Some(rec.id.clone()),
        assault,
        share: o.share.unwrap_or(100.0),
        routes: o.routes.clone(),
        duration_ms: u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(fault_model::MIN_DURATION_MS, fault_model::MAX_DURATION_MS),
    })
}

/// Posts the fault to the record's container and waits until it is in effect (listed by the
/// service; for `kill-app`, the container has exited).
pub async fn apply(
    ctx: &Ctx,
    admin: &AdminClient,
    rec: &mut FaultRecord,
    duration: Duration,
) -> Result<()> {
    let request = request_for(rec, duration).ok_or_else(|| FaultError::State {
        message: format!("{} is not an application fault", rec.kind),
    })?;
    request.validate().map_err(|e| FaultError::State {
        message: format!("bad application fault: {e}"),
    })?;
    let info = ctx.rt.inspect_container(&rec.container).await?;
    if rec.kind != Kind::KillApp {
        rec.revert = Revert::Application {
            app_id: rec.id.clone(),
        };
    }
    let before = ctx.rt.container_facts(&rec.container).await?.started_at;
    admin
        .post(&info, &request)
        .await
        .map_err(|e| FaultError::Service {
            container: rec.container.clone(),
            message: e.to_string(),
        })?;
    let effective = if rec.kind == Kind::KillApp {
        wait_until(EFFECT_TIMEOUT, || exited(&ctx.rt, &rec.container, &before)).await?
    } else {
        admin.list(&info).await?.iter().any(|f| f.id == rec.id)
    };
    if !effective {
        return Err(FaultError::NotEffective {
            id: rec.id.clone(),
            kind: rec.kind,
            container: rec.container.clone(),
            why: if rec.kind == Kind::KillApp {
                "the process did not exit".into()
            } else {
                "the service does not list it".into()
            },
        });
    }
    Ok(())
}

/// True once the process that was running when `before` was its start time has exited (a
/// restart policy may already have started a new one: then the start time moved on).
async fn exited(rt: &Runtime, container: &str, before: &str) -> Result<bool> {
    let facts = rt.container_facts(container).await?;
    Ok(!facts.running || facts.started_at != before)
}

/// Removes the fault from the service (or, for `kill-app`, starts the container) and checks
/// that the service no longer lists it.
pub async fn revert(ctx: &Ctx, rec: &FaultRecord, info: &ContainerInfo) -> Result<String> {
    if rec.kind == Kind::KillApp {
        return super::container::revert(&ctx.rt, rec, info).await;
    }
    if info.state != "running" {
        return Ok(format!(
            "container {}: the fault went with the process",
            info.state
        ));
    }
    let admin = match AdminClient::connect(ctx).await {
        Ok(a) => a,
        // Past its end the service has dropped the fault itself; without a token (the identity
        // provider may be down on purpose) that cannot be checked, and is said so.
        Err(e) if Utc::now() >= rec.ends => {
            return Ok(format!(
                "expired by the service at its end (not checked: {e})"
            ));
        }
        Err(e) => return Err(e),
    };
    admin.delete(info, &rec.id).await?;
    let left = admin.list(info).await?;
    if left.iter().any(|f| f.id == rec.id) {
        return Err(FaultError::State {
            message: format!("{} still lists fault {}", rec.container, rec.id),
        });
    }
    Ok(if left.is_empty() {
        "admin fault list empty".into()
    } else {
        format!("admin fault list without it ({} other)", left.len())
    })
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::super::spec::Options;
    use super::*;

    /// Records become the kit's request with the record's id; the CLI's limits fit the
    /// service's.
    #[test]
    fn requests() {
        let mut r = record("f-12ab", Utc::now(), 30);
        r.kind = Kind::AppLatency;
        r.options = Options {
            min_ms: Some(100),
            max_ms: Some(300),
            share: Some(50.0),
            routes: vec!["/api/inventory".into()],
            ..Default::default()
        };
        let req = request_for(&r, Duration::from_secs(30)).unwrap();
        assert_eq!(req.id.as_deref(), Some("f-12ab"));
        assert_eq!(
            req.assault,
            Assault::Latency {
                min_ms: 100,
                max_ms: 300
            }
        );
        assert_eq!(req.duration_ms, 30_000);
        assert!(req.validate().is_ok());
        r.kind = Kind::AppError;
        r.options.status = Some(503);
        assert_eq!(
            request_for(&r, Duration::from_secs(1)).unwrap().assault,
            Assault::Error { status: 503 }
        );
        r.kind = Kind::Pause;
        assert!(request_for(&r, Duration::from_secs(1)).is_none());
    }
}
