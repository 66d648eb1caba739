//! Telemetry: one trace id from the client's `traceparent` through the gateway and the services
//! into the events' metadata, continued by the saga in the calls it makes; and the metrics an
//! on-call engineer reads (latency per route, saga steps, follower lag, breakers).

use serde_json::json;
use shop::Service;

use crate::helpers::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn trace_of(stored: &Stored) -> String {
    let parent = stored.metadata["traceparent"].as_str().unwrap_or_default();
    parent.split('-').nth(1).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_id_runs_from_the_client_through_the_services_and_the_saga_into_the_events() {
    let t = spawn_shop().await;
    let product = t.product("lamp", 1_000, 10).await;
    let token = t.login("alice").await;
    let placed = t
        .http
        .post(format!("{}/api/orders", t.shop.url(Service::Gateway)))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&json!({"productId": product, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    assert_eq!(placed.headers()["x-trace-id"], TRACE_ID);
    let order = answer(placed).await.body["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    t.payment_opened(&order).await;

    let placed = t.events(&format!("order-{order}")).await;
    assert_eq!(trace_of(&placed[0]), TRACE_ID, "{:?}", placed[0].metadata);
    // The saga acted on OrderPlaced: its own events and the payment it opened carry the trace.
    let opened = t.events(&format!("payment-{order}")).await;
    assert_eq!(trace_of(&opened[0]), TRACE_ID, "{:?}", opened[0].metadata);
    let saga = t.events(&format!("saga-{order}")).await;
    assert!(!saga.is_empty());
    assert!(saga.iter().all(|e| trace_of(e) == TRACE_ID), "{saga:?}");
    // Each hop is its own span of the trace.
    let spans = [&placed[0], &opened[0]].map(|e| e.metadata["traceparent"].clone());
    assert_ne!(spans[0], spans[1]);

    // Without a traceparent the gateway starts a trace and says which.
    let answer = t
        .http
        .get(format!("{}/api/products", t.shop.url(Service::Gateway)))
        .send()
        .await
        .unwrap();
    let started = answer.headers()["x-trace-id"].to_str().unwrap().to_string();
    assert_eq!(started.len(), 32);
    assert_ne!(started, TRACE_ID);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_latency_per_route_saga_steps_follower_lag_and_breakers() {
    let t = spawn_shop().await;
    let product = t.product("lamp", 1_000, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;
    let text = t
        .http
        .get(format!("{}/metrics", t.shop.url(Service::Saga)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| {
        text.lines()
            .any(|line| line.contains(needle) && !line.starts_with('#'))
    };
    for needle in [
        "minimall_http_request_duration_seconds_bucket{service=\"order\",route=\"/orders\",status=\"201\"",
        "minimall_http_requests_total{service=\"order\",route=\"/orders\",status=\"201\"}",
        "minimall_saga_step_duration_seconds_bucket{trigger=\"OrderPlaced\",outcome=\"done\"",
        "minimall_saga_parked_triggers{partition=",
        "minimall_follower_lag_seconds{follower=\"saga\"}",
        "minimall_follower_lag_events{follower=\"order-status\"}",
        "minimall_follower_caught_up{follower=\"order-status\"} 1",
        "minimall_follower_events_total{follower=\"catalogue\"}",
        "minimall_breaker_open{breaker=\"payment\"} 0",
    ] {
        assert!(has(needle), "no {needle} in\n{text}");
    }
    t.stop().await;
}
