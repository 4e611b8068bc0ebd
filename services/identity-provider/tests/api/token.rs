//! The token endpoint: the three grants, Keycloak's claim shape, client
//! authentication and RFC 6749 errors.

use std::time::Duration;

use base64::Engine;
use kit::clock::Clock;
use serde_json::json;

use crate::helpers::{Idp, Opts, claims, header, real_now_millis};

/// A password-grant access token has Keycloak's claims, lifespan and audience; the refresh token is typ Refresh.
#[tokio::test]
async fn password_grant_claims() {
    let idp = Idp::start().await;
    let t = idp.login("alice", "alice").await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 300);
    assert_eq!(t["refresh_expires_in"], 1800);
    assert_eq!(t["scope"], "profile email");
    assert!(t.get("id_token").is_none());
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["iss"], idp.issuer);
    assert_eq!(c["aud"], "platform-api");
    assert_eq!(c["azp"], "platform-cli");
    assert_eq!(c["typ"], "Bearer");
    assert_eq!(c["sub"], "5b0f5f4e-2f1c-4a5e-9d65-3f0d6f1c1a01");
    assert_eq!(c["preferred_username"], "alice");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["name"], "Alice Liddell");
    assert_eq!(c["realm_access"]["roles"], json!(["user"]));
    assert_eq!(c["scope"], "profile email");
    assert_eq!(c["sid"], t["session_state"]);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() == 36));
    let h = header(t["access_token"].as_str().unwrap());
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["kid"], idp.state.keys().signing_key().kid);

    let r = claims(t["refresh_token"].as_str().unwrap());
    assert_eq!(r["typ"], "Refresh");
    assert_eq!(r["aud"], idp.issuer);
    assert_eq!(r["azp"], "platform-cli");
    assert_eq!(r["sid"], c["sid"]);
}

/// With scope=openid an ID token comes too, addressed to the client, with at_hash.
#[tokio::test]
async fn openid_scope_yields_id_token() {
    let idp = Idp::start().await;
    let (status, t, _) = idp
        .token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", "admin"),
            ("password", "admin"),
            ("scope", "openid profile"),
        ])
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["scope"], "openid profile email");
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["typ"], "ID");
    assert_eq!(id["aud"], "platform-cli");
    assert_eq!(id["preferred_username"], "admin");
    assert_eq!(id["at_hash"].as_str().unwrap().len(), 22);
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["realm_access"]["roles"], json!(["admin", "user"]));
}

/// Client credentials by post and by Basic: service-account token, roles from the realm file, no refresh token.
#[tokio::test]
async fn client_credentials_grant() {
    let idp = Idp::start().await;
    let t = idp.machine().await;
    assert!(t.get("refresh_token").is_none());
    assert_eq!(t["refresh_expires_in"], 0);
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["preferred_username"], "service-account-platform-service");
    assert_eq!(c["client_id"], "platform-service");
    assert_eq!(c["azp"], "platform-service");
    assert_eq!(c["clientAddress"], "127.0.0.1");
    assert_eq!(c["realm_access"]["roles"], json!(["admin", "user"]));
    assert!(c.get("sid").is_none());

    let res = idp
        .http
        .post(idp.token_url())
        .basic_auth("platform-service", Some("platform-service-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
}

/// Hashed credentials in Keycloak's export form (pbkdf2-sha256 and pbkdf2-sha512) log in; e-mail and any case work.
#[tokio::test]
async fn hashed_credentials_and_login_forms() {
    let idp = Idp::start().await;
    let bob = idp.login("bob", "bob-password").await;
    assert_eq!(
        claims(bob["access_token"].as_str().unwrap())["preferred_username"],
        "bob"
    );
    let carol = idp.login("carol", "carol-password").await;
    assert_eq!(
        claims(carol["access_token"].as_str().unwrap())["email"],
        "carol@example.com"
    );
    idp.login("ALICE", "alice").await;
    let by_mail = idp.login("alice@example.com", "alice").await;
    assert_eq!(
        claims(by_mail["access_token"].as_str().unwrap())["preferred_username"],
        "alice"
    );
    let (status, body, _) = idp
        .token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", "bob"),
            ("password", "bob"),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

/// A refresh token yields new tokens in the same session; it is bound to its client and to its expiry.
#[tokio::test]
async fn refresh_grant() {
    let clock = Clock::manual(real_now_millis());
    let idp = Idp::start_with(Opts {
        clock: clock.clone(),
        ..Opts::default()
    })
    .await;
    let first = idp.login("alice", "alice").await;
    let rt = first["refresh_token"].as_str().unwrap();
    clock.advance(Duration::from_secs(60));
    let (status, second, _) = idp
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "platform-cli"),
            ("refresh_token", rt),
        ])
        .await;
    assert_eq!(status, 200, "{second}");
    let (a, b) = (
        claims(first["access_token"].as_str().unwrap()),
        claims(second["access_token"].as_str().unwrap()),
    );
    assert_eq!(a["sid"], b["sid"]);
    assert_eq!(b["iat"].as_i64().unwrap() - a["iat"].as_i64().unwrap(), 60);
    assert_ne!(a["jti"], b["jti"]);

    // Another client cannot use it.
    let (status, body, _) = idp
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "platform-service"),
            ("client_secret", "platform-service-secret"),
            ("refresh_token", rt),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // An access token is not a refresh token; neither is a tampered one.
    let access = first["access_token"].as_str().unwrap();
    let tampered = format!("{}x", &rt[..rt.len() - 1]);
    for bad in [access, tampered.as_str(), "garbage"] {
        let (status, body, _) = idp
            .token(&[
                ("grant_type", "refresh_token"),
                ("client_id", "platform-cli"),
                ("refresh_token", bad),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    // After the idle timeout it is no longer active.
    clock.advance(Duration::from_secs(1801));
    let (status, body, _) = idp
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "platform-cli"),
            ("refresh_token", rt),
        ])
        .await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("Token is not active"))
    );
}

