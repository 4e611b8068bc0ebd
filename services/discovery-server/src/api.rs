//! The Eureka REST API: the subset real Eureka clients use, under
//! `/eureka` and (an alias Eureka 1.x clients configured for `v2` use)
//! `/eureka/v2`.
//!
//! Status codes follow Eureka: register 204, renew/cancel/status/metadata
//! 200, 404 for an unknown application or instance (a renewal answered 404
//! makes the client register again). Reads answer JSON when the `Accept`
//! header mentions JSON and XML otherwise, exactly Eureka's rule, because
//! clients such as py-eureka-client send no JSON `Accept` and parse XML.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use kit::Problem;
use kit::http::{Json, Path, Query};
use kit::registry::model::{
    Application, ApplicationEnvelope, Applications, ApplicationsEnvelope, InstanceEnvelope,
    InstanceInfo, InstanceStatus, MAX_FIELD_LEN,
};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::registry::{RegistryError, Renewal};
use crate::xml;

/// Header carrying the registry version on every registry read.
pub static X_REGISTRY_VERSION: HeaderName = HeaderName::from_static("x-registry-version");

/// Longest metadata value accepted through the metadata endpoint.
const MAX_METADATA_VALUE_LEN: usize = 4096;

/// The Eureka routes, mounted under `/eureka` and `/eureka/v2`.
pub fn routes() -> Router<AppState> {
    let eureka = Router::new()
        .route("/apps", get(all_apps))
        .route("/apps/", get(all_apps))
        .route("/apps/delta", get(delta))
        .route("/apps/{app}", get(get_app).post(register))
        .route(
            "/apps/{app}/{id}",
            get(get_instance).put(renew).delete(cancel),
        )
        .route(
            "/apps/{app}/{id}/status",
            put(set_status).delete(remove_override),
        )
        .route("/apps/{app}/{id}/metadata", put(update_metadata))
        .route("/instances/{id}", get(instance_by_id))
        .route("/vips/{vip}", get(vip))
        .route("/svips/{svip}", get(svip))
        .route("/watch", get(crate::watch::watch));
    Router::new()
        .nest("/eureka/v2", eureka.clone())
        .nest("/eureka", eureka)
}

/// Eureka's content negotiation: JSON when `Accept` mentions it, else XML.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("json")))
}

fn with_version(mut res: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        res.headers_mut().insert(X_REGISTRY_VERSION.clone(), v);
    }
    res
}

fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, xml::APPLICATION_XML)], body).into_response()
}

fn applications_response(headers: &HeaderMap, apps: Applications, version: u64) -> Response {
    let res = if wants_json(headers) {
        Json(ApplicationsEnvelope { applications: apps }).into_response()
    } else {
        xml_response(xml::applications(&apps))
    };
    with_version(res, version)
}

fn application_response(headers: &HeaderMap, app: Application, version: u64) -> Response {
    let res = if wants_json(headers) {
        Json(ApplicationEnvelope { application: app }).into_response()
    } else {
        xml_response(xml::application(&app))
    };
    with_version(res, version)
}

fn instance_response(headers: &HeaderMap, instance: InstanceInfo, version: u64) -> Response {
    let res = if wants_json(headers) {
        Json(InstanceEnvelope { instance }).into_response()
    } else {
        xml_response(xml::instance(&instance))
    };
    with_version(res, version)
}

/// A status value exactly as Eureka names them (Eureka's `valueOf` throws on anything else).
fn parse_status(field: &str, value: &str) -> Result<InstanceStatus, ApiError> {
    value
        .parse()
        .map_err(|e| ApiError::BadInput(format!("`{field}`: {e}")))
}

fn parse_timestamp(value: &str) -> Result<u64, ApiError> {
    value.trim().parse().map_err(|_| {
        ApiError::BadInput(format!(
            "`lastDirtyTimestamp` must be milliseconds since the epoch, got `{value}`"
        ))
    })
}

// ---- reads -----------------------------------------------------------------

async fn all_apps(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let apps = s.registry.applications();
    let v = apps.versions_delta;
    applications_response(&headers, apps, v)
}

