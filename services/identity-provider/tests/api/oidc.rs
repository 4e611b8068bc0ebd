//! Discovery, JWKS, realm page, userinfo, the issuer rules, and the kit's
//! validator against real tokens of a running provider.

use std::io::{Read, Write};

use kit::auth::{AuthError, JwtValidator, TokenRejection, ValidatorConfig};
use kit::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Idp, Opts, header};

/// Discovery names the issuer and Keycloak's endpoint paths; the JWKS holds the signing key.
#[tokio::test]
async fn discovery_and_jwks() {
    let idp = Idp::start().await;
    let doc: Value = idp
        .http
        .get(format!("{}/.well-known/openid-configuration", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], idp.issuer);
    assert_eq!(
        doc["token_endpoint"],
        format!("{}/protocol/openid-connect/token", idp.issuer)
    );
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/protocol/openid-connect/certs", idp.issuer)
    );
    assert_eq!(
        doc["userinfo_endpoint"],
        format!("{}/protocol/openid-connect/userinfo", idp.issuer)
    );
    assert_eq!(
        doc["grant_types_supported"],
        json!(["client_credentials", "password", "refresh_token"])
    );
    let jwks: Value = idp
        .http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    let t = idp.machine().await;
    assert_eq!(
        header(t["access_token"].as_str().unwrap())["kid"],
        keys[0]["kid"]
    );

    let info: Value = idp
        .http
        .get(&idp.issuer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["realm"], "platform");
    assert!(
        info["public_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("MIIBIjAN"))
    );
    // Browser login is not offered, and says so in OAuth's words.
    let auth = idp
        .http
        .get(doc["authorization_endpoint"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 400);
    assert_eq!(
        auth.json::<Value>().await.unwrap()["error"],
        "unsupported_response_type"
    );
}

/// Without a configured base the issuer and every endpoint follow the Host header; with one
/// (Keycloak's `--hostname`) the discovery document, the realm page and tokens' `iss` all use the
/// configured base, whatever Host header a request carries.
#[tokio::test]
async fn issuer_and_endpoints_from_host_or_configuration() {
    let idp = Idp::start().await;
    let doc: Value = idp
        .http
        .get(format!(
            "{}/realms/platform/.well-known/openid-configuration",
            idp.base
        ))
        .header("host", "idp.example:9999")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dynamic = "http://idp.example:9999/realms/platform";
    assert_eq!(doc["issuer"], dynamic);
    assert_endpoints_under(&doc, dynamic);

    let fixed = Idp::start_with(Opts {
        issuer_base: Some("http://localhost:8180/".parse().unwrap()),
        ..Opts::default()
    })
    .await;
    let configured = "http://localhost:8180/realms/platform";
    for host in [None, Some("evil.example:666"), Some("127.0.0.1:1")] {
        let mut req = fixed.http.get(format!(
            "{}/realms/platform/.well-known/openid-configuration",
            fixed.base
        ));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let doc: Value = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["issuer"], configured, "Host {host:?}");
        assert_endpoints_under(&doc, configured);

        let mut req = fixed.http.get(format!("{}/realms/platform", fixed.base));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(
            page["token-service"],
            format!("{configured}/protocol/openid-connect"),
            "Host {host:?}"
        );
        assert_eq!(page["account-service"], format!("{configured}/account"));
    }
    let t = fixed.machine().await;
    assert_eq!(
        crate::helpers::claims(t["access_token"].as_str().unwrap())["iss"],
        configured
    );
}

/// The discovery document's endpoints are the issuer's: token, JWKS, userinfo and authorization.
fn assert_endpoints_under(doc: &Value, issuer: &str) {
    for (field, path) in [
        ("token_endpoint", "token"),
        ("jwks_uri", "certs"),
        ("userinfo_endpoint", "userinfo"),
        ("authorization_endpoint", "auth"),
    ] {
        assert_eq!(
            doc[field],
            format!("{issuer}/protocol/openid-connect/{path}"),
            "{field} in {doc}"
        );
    }
}

/// A request without a usable Host header is a 400 problem, not a panic.
#[tokio::test]
async fn missing_host_is_refused() {
    let idp = Idp::start().await;
    let addr = idp.base.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /realms/platform/.well-known/openid-configuration HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
}

/// Userinfo answers for a valid access token and refuses missing, refresh and foreign-host tokens.
#[tokio::test]
async fn userinfo() {
    let idp = Idp::start().await;
    let t = idp.login("alice", "alice").await;
    let url = format!("{}/protocol/openid-connect/userinfo", idp.issuer);
    let ui: Value = idp
        .http
        .get(&url)
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["preferred_username"], "alice");
    assert_eq!(ui["email"], "alice@example.com");
    assert_eq!(ui["sub"], "5b0f5f4e-2f1c-4a5e-9d65-3f0d6f1c1a01");

    let none = idp.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"platform\""
    );
    let refresh = idp
        .http
        .post(&url)
        .bearer_auth(t["refresh_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 401);
    assert!(
        refresh.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("type Refresh")
    );
    let other_host = idp
        .http
        .get(&url)
        .header("host", "elsewhere:1")
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(other_host.status(), 401);
}

/// The kit's validator, pointed at a running provider, accepts its access tokens and refuses its refresh and ID tokens and another realm's tokens.
#[tokio::test]
async fn kit_validator_against_real_tokens() {
    let idp = Idp::start().await;
    let v = JwtValidator::discover(
        ValidatorConfig::new(&idp.issuer).audiences(["platform-api"]),
        reqwest::Client::new(),
        Clock::System,
    );
    let (status, t, _) = idp
        .token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", "admin"),
            ("password", "admin"),
            ("scope", "openid"),
        ])
        .await;
    assert_eq!(status, 200);
    let c = v
        .validate(t["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(c.has_role("admin"));
    for (token, typ) in [(&t["refresh_token"], "Refresh"), (&t["id_token"], "ID")] {
        assert_eq!(
            v.validate(token.as_str().unwrap()).await.unwrap_err(),
            AuthError::InvalidToken(TokenRejection::WrongType(typ.into()))
        );
    }

    // A second provider serving realm "other" (its own keys and issuer).
    let dir = tempfile::tempdir().unwrap();
    let mut realm: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::helpers::repo_realm()).unwrap())
            .unwrap();
    realm["realm"] = json!("other");
    let file = dir.path().join("other.json");
    std::fs::write(&file, realm.to_string()).unwrap();
    let other = Idp::start_with(Opts {
        realm_file: file,
        ..Opts::default()
    })
    .await;
    let foreign = other
        .http
        .post(format!(
            "{}/realms/other/protocol/openid-connect/token",
            other.base
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "platform-service"),
            ("client_secret", "platform-service-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let err = v
        .validate(foreign["access_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidToken(TokenRejection::UnknownKey(_))),
        "{err:?}"
    );
    // Unknown realm on the first provider is a 404 problem.
    let r = idp
        .http
        .get(format!("{}/realms/other", idp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
