//! The registry's REST API, from the client side.
//!
//! One method per Eureka call we use, plus our long-poll watch. Errors are
//! typed so callers can tell "the registry does not know this instance"
//! (re-register) from "the registry is unreachable" (retry later).
//!
//! A registry that protects its writes (HTTP Basic, as Spring Cloud users
//! secure Eureka) gets the [`Credentials`] on every call; they come from the
//! base URL's userinfo or [`RegistryHttp::with_credentials`], and the URL
//! kept for messages has no userinfo.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use url::Url;

use crate::credentials::Credentials;
use crate::model::{
    Application, ApplicationEnvelope, Applications, ApplicationsEnvelope, InstanceEnvelope,
    InstanceInfo, InstanceStatus, WatchResponse,
};

/// Failure of a registry call.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry answered {status} to {method} {url}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("registry answer to {url} could not be read: {detail}")]
    Decode { url: String, detail: String },
    #[error("the registry does not know {app}/{instance_id}")]
    UnknownInstance { app: String, instance_id: String },
    #[error("invalid registry URL: {0}")]
    Url(String),
}

impl RegistryError {
    /// Whether the answer was a 404 (unknown app/instance or no such endpoint).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::UnknownInstance { .. })
            || matches!(self, RegistryError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// Outcome of a lease renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// The registry does not know the instance (it restarted or evicted us): register again.
    Unknown,
}

/// A thin client for the registry's HTTP API.
#[derive(Debug, Clone)]
pub struct RegistryHttp {
    /// Without userinfo: it appears in errors and logs.
    base: Url,
    http: reqwest::Client,
    /// Sent as HTTP Basic on every call, when the registry wants them.
    credentials: Option<Credentials>,
}

/// Per-call timeout for everything but the watch long-poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl RegistryHttp {
    /// `base` is the registry's root URL, e.g. `http://localhost:8761`, with
    /// the credentials for its writes in the userinfo if it wants them
    /// (`http://user:password@discovery-server:8761`).
    pub fn new(base: Url, http: reqwest::Client) -> RegistryHttp {
        let (mut base, credentials) = Credentials::split_url(&base);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        RegistryHttp {
            base,
            http,
            credentials,
        }
    }

    /// Uses `credentials` instead of those of the URL.
    pub fn with_credentials(mut self, credentials: Credentials) -> RegistryHttp {
        self.credentials = Some(credentials);
        self
    }

