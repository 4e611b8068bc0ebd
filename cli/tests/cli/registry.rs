//! `platform registry ls`: reading a discovery-server over HTTP (a scripted Eureka answer on a
//! loopback port) and the golden JSON of the listing.

use std::time::Duration;

use platform::commands::registry::{RegistryView, fetch};
use platform::output::json_string;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cli/fixtures/eureka-apps.json"
    ))
    .unwrap()
}

/// Serves one HTTP request with `body` as JSON and returns the request head it received.
async fn serve_once(body: String) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before sending a request");
            head.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&head).to_string()
    });
    (url, task)
}

/// `fetch` asks `GET /eureka/apps` for JSON and reads Eureka's shapes: ports as
/// `{"$": ..}` (number or string), one instance as an object or many as a list.
#[tokio::test]
async fn reads_eureka_apps_over_http() {
    let (url, server) = serve_once(fixture()).await;
    let apps = tokio::time::timeout(Duration::from_secs(10), fetch(&url))
        .await
        .unwrap()
        .unwrap();
    let head = server.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /eureka/apps http/1.1"), "{head}");
    assert!(head.contains("accept: application/json"), "{head}");
    assert_eq!(apps.instances().count(), 3);
}

/// A registry that is not there is a clear error naming the URL.
#[tokio::test]
async fn unreachable_registry_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = fetch(&url).await.unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.hint().is_some());
}

/// `platform registry ls --json`: instances flattened and sorted, statuses as Eureka
/// computes them, renewal ages from the lease timestamps.
#[test]
fn registry_ls_json() {
    let envelope: registry_client::model::ApplicationsEnvelope =
        serde_json::from_str(&fixture()).unwrap();
    let view = RegistryView::new(
        "http://172.20.0.2:8761",
        &envelope.applications,
        1_700_000_100_000,
    );
    insta::assert_snapshot!("registry_ls", json_string(&view).unwrap());
    insta::assert_snapshot!("registry_ls_text", view.to_text());
}
