//! Checks that the integration tests of several services make the same way.
//!
//! Each panics with what it saw, as an assertion in the test itself would.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Sends `req` and returns the answer's body as text, whatever its status.
pub async fn body_text(req: reqwest::RequestBuilder) -> String {
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("sending the request: {e}"));
    res.text()
        .await
        .unwrap_or_else(|e| panic!("reading the answer: {e}"))
}

/// Sends `req` and parses the answer's body as JSON, whatever its status.
pub async fn body_json<T: DeserializeOwned>(req: reqwest::RequestBuilder) -> T {
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("sending the request: {e}"));
    res.json()
        .await
        .unwrap_or_else(|e| panic!("reading the answer as JSON: {e}"))
}

/// Asserts an answer is `application/problem+json` with `status`, and returns its body.
pub async fn problem(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let body = res.text().await.expect("reading the problem body");
    assert_eq!(got, status, "{body}");
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {body}"))
}

/// `SELECT COUNT(*)` of `table` (a name from the test itself, never from input).
pub async fn count_rows(pool: &sqlx::MySqlPool, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("counting the rows of {table}: {e}"))
}