    /// The registry's root URL (without credentials).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The credentials sent, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// A request with the credentials, if any.
    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.credentials {
            Some(c) => c.apply(req),
            None => req,
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, RegistryError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| RegistryError::Url(self.base.to_string()))?;
            path.pop_if_empty();
            path.push("eureka");
            for s in segments {
                path.push(s);
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        timeout: Duration,
    ) -> Result<reqwest::Response, RegistryError> {
        self.request(method, url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.to_string(),
                source,
            })
    }

    async fn expect_ok(
        method: Method,
        url: &Url,
        res: reqwest::Response,
    ) -> Result<reqwest::Response, RegistryError> {
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        Err(RegistryError::Status {
            method,
            url: url.to_string(),
            status,
            body: body.chars().take(500).collect(),
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        url: &Url,
        res: reqwest::Response,
    ) -> Result<T, RegistryError> {
        let bytes = res.bytes().await.map_err(|e| RegistryError::Decode {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Decode {
            url: url.to_string(),
            detail: e.to_string(),
        })
    }

    /// `POST /eureka/apps/{APP}`.
    pub async fn register(&self, instance: &InstanceInfo) -> Result<(), RegistryError> {
        let url = self.url(&["apps", &instance.app])?;
        let body = InstanceEnvelope {
            instance: instance.clone(),
        };
        let res = self
            .request(Method::POST, url.clone())
            .json(&body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        Self::expect_ok(Method::POST, &url, res).await.map(|_| ())
    }

    /// `PUT /eureka/apps/{APP}/{ID}?status=..&lastDirtyTimestamp=..`.
    pub async fn renew(&self, instance: &InstanceInfo) -> Result<Renewal, RegistryError> {
        let mut url = self.url(&["apps", &instance.app, &instance.instance_id])?;
        url.query_pairs_mut()
            .append_pair("status", instance.status.as_str())
            .append_pair(
                "lastDirtyTimestamp",
                &instance.last_dirty_timestamp.to_string(),
            );
        let res = self.send(Method::PUT, url.clone(), CALL_TIMEOUT).await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(Renewal::Unknown);
        }
        Self::expect_ok(Method::PUT, &url, res)
            .await
            .map(|_| Renewal::Renewed)
    }

    /// `DELETE /eureka/apps/{APP}/{ID}`.
    pub async fn cancel(&self, app: &str, instance_id: &str) -> Result<(), RegistryError> {
        let url = self.url(&["apps", app, instance_id])?;
        let res = self.send(Method::DELETE, url.clone(), CALL_TIMEOUT).await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::UnknownInstance {
                app: app.into(),
                instance_id: instance_id.into(),
            });
        }
        Self::expect_ok(Method::DELETE, &url, res).await.map(|_| ())
    }

    /// `PUT /eureka/apps/{APP}/{ID}/status?value=..`: an override, e.g. OUT_OF_SERVICE.
    pub async fn set_status(
        &self,
        app: &str,
        instance_id: &str,
        status: InstanceStatus,
    ) -> Result<(), RegistryError> {
        let mut url = self.url(&["apps", app, instance_id, "status"])?;
        url.query_pairs_mut().append_pair("value", status.as_str());
        let res = self.send(Method::PUT, url.clone(), CALL_TIMEOUT).await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::UnknownInstance {
                app: app.into(),
                instance_id: instance_id.into(),
            });
        }
        Self::expect_ok(Method::PUT, &url, res).await.map(|_| ())
    }

    /// `DELETE /eureka/apps/{APP}/{ID}/status`: removes an override.
    pub async fn remove_status_override(
        &self,
        app: &str,
        instance_id: &str,
    ) -> Result<(), RegistryError> {
        let url = self.url(&["apps", app, instance_id, "status"])?;
        let res = self.send(Method::DELETE, url.clone(), CALL_TIMEOUT).await?;
        Self::expect_ok(Method::DELETE, &url, res).await.map(|_| ())
    }

    /// `GET /eureka/apps`: the whole registry.
    pub async fn applications(&self) -> Result<Applications, RegistryError> {
        let url = self.url(&["apps"])?;
        let res = self.send(Method::GET, url.clone(), CALL_TIMEOUT).await?;
        let res = Self::expect_ok(Method::GET, &url, res).await?;
        Ok(Self::json::<ApplicationsEnvelope>(&url, res)
            .await?
            .applications)
    }

    /// `GET /eureka/apps/{APP}`.
    pub async fn application(&self, app: &str) -> Result<Application, RegistryError> {
        let url = self.url(&["apps", &app.to_ascii_uppercase()])?;
        let res = self.send(Method::GET, url.clone(), CALL_TIMEOUT).await?;
        let res = Self::expect_ok(Method::GET, &url, res).await?;
        Ok(Self::json::<ApplicationEnvelope>(&url, res)
            .await?
            .application)
    }

    /// `GET /eureka/watch?since=..&timeoutSecs=..`: waits until the registry
    /// changes after version `since`, or `wait` passes.
    pub async fn watch(&self, since: u64, wait: Duration) -> Result<WatchResponse, RegistryError> {
        let mut url = self.url(&["watch"])?;
        url.query_pairs_mut()
            .append_pair("since", &since.to_string())
            .append_pair("timeoutSecs", &wait.as_secs().max(1).to_string());
        let res = self
            .send(Method::GET, url.clone(), wait + CALL_TIMEOUT)
            .await?;
        let res = Self::expect_ok(Method::GET, &url, res).await?;
        Self::json(&url, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths are built under `/eureka` whatever the base URL's trailing slash or prefix.
    #[test]
    fn builds_paths() {
        let c = RegistryHttp::new(Url::parse("http://h:8761").unwrap(), reqwest::Client::new());
        assert_eq!(
            c.url(&["apps", "A"]).unwrap().as_str(),
            "http://h:8761/eureka/apps/A"
        );
        let c = RegistryHttp::new(
            Url::parse("http://h:8761/prefix").unwrap(),
            reqwest::Client::new(),
        );
        assert_eq!(
            c.url(&["apps"]).unwrap().as_str(),
            "http://h:8761/prefix/eureka/apps"
        );
        let c = RegistryHttp::new(
            Url::parse("http://h:8761/").unwrap(),
            reqwest::Client::new(),
        );
        assert_eq!(
            c.url(&["apps", "a b"]).unwrap().as_str(),
            "http://h:8761/eureka/apps/a%20b"
        );
    }

    /// Credentials in the base URL's userinfo go out as HTTP Basic on every call and never
    /// into the URL kept for messages; `with_credentials` replaces them.
    #[test]
    fn credentials_from_userinfo() {
        let c = RegistryHttp::new(
            Url::parse("http://eureka:s%3Acret@h:8761").unwrap(),
            reqwest::Client::new(),
        );
        assert_eq!(c.base_url().as_str(), "http://h:8761/");
        let url = c.url(&["apps", "A"]).unwrap();
        assert_eq!(url.as_str(), "http://h:8761/eureka/apps/A");
        let req = c.request(Method::POST, url.clone()).build().unwrap();
        let auth = req.headers()[reqwest::header::AUTHORIZATION]
            .to_str()
            .unwrap();
        // base64("eureka:s:cret")
        assert_eq!(auth, "Basic ZXVyZWthOnM6Y3JldA==");
        assert_eq!(req.url().as_str(), "http://h:8761/eureka/apps/A");

        let other = c.with_credentials(Credentials::new("u", "p".to_string().into()));
        let req = other.request(Method::GET, url).build().unwrap();
        assert_eq!(req.headers()[reqwest::header::AUTHORIZATION], "Basic dTpw");

        let plain = RegistryHttp::new(Url::parse("http://h:8761").unwrap(), reqwest::Client::new());
        let req = plain
            .request(Method::GET, plain.url(&["apps"]).unwrap())
            .build()
            .unwrap();
        assert!(req.headers().get(reqwest::header::AUTHORIZATION).is_none());
    }
}