async fn delta(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let apps = s.registry.delta();
    let v = apps.versions_delta;
    applications_response(&headers, apps, v)
}

async fn get_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = app.to_ascii_uppercase();
    let version = s.registry.version();
    let found = s
        .registry
        .application(&app)
        .ok_or(RegistryError::UnknownApp(app))?;
    Ok(application_response(&headers, found, version))
}

async fn get_instance(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = app.to_ascii_uppercase();
    let version = s.registry.version();
    let found = s
        .registry
        .instance(&app, &id)
        .ok_or(RegistryError::UnknownInstance { app, id })?;
    Ok(instance_response(&headers, found, version))
}

async fn instance_by_id(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = s.registry.version();
    let found = s
        .registry
        .instance_by_id(&id)
        .ok_or_else(|| RegistryError::UnknownInstance {
            app: "*".into(),
            id,
        })?;
    Ok(instance_response(&headers, found, version))
}

async fn vip(State(s): State<AppState>, Path(vip): Path<String>, headers: HeaderMap) -> Response {
    let apps = s.registry.by_vip(&vip, false);
    let v = apps.versions_delta;
    applications_response(&headers, apps, v)
}

async fn svip(State(s): State<AppState>, Path(vip): Path<String>, headers: HeaderMap) -> Response {
    let apps = s.registry.by_vip(&vip, true);
    let v = apps.versions_delta;
    applications_response(&headers, apps, v)
}

// ---- changes ---------------------------------------------------------------

/// Whether a request body is XML (`application/xml`, `text/xml`, `...+xml`).
fn is_xml(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/xml" || m == "text/xml" || m.ends_with("+xml"))
}

