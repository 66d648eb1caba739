//! OpenTelemetry export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the shop sends its spans over
//! OTLP/HTTP to that collector, and the spans of an order placed with a `traceparent` carry that
//! trace id. The collector here is a plain HTTP endpoint on 127.0.0.1 that keeps what it gets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
/// Longest wait for the shop to come up and for the spans to arrive, in milliseconds.
const UP_MS_MAX: u64 = 60_000;
const EXPORTED_MS_MAX: u64 = 20_000;

/// Starts a collector that keeps the bodies POSTed to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            kept.lock().unwrap().push(body.to_vec());
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_of_an_order_reach_the_otlp_collector_with_its_trace_id() {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    // A failing test leaves no shop behind.
    let (mut shop, urls) = common::up(dir.path(), &env, UP_MS_MAX);
    let gateway = urls["gateway"].clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = common::login(&http, &gateway, "alice").await;
    let placed = http
        .post(format!("{gateway}/api/orders"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-b7ad6b7169203331-01"))
        .json(&json!({"productId": "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b01", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);

    // OTLP carries ids as raw bytes: the trace id's 16 bytes, and the resource's service name.
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_millis(EXPORTED_MS_MAX);
    let exported = loop {
        let bodies = received.lock().unwrap().clone();
        let ours: Vec<_> = bodies.iter().filter(|b| contains(b, &trace_id)).collect();
        // The gateway's span, the order service's, and the saga's step acting on OrderPlaced.
        let names = ["request", "saga_step"];
        if names
            .iter()
            .all(|name| ours.iter().any(|b| contains(b, name.as_bytes())))
        {
            break ours.len();
        }
        assert!(
            Instant::now() < deadline,
            "no spans of trace {TRACE_ID} (saga step included) in {} bodies",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exported >= 1);
    assert!(received
        .lock()
        .unwrap()
        .iter()
        .any(|b| contains(b, b"minimall")));
    // SAFETY: SIGTERM to the shop this test started.
    unsafe { libc::kill(shop.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(shop.0.wait().unwrap().success());
}
