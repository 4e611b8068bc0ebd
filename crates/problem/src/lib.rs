//! RFC 9457 problem details: the one shape every HTTP error takes.
//!
//! Services define one error enum each and convert it into a [`Problem`]
//! (usually through `impl IntoResponse` calling `Problem::into_response`,
//! with the `axum` feature). Client errors say what was wrong; internal
//! errors become a generic message and the details are logged with the
//! request's span, never sent.
//!
//! Clients (the `platform` CLI, the dashboard) read problem+json bodies with
//! the same type and leave the `axum` feature off, so they link no server.
#![forbid(unsafe_code)]

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    pub type_uri: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path this occurrence belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (e.g. `errors`, `traceId`).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

fn about_blank() -> String {
    "about:blank".to_string()
}

/// The base of our problem type URIs.
const TYPE_BASE: &str = "https://platform.local/problems/";

impl Problem {
    /// A problem for `status` with the status's reason as title.
    pub fn new(status: StatusCode) -> Problem {
        Problem {
            type_uri: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: Map::new(),
        }
    }

    /// A problem with a detail message.
    pub fn with_detail(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem::new(status).detail(detail)
    }

    /// Sets the type to `https://platform.local/problems/<slug>`.
    pub fn kind(mut self, slug: &str) -> Problem {
        self.type_uri = format!("{TYPE_BASE}{slug}");
        self
    }

    pub fn title(mut self, title: impl Into<String>) -> Problem {
        self.title = title.into();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Problem {
        self.instance = Some(instance.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Problem {
        self.extensions.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// 400 for a request that cannot be understood.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::with_detail(StatusCode::BAD_REQUEST, detail).kind("bad-request")
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::with_detail(StatusCode::NOT_FOUND, detail).kind("not-found")
    }

    /// 409 for a request that conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::with_detail(StatusCode::CONFLICT, detail).kind("conflict")
    }

    /// 422 for a well-formed request whose content is not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Problem {
        Problem::with_detail(StatusCode::UNPROCESSABLE_ENTITY, detail).kind("validation")
    }

    /// 503 for a dependency that cannot answer now.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::with_detail(StatusCode::SERVICE_UNAVAILABLE, detail).kind("unavailable")
    }

    /// 500 with a generic message. Log the cause before calling this: the
    /// caller never sees it.
    pub fn internal() -> Problem {
        Problem::with_detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal error occurred; it has been logged with this request's trace id.",
        )
        .kind("internal")
    }

    /// The answer to a failed call to the service's own store (`store`
    /// names it, e.g. "inventory database"): 503 when the store is
    /// `unavailable` (the client may retry, breakers count it), 500
    /// otherwise. Either way `cause` is logged, never sent.
    pub fn store_failure(store: &str, unavailable: bool, cause: &dyn std::fmt::Display) -> Problem {
        if unavailable {
            tracing::warn!(error = %cause, store, "store unavailable");
            Problem::unavailable(format!("the {store} is unavailable; try again shortly"))
        } else {
            tracing::error!(error = %cause, store, "store failed");
            Problem::internal()
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        use http::{HeaderValue, header};
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{\"title\":\"Error\"}".to_vec());
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

// axum's rejections of bad input, kept with their precise messages and
// statuses (400, 413, 415, 422), as problems: what `kit::http::{Json, Query,
// Path}` reject with.
#[cfg(feature = "axum")]
impl From<axum::extract::rejection::JsonRejection> for Problem {
    fn from(r: axum::extract::rejection::JsonRejection) -> Problem {
        let slug = match r.status().as_u16() {
            413 => "body-too-large",
            415 => "unsupported-media-type",
            422 => "validation",
            _ => "malformed-body",
        };
        Problem::with_detail(r.status(), r.body_text()).kind(slug)
    }
}

#[cfg(feature = "axum")]
impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(r: axum::extract::rejection::QueryRejection) -> Problem {
        Problem::with_detail(r.status(), r.body_text()).kind("bad-query")
    }
}

#[cfg(feature = "axum")]
impl From<axum::extract::rejection::PathRejection> for Problem {
    fn from(r: axum::extract::rejection::PathRejection) -> Problem {
        Problem::with_detail(r.status(), r.body_text()).kind("bad-path")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use axum::response::IntoResponse;
    use http::header;

    use super::*;

    /// A problem renders with the problem+json media type and RFC 9457 member names.
    #[tokio::test]
    async fn renders_problem_json() {
        let res = Problem::unprocessable("quantity must be positive")
            .with("field", "quantity")
            .into_response();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "https://platform.local/problems/validation");
        assert_eq!(v["title"], "Unprocessable Entity");
        assert_eq!(v["status"], 422);
        assert_eq!(v["detail"], "quantity must be positive");
        assert_eq!(v["field"], "quantity");
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// A client reads a problem+json body with the same type: extension members land in
    /// `extensions`, a missing `type` is `about:blank` (RFC 9457 §4.2.1).
    #[test]
    fn reads_problem_json_as_a_client() {
        let body = r#"{"title":"Service Unavailable","status":503,"detail":"Service is temporarily unavailable","traceId":"abc"}"#;
        let p: Problem = serde_json::from_str(body).unwrap();
        assert_eq!(p.type_uri, "about:blank");
        assert_eq!(p.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(p.extensions["traceId"], "abc");
        assert_eq!(
            p.to_string(),
            "503 Service Unavailable: Service is temporarily unavailable"
        );
    }
}