/// `POST /eureka/apps/{APP}` with a JSON or an XML body.
///
/// Read as leniently as Eureka reads it: unknown fields are ignored, an
/// empty or unknown status is `UNKNOWN` (Eureka's `InstanceStatus.toEnum`;
/// py-eureka-client's basic `register` sends `"status": ""` and
/// `"overriddenstatus": ""` by default), numbers and booleans may be
/// strings, `null` stands for "not given". What remains refused is what
/// Eureka refuses too (no host name, an impossible lease) and what would
/// harm the registry (oversized fields, a port of 0).
async fn register(
    State(s): State<AppState>,
    Path(app): Path<String>,
    request: Request,
) -> Result<StatusCode, Problem> {
    let body: serde_json::Value = if is_xml(request.headers()) {
        let bytes = Bytes::from_request(request, &())
            .await
            .map_err(|r| Problem::with_detail(r.status(), r.body_text()).kind("malformed-body"))?;
        xml::instance_body(&bytes).map_err(|e| ApiError::BadInput(e.to_string()))?
    } else {
        Json::<serde_json::Value>::from_request(request, &())
            .await?
            .0
    };
    let envelope: InstanceEnvelope = serde_json::from_value(body).map_err(|e| {
        ApiError::BadInput(format!(
            "the body is not an instance (`{{\"instance\": {{...}}}}`): {e}"
        ))
    })?;
    let mut info = envelope.instance;
    info.normalize_and_validate(&app).map_err(ApiError::from)?;
    if info.status == InstanceStatus::Unknown {
        tracing::warn!(app = %info.app, instance_id = %info.instance_id, "registered with status UNKNOWN (none, an empty or an unknown status was sent): clients will not call it until it registers UP");
    }
    tracing::info!(app = %info.app, instance_id = %info.instance_id, status = %info.status, "register");
    s.registry.register(info).map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The renewal's query. `status` and `overriddenstatus`, which Eureka
/// clients also send, are ignored as Eureka ignores them.
#[derive(Debug, Deserialize)]
struct RenewParams {
    #[serde(rename = "lastDirtyTimestamp")]
    last_dirty_timestamp: Option<String>,
}

/// `PUT /eureka/apps/{APP}/{ID}?status=..&lastDirtyTimestamp=..`.
///
/// As in Eureka, `status` and `overriddenstatus` do not change anything
/// (status changes arrive as registrations), so any value is accepted, as
/// Eureka accepts it. A newer `lastDirtyTimestamp` answers 404 after
/// renewing, so the client registers its changed data.
async fn renew(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    Query(p): Query<RenewParams>,
) -> Result<StatusCode, ApiError> {
    let last_dirty = p
        .last_dirty_timestamp
        .as_deref()
        .map(parse_timestamp)
        .transpose()?;
    let app = app.to_ascii_uppercase();
    match s.registry.renew(&app, &id, last_dirty) {
        Renewal::Renewed => Ok(StatusCode::OK),
        Renewal::Unknown => Err(RegistryError::UnknownInstance { app, id }.into()),
        Renewal::Resync => Err(ApiError::Resync { app, id }),
    }
}

/// `DELETE /eureka/apps/{APP}/{ID}`.
async fn cancel(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.registry.cancel(&app.to_ascii_uppercase(), &id)?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct StatusParams {
    value: Option<String>,
    #[serde(rename = "lastDirtyTimestamp")]
    last_dirty_timestamp: Option<String>,
}

impl StatusParams {
    fn last_dirty(&self) -> Result<Option<u64>, ApiError> {
        self.last_dirty_timestamp
            .as_deref()
            .map(parse_timestamp)
            .transpose()
    }
}

/// `PUT /eureka/apps/{APP}/{ID}/status?value=OUT_OF_SERVICE`.
async fn set_status(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    Query(p): Query<StatusParams>,
) -> Result<StatusCode, ApiError> {
    let value = p
        .value
        .as_deref()
        .ok_or_else(|| ApiError::BadInput("`value` (the new status) is required".into()))?;
    let status = parse_status("value", value)?;
    let last_dirty = p.last_dirty()?;
    let app = app.to_ascii_uppercase();
    if s.registry.set_status(&app, &id, status, last_dirty)? {
        tracing::info!(app = %app, instance_id = %id, status = %status, "status override set");
    }
    Ok(StatusCode::OK)
}

/// `DELETE /eureka/apps/{APP}/{ID}/status[?value=..]`.
async fn remove_override(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    Query(p): Query<StatusParams>,
) -> Result<StatusCode, ApiError> {
    let status = match p.value.as_deref() {
        Some(v) => parse_status("value", v)?,
        None => InstanceStatus::Unknown,
    };
    let last_dirty = p.last_dirty()?;
    let app = app.to_ascii_uppercase();
    if s.registry.remove_override(&app, &id, status, last_dirty)? {
        tracing::info!(app = %app, instance_id = %id, "status override removed");
    }
    Ok(StatusCode::OK)
}

/// `PUT /eureka/apps/{APP}/{ID}/metadata?key=value&..`.
async fn update_metadata(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<StatusCode, ApiError> {
    for (k, v) in &pairs {
        if k.is_empty() || k.len() > MAX_FIELD_LEN {
            return Err(ApiError::BadInput(format!(
                "metadata keys must have 1 to {MAX_FIELD_LEN} characters"
            )));
        }
        if v.len() > MAX_METADATA_VALUE_LEN {
            return Err(ApiError::BadInput(format!(
                "metadata value of `{k}` is longer than {MAX_METADATA_VALUE_LEN} characters"
            )));
        }
    }
    s.registry
        .update_metadata(&app.to_ascii_uppercase(), &id, pairs)?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON only when Accept mentions it, as Eureka decides; no Accept or */* means XML.
    #[test]
    fn negotiation() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/xml, application/json;q=0.5"),
        );
        assert!(wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
    }

    /// XML bodies are recognised by their media type (with parameters, in any case); JSON and none are not XML.
    #[test]
    fn xml_media_types() {
        let mut h = HeaderMap::new();
        assert!(!is_xml(&h));
        for (ct, xml) in [
            ("application/xml", true),
            ("Text/XML; charset=UTF-8", true),
            ("application/atom+xml", true),
            ("application/json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_xml(&h), xml, "{ct}");
        }
    }
}
