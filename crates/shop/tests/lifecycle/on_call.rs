//! The seller's on-call view through the gateway: a trigger parked while the delivery service
//! is down shows with why and since when, its retry is the seller's alone and is recorded on
//! the order's saga stream with who asked, and the order goes on once the service is back; then
//! the saga and the read model show no events behind.

use serde_json::Value;
use shop::Service;

use crate::helpers::*;

/// How many times in a row the on-call view is read while a trigger is parked.
const SHOWN_READS: usize = 40;

/// The parked trigger of `order` the on-call view shows, if any.
fn parked_of(view: &Value, order: &str) -> Option<Value> {
    view["sagas"]
        .as_array()?
        .iter()
        .filter_map(|saga| saga["status"]["parked"].as_array())
        .flatten()
        .find(|parked| parked["orderId"] == order)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_trigger_shows_on_call_and_its_retry_is_the_sellers_and_recorded() {
    use reqwest::Method as M;
    let mut t = spawn_shop().await;
    let (seller, alice) = (t.login("seller").await, t.login("alice").await);
    let product = t.product("Hojicha", 700, 10).await;
    t.shop.stop_service(Service::Delivery).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;
    assert_eq!(t.confirm_deposit(&order).await.status, 201);

    eventually("the on-call view shows the parked delivery", || async {
        let view = t.api(M::GET, "/api/operator", Some(&seller), None).await;
        assert_eq!(view.status, 200, "{view:?}");
        parked_of(&view.body, &order)
            .is_some_and(|p| p["reason"].as_str().is_some_and(|r| r.contains("delivery")))
    })
    .await;
    // Tried again every retry pause, it is shown parked all along, not only between tries.
    let mut view = Value::Null;
    for _ in 0..SHOWN_READS {
        view = t
            .api(M::GET, "/api/operator", Some(&seller), None)
            .await
            .body;
        assert!(parked_of(&view, &order).is_some(), "{view}");
    }
    let parked = parked_of(&view, &order).unwrap();
    assert_eq!(parked["trigger"], "StockTaken", "{parked}");
    assert!(parked["attempts"].as_u64() >= Some(1), "{parked}");
    assert!(parked["since"].is_string(), "{parked}");
    let saga = &view["sagas"][0]["status"];
    assert_eq!(
        saga["partitions"].as_array().map(Vec::len),
        Some(saga::PARTITIONS),
        "{view}"
    );
    assert!(saga["parkedCount"].as_u64() >= Some(1), "{view}");
    let read_model = &view["readModels"][0]["status"];
    assert_eq!(read_model["caughtUp"], true, "{view}");
    assert!(read_model["applied"]["commit"].is_u64(), "{view}");

    // Only the seller may look or retry.
    let retry = format!("/api/operator/orders/{order}/retry");
    assert_eq!(
        t.api(M::GET, "/api/operator", Some(&alice), None)
            .await
            .status,
        403
    );
    assert_eq!(t.api(M::POST, &retry, Some(&alice), None).await.status, 403);
    assert_eq!(t.api(M::POST, &retry, None, None).await.status, 401);

    // Retried while delivery is still down: tried, still parked, and recorded with who asked.
    let retried = t.api(M::POST, &retry, Some(&seller), None).await;
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(retried.body["trigger"], "StockTaken", "{retried:?}");
    assert!(
        retried.body["stillParked"]["reason"].is_string(),
        "{retried:?}"
    );
    let recorded = t.events(&format!("saga-{order}")).await;
    let retry_event = recorded
        .iter()
        .find(|e| e.event_type == "TriggerRetried")
        .expect("the retry is recorded on the saga's stream");
    assert_eq!(retry_event.data["trigger"], "StockTaken");
    assert_eq!(
        retry_event.metadata["actor"]["kind"], "seller",
        "{:?}",
        retry_event.metadata
    );

    // Back: the order goes on; nothing is parked any more.
    t.shop.start_service(Service::Delivery).await.unwrap();
    t.order_reaches(&order, "Shipping").await;
    t.saga_settled().await;
    let nothing = t.api(M::POST, &retry, Some(&seller), None).await;
    assert_eq!(nothing.status, 404, "{nothing:?}");
    assert_eq!(nothing.content_type, "application/problem+json");

    // Settled: the saga and the read model, counted, are no events behind.
    eventually(
        "the saga and the read model are counted 0 events behind",
        || async {
            let view = t
                .api(M::GET, "/api/operator", Some(&seller), None)
                .await
                .body;
            let behind = |part: &str| view[part][0]["status"]["eventsBehind"].as_u64();
            behind("sagas") == Some(0) && behind("readModels") == Some(0)
        },
    )
    .await;
    t.stop().await;
}
