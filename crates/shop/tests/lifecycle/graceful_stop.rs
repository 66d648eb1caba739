//! A part that is told to stop goes out of rotation before it goes away: readiness answers 503
//! at once while it keeps serving for its drain notice, live streams are told to reconnect, and
//! requests in flight get their answers.

use std::time::{Duration, Instant};

use shop::Service;

use crate::helpers::*;

const NOTICE_MS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_part_says_so_keeps_serving_ends_live_streams_and_answers_in_flight_requests() {
    let mut t = spawn_shop_with(|s| s.parts.drain_notice = Duration::from_millis(NOTICE_MS)).await;
    let base = t.shop.url(Service::OrderStatus);
    let signed = |url: String| {
        t.http.get(url).header("x-actor", "customer:alice").header(
            servicekit::PROOF_HEADER,
            t.shop.identity().prove("customer:alice"),
        )
    };
    assert_eq!(
        t.get(Service::OrderStatus, "/health/ready").await.status,
        200
    );
    let mut live = signed(format!("{base}/customers/alice/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    // A read waiting for a position the log has not reached: in flight while the stop begins.
    let waiting =
        tokio::spawn(signed(format!("{base}/customers/alice/orders?atLeast=999999999")).send());
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let stop = {
        let running = t.shop.take_service(Service::OrderStatus).unwrap();
        tokio::spawn(running.stop())
    };
    eventually("readiness answers 503", || async {
        t.http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    let during = t
        .http
        .get(format!("{base}/customers/alice/orders"))
        .header("x-actor", "system:test")
        .header(
            servicekit::PROOF_HEADER,
            t.shop.identity().prove("system:test"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 200, "a query during the drain notice");
    assert!(started.elapsed() < Duration::from_millis(NOTICE_MS));

    let mut said = String::new();
    let ended = tokio::time::timeout(Duration::from_millis(NOTICE_MS), async {
        while let Some(chunk) = live.chunk().await.unwrap() {
            said.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the live stream did not end: {said:?}");
    assert!(said.contains("event: reconnect"), "{said:?}");

    let answered = waiting
        .await
        .unwrap()
        .expect("the in-flight read got no answer");
    assert_eq!(answered.status(), 503, "the waiting read's own answer");
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(NOTICE_MS));
    assert!(
        t.http
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err(),
        "still listening"
    );
}