/// Every refusal has RFC 6749's error code and status; invalid_client carries a Basic challenge.
#[tokio::test]
async fn oauth_errors() {
    let idp = Idp::start().await;
    /// (what, form, status, error code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong client secret",
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "platform-service"),
                ("client_secret", "nope"),
            ],
            401,
            "invalid_client",
        ),
        (
            "missing client secret",
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "platform-service"),
            ],
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "ghost"),
                ("client_secret", "x"),
            ],
            401,
            "invalid_client",
        ),
        (
            "no client at all",
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            "public client asks for client credentials",
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "platform-cli"),
            ],
            400,
            "unauthorized_client",
        ),
        (
            "machine client asks for the password grant",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-service"),
                ("client_secret", "platform-service-secret"),
                ("username", "alice"),
                ("password", "alice"),
            ],
            400,
            "unauthorized_client",
        ),
        (
            "wrong password",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "alice"),
                ("password", "wrong"),
            ],
            400,
            "invalid_grant",
        ),
        (
            "unknown user",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "nobody"),
                ("password", "x"),
            ],
            400,
            "invalid_grant",
        ),
        (
            "disabled user with the right password",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "mallory"),
                ("password", "mallory"),
            ],
            400,
            "invalid_grant",
        ),
        (
            "service account has no password",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "service-account-platform-service"),
                ("password", ""),
            ],
            400,
            "invalid_grant",
        ),
        (
            "missing username",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("password", "x"),
            ],
            400,
            "invalid_request",
        ),
        (
            "missing password",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "alice"),
            ],
            400,
            "invalid_request",
        ),
        (
            "missing grant_type",
            vec![("client_id", "platform-cli")],
            400,
            "invalid_request",
        ),
        (
            "authorization code is not offered",
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "platform-cli"),
                ("code", "x"),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            "unknown scope",
            vec![
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", "alice"),
                ("password", "alice"),
                ("scope", "openid superpowers"),
            ],
            400,
            "invalid_scope",
        ),
        (
            "missing refresh token",
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "platform-cli"),
            ],
            400,
            "invalid_request",
        ),
    ];
    for (doc, form, status, error) in cases {
        let (got, body, headers) = idp.token(&form).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{doc}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{doc}"
        );
        if error == "invalid_client" {
            assert_eq!(
                headers["www-authenticate"], "Basic realm=\"platform\"",
                "{doc}"
            );
        }
    }
    let (_, disabled, _) = idp
        .token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", "mallory"),
            ("password", "mallory"),
        ])
        .await;
    assert_eq!(disabled["error_description"], "Account disabled");
    let (_, wrong, _) = idp
        .token(&[
            ("grant_type", "password"),
            ("client_id", "platform-cli"),
            ("username", "mallory"),
            ("password", "nope"),
        ])
        .await;
    assert_eq!(wrong["error_description"], "Invalid user credentials");
}

/// Brute-force detection with the realm's settings (Keycloak's semantics, failureFactor 10 and
/// the quick-login check in keycloak/realm.json): wrong passwords lock the name (at the second
/// when they come fast, at the tenth at the latest), after which even the right password gets
/// 429 `invalid_grant` with the wrong password's description; an unknown name locks the same
/// way, so a lockout does not tell which names exist; other users are unaffected.
#[tokio::test]
async fn brute_force_locks_the_name_not_the_realm() {
    let idp = Idp::start().await;
    let login = |user: &'static str, password: &'static str| {
        let idp = &idp;
        async move {
            idp.token(&[
                ("grant_type", "password"),
                ("client_id", "platform-cli"),
                ("username", user),
                ("password", password),
            ])
            .await
        }
    };
    for user in ["alice", "ghost"] {
        let mut locked_at = None;
        for attempt in 1..=11 {
            let (status, body, _) = login(user, "wrong").await;
            assert_eq!(body["error"], "invalid_grant", "{user} #{attempt}: {body}");
            assert_eq!(body["error_description"], "Invalid user credentials");
            if status == 429 {
                locked_at = Some(attempt);
                break;
            }
            assert_eq!(status, 400, "{user} #{attempt}: {body}");
        }
        assert!(
            matches!(locked_at, Some(3..=11)),
            "{user}: locked at {locked_at:?}"
        );
    }
    let (status, body, _) = login("alice", "alice").await;
    assert_eq!(status, 429, "the right password while locked: {body}");
    let (status, body, _) = login("admin", "admin").await;
    assert_eq!(status, 200, "another user: {body}");
}

/// Bad input of every kind is answered 4xx, never a panic: content type, huge and binary bodies, repeats, both auth methods, unknown realm.
#[tokio::test]
async fn bad_input() {
    let idp = Idp::start().await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        idp.http
            .post(idp.token_url())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = post(br#"{"grant_type":"password"}"#.to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let r = post(vec![b'a'; 200_000], "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = post(
        vec![0xff, 0x00, 0xfe, b'=', b'&', b'%'],
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        b"grant_type=password&grant_type=client_credentials".to_vec(),
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let basic = base64::engine::general_purpose::STANDARD
        .encode("platform-service:platform-service-secret");
    let r = idp
        .http
        .post(idp.token_url())
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", "platform-service-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = idp
        .http
        .post(format!(
            "{}/realms/elsewhere/protocol/openid-connect/token",
            idp.base
        ))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = idp.http.get(idp.token_url()).send().await.unwrap();
    assert_eq!(r.status(), 405);
}
