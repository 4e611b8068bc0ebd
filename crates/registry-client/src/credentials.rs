//! Credentials for a registry that protects its writes with HTTP Basic, as
//! Spring Cloud Netflix users secure Eureka: the client puts them in the
//! userinfo of the registry URL (`http://user:password@discovery-server:8761`,
//! Spring's `eureka.client.serviceUrl.defaultZone`), or they come separately
//! (the kit's `REGISTRY_USERNAME`/`REGISTRY_PASSWORD`).
//!
//! The password is a [`SecretString`] and the URL a client keeps, logs and
//! puts into errors is the one without userinfo ([`Credentials::split_url`]);
//! [`redact`] hides the password of a URL that still has one.

use std::fmt;

use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A user name and password sent as HTTP Basic on every registry call.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"****")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: SecretString) -> Credentials {
        Credentials {
            username: username.into(),
            password,
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// Adds them to a request as `Authorization: Basic ...`.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.basic_auth(&self.username, Some(self.password.expose_secret()))
    }

    /// Splits `url` into the URL without userinfo and the credentials it
    /// carried (percent-decoded, as RFC 3986 writes reserved characters
    /// there). A user name without a password is taken with an empty one,
    /// as reqwest and curl do.
    pub fn split_url(url: &Url) -> (Url, Option<Credentials>) {
        if url.username().is_empty() && url.password().is_none() {
            return (url.clone(), None);
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = Credentials::new(
            decode(url.username()),
            SecretString::from(decode(url.password().unwrap_or(""))),
        );
        let mut bare = url.clone();
        // Both only fail for URLs that cannot have userinfo, which had none.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        (bare, Some(credentials))
    }
}

/// `url` for logs and messages: a password in it replaced by `****`.
pub fn redact(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("****"));
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Userinfo is taken off the URL and decoded; a URL without it is unchanged.
    #[test]
    fn splits_userinfo() {
        let url = Url::parse("http://eureka:pa%40ss%3Aword@registry:8761/base").unwrap();
        let (bare, c) = Credentials::split_url(&url);
        assert_eq!(bare.as_str(), "http://registry:8761/base");
        let c = c.unwrap();
        assert_eq!(c.username(), "eureka");
        assert_eq!(c.password().expose_secret(), "pa@ss:word");

        let (bare, c) = Credentials::split_url(&Url::parse("http://only-user@h:1").unwrap());
        assert_eq!(bare.as_str(), "http://h:1/");
        assert_eq!(c.unwrap().password().expose_secret(), "");

        let plain = Url::parse("http://h:8761").unwrap();
        let (bare, c) = Credentials::split_url(&plain);
        assert_eq!(bare, plain);
        assert!(c.is_none());
    }

    /// Neither Debug nor a redacted URL shows the password.
    #[test]
    fn never_shows_the_password() {
        let url = Url::parse("http://eureka:hunter2@registry:8761/").unwrap();
        assert_eq!(redact(&url), "http://eureka:****@registry:8761/");
        let (_, c) = Credentials::split_url(&url);
        let shown = format!("{:?}", c.unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("eureka"), "{shown}");
        let plain = Url::parse("http://registry:8761/").unwrap();
        assert_eq!(redact(&plain), "http://registry:8761/");
    }
}
