//! The order-status read model (SPEC F6, §4.5): statuses, timeline, the customer's list, the
//! seller's queues, and read-your-writes.

use serde_json::{json, Value};
use shop::Service;

use crate::helpers::*;

impl TestShop {
    /// The read model's view of an order, at least as of `position`.
    pub async fn seen(&self, order_id: &str, position: &Value) -> Answer {
        let at_least = position
            .as_u64()
            .map(|p| format!("?atLeast={p}"))
            .unwrap_or_default();
        self.get(
            Service::OrderStatus,
            &format!("/orders/{order_id}{at_least}"),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_model_follows_an_order_and_reads_your_writes() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let placed = t
        .post(
            Service::Order,
            "/orders",
            "customer:alice",
            json!({ "productId": product, "quantity": 2 }),
        )
        .await;
    assert_eq!(placed.status, 201);
    let order = placed.body["orderId"].as_str().unwrap().to_string();

    // Right after the command, asking for its position shows it.
    let seen = t.seen(&order, &placed.body["position"]).await;
    assert_eq!(seen.status, 200, "{seen:?}");
    assert!(
        ["OrderPlaced", "AwaitingDeposit"].contains(&seen.body["status"].as_str().unwrap()),
        "{seen:?}"
    );
    assert_eq!(seen.body["productName"], "Green tea");
    assert_eq!(seen.body["amount"], 2500);

    t.payment_opened(&order).await;
    eventually("the seller's queue shows the order", || async {
        let queue = t
            .get(
                Service::OrderStatus,
                "/seller/orders?status=AwaitingDeposit",
            )
            .await
            .body;
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["orderId"] == order)
    })
    .await;
    let confirmed = t.confirm_deposit(&order).await;
    let seen = t.seen(&order, &confirmed.body["position"]).await;
    assert_ne!(seen.body["status"], "AwaitingDeposit", "{seen:?}");
    let deposit = &seen.body["deposit"];
    assert!(deposit["reference"].as_str().unwrap().starts_with("MM-"));
    assert!(deposit["confirmedAt"].is_string());

    t.order_reaches(&order, "Shipping").await;
    let receipt = t.receipt("alice", &order).await;
    let seen = t.seen(&order, &receipt.body["position"]).await.body;
    assert_eq!(seen["status"], "Closed");
    assert!(seen["delivery"]["startedAt"].is_string());

    // The timeline: every event of the order's process, in order, with who did it.
    let timeline: Vec<(String, String)> = seen["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["eventType"].as_str().unwrap().to_string(),
                m["actorKind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("OrderPlaced", "customer"),
        ("PayPlaced", "system"),
        ("PayChecked", "seller"),
        ("QtyDecreased", "system"),
        ("DeliveryStarted", "system"),
        ("OrderShipped", "system"),
        ("OrderClosed", "customer"),
    ];
    assert_eq!(
        timeline,
        expected.map(|(e, a)| (e.to_string(), a.to_string()))
    );
    let statuses: Vec<&str> = seen["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        [
            "OrderPlaced",
            "AwaitingDeposit",
            "DepositConfirmed",
            "Preparing",
            "Shipping",
            "Closed"
        ]
    );

    // The customer's list holds it; another customer's does not.
    let mine = t
        .get(Service::OrderStatus, "/customers/alice/orders")
        .await
        .body;
    assert!(mine
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["orderId"] == order));
    let theirs = t
        .get(Service::OrderStatus, "/customers/bob/orders")
        .await
        .body;
    assert!(theirs.as_array().unwrap().is_empty());
    t.shop.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_order_shows_why() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;
    let cancel = t.cancel("alice", &order).await;
    let seen = t.seen(&order, &cancel.body["position"]).await.body;
    assert_eq!(seen["status"], "Cancelled");
    assert_eq!(seen["cancelReason"], "CustomerRequest");
    assert_eq!(seen["deposit"]["cancelled"], true);
    t.shop.stop().await;
}

/// Reads server-sent events until one's data satisfies `done`; fails after `EVENTUALLY_MS_MAX`.
async fn until_event(response: &mut reqwest::Response, done: impl Fn(&Value) -> bool) {
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(EVENTUALLY_MS_MAX);
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let data = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .collect::<Vec<_>>()
                .join("");
            if let Ok(value) = serde_json::from_str::<Value>(data.trim()) {
                if done(&value) {
                    return;
                }
            }
        }
    }
}

/// The customer's screen gets each change of their orders without asking again.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_sees_their_orders_change_live() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let url = format!("{}/customers/alice/live", t.shop.url(Service::OrderStatus));
    let mut live = t.http.get(url).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut others = t
        .http
        .get(format!(
            "{}/customers/bob/live",
            t.shop.url(Service::OrderStatus)
        ))
        .send()
        .await
        .unwrap();

    let order = t.place("alice", &product, 1).await;
    until_event(&mut live, |o| {
        o["orderId"] == order && o["status"] == "AwaitingDeposit"
    })
    .await;
    t.confirm_deposit(&order).await;
    until_event(&mut live, |o| {
        o["orderId"] == order && o["status"] == "Shipping"
    })
    .await;
    // Bob's stream says nothing of Alice's order (only keep-alive comments, if anything).
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), others.chunk()).await;
    if let Ok(Ok(Some(chunk))) = quiet {
        assert!(!String::from_utf8_lossy(&chunk).contains(&order));
    }
    // Open streams would hold the shop's graceful stop for its whole drain time.
    drop((live, others));
    t.shop.stop().await;
}
