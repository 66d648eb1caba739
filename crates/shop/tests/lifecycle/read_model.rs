//! The order-status read model: statuses, timeline, the customer's list, the
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
    // The receipt completes the delivery.
    let path = format!("/orders/{order}");
    eventually("the delivery is marked delivered", || async {
        t.get(Service::OrderStatus, &path).await.body["delivery"]["deliveredAt"].is_string()
    })
    .await;
    let seen = t.get(Service::OrderStatus, &path).await.body;

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
        ("DeliveryCompleted", "system"),
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
    t.stop().await;
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
    t.stop().await;
}

/// A live stream's events as they come: `(event, data)`.
struct Live {
    response: reqwest::Response,
    text: String,
}

impl Live {
    /// The next event; fails after `EVENTUALLY_MS_MAX` without one.
    async fn next(&mut self) -> (String, Value) {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(EVENTUALLY_MS_MAX);
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .filter_map(|l| l.strip_prefix(name))
                        .collect::<Vec<_>>()
                        .join("")
                };
                let (event, data) = (field("event:"), field("data:"));
                if !event.is_empty() {
                    let data = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    return (event.trim().to_string(), data);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The statuses `order` is sent in, in order, until it reaches `last`.
    async fn statuses_until(&mut self, order: &str, last: &str) -> Vec<String> {
        let mut statuses = Vec::new();
        while statuses.last().map(String::as_str) != Some(last) {
            let (event, row) = self.next().await;
            assert_eq!(event, "order", "{row}");
            if row["orderId"] == order {
                statuses.push(row["status"].as_str().unwrap().to_string());
            }
        }
        statuses
    }
}

/// The customer's screen gets where their orders stand when it connects, then each status an
/// order enters, once — and a status shown is one the order accepts the next command in: the
/// moment it says Shipping, a receipt is taken.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_sees_their_orders_change_live() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let waiting = t.place("alice", &product, 1).await;
    t.payment_opened(&waiting).await;
    let confirmed = t.confirm_deposit(&waiting).await;
    let shipped = t.seen(&waiting, &confirmed.body["position"]).await;
    assert_eq!(shipped.status, 200);
    let url = format!("{}/customers/alice/live", t.shop.url(Service::OrderStatus));
    let signed = |url: String, actor: &str| {
        t.http
            .get(url)
            .header("x-actor", actor)
            .header(servicekit::PROOF_HEADER, t.shop.identity().prove(actor))
    };
    let response = signed(url, "customer:alice").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut live = Live {
        response,
        text: String::new(),
    };
    let mut others = signed(
        format!("{}/customers/bob/live", t.shop.url(Service::OrderStatus)),
        "customer:bob",
    )
    .send()
    .await
    .unwrap();
    // Where things stand, first.
    let (event, now) = live.next().await;
    assert_eq!(
        (event.as_str(), &now["orderId"]),
        ("order", &json!(waiting))
    );

    let order = t.place("alice", &product, 1).await;
    assert_eq!(
        live.statuses_until(&order, "AwaitingDeposit").await,
        ["OrderPlaced", "AwaitingDeposit"]
    );
    t.confirm_deposit(&order).await;
    assert_eq!(
        live.statuses_until(&order, "Shipping").await,
        ["DepositConfirmed", "Preparing", "Shipping"]
    );
    let receipt = t.receipt("alice", &order).await;
    assert_eq!(receipt.status, 201, "{receipt:?}");
    assert_eq!(live.statuses_until(&order, "Closed").await, ["Closed"]);
    // The delivery is marked delivered after the receipt; the status sent stays Closed.
    eventually("the delivery is marked delivered", || async {
        t.get(Service::OrderStatus, &format!("/orders/{order}"))
            .await
            .body["delivery"]["deliveredAt"]
            .is_string()
    })
    .await;
    // Bob's stream says nothing of Alice's orders (only keep-alive comments, if anything).
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), others.chunk()).await;
    if let Ok(Ok(Some(chunk))) = quiet {
        assert!(!String::from_utf8_lossy(&chunk).contains(&order));
    }
    // Open streams would hold the shop's graceful stop for its whole drain time.
    drop((live, others));
    t.stop().await;
}

/// Everything the read model answers about `orders` and `customers`.
async fn snapshot(t: &TestShop, orders: &[String], customers: &[&str]) -> Vec<Value> {
    let mut answers = Vec::new();
    for order in orders {
        answers.push(
            t.get(Service::OrderStatus, &format!("/orders/{order}"))
                .await
                .body,
        );
    }
    for customer in customers {
        let path = format!("/customers/{customer}/orders");
        answers.push(t.get(Service::OrderStatus, &path).await.body);
    }
    for status in [
        "AwaitingDeposit",
        "Preparing",
        "Shipping",
        "Closed",
        "Cancelled",
    ] {
        let path = format!("/seller/orders?status={status}");
        answers.push(t.get(Service::OrderStatus, &path).await.body);
    }
    answers
}

/// A rebuild replays the whole log into a fresh database and swaps it in while queries go on;
/// after a random workload, the rebuilt view equals the live one.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuilt_read_model_equals_the_live_one() {
    let t = spawn_shop().await;
    let products = [
        t.product("Green tea", 1250, 100).await,
        t.product("Teapot", 6400, 3).await,
    ];
    let customers = ["alice", "bob", "carol", "dave"];
    // A small deterministic generator (xorshift), so a failure can be replayed.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut orders = Vec::new();
    for _ in 0..24 {
        let customer = customers[random(4) as usize];
        let product = &products[random(2) as usize];
        let order = t.place(customer, product, 1 + random(2) as i64).await;
        t.payment_opened(&order).await;
        match random(4) {
            0 => {}
            1 => assert_eq!(t.cancel(customer, &order).await.status, 201),
            _ => {
                assert_eq!(t.confirm_deposit(&order).await.status, 201);
                eventually("the order ships or is cancelled", || async {
                    let status = t.order(&order).await.body["status"].clone();
                    status == "Shipping" || status == "Cancelled"
                })
                .await;
                if random(2) == 0 && t.order(&order).await.body["status"] == "Shipping" {
                    assert_eq!(t.receipt(customer, &order).await.status, 201);
                }
            }
        }
        orders.push(order);
    }
    t.saga_settled().await;
    let last = t.place("alice", &products[0], 1).await;
    t.payment_opened(&last).await;
    t.saga_settled().await;
    orders.push(last.clone());
    eventually("the read model shows the last order", || async {
        t.get(Service::OrderStatus, &format!("/orders/{last}"))
            .await
            .body["status"]
            == "AwaitingDeposit"
    })
    .await;
    let live = snapshot(&t, &orders, &customers).await;

    let rebuild = || {
        t.send(
            Service::OrderStatus,
            reqwest::Method::POST,
            "/admin/rebuild",
            None,
            None,
        )
    };
    let by_customer = t
        .send(
            Service::OrderStatus,
            reqwest::Method::POST,
            "/admin/rebuild",
            Some("customer:alice"),
            None,
        )
        .await;
    assert_eq!(by_customer.status, 403, "{by_customer:?}");
    let started = rebuild().await;
    assert_eq!(started.status, 202, "{started:?}");
    // A second request while it runs is refused (or starts anew if it already finished).
    let again = rebuild().await;
    assert!([202, 409].contains(&again.status), "{again:?}");
    eventually("the rebuild finishes", || async {
        // Queries keep being answered meanwhile.
        assert_eq!(
            t.get(Service::OrderStatus, &format!("/orders/{last}"))
                .await
                .status,
            200
        );
        t.get(Service::OrderStatus, "/admin/rebuild").await.body["done"] == true
    })
    .await;
    let progress = t.get(Service::OrderStatus, "/admin/rebuild").await.body;
    assert!(progress["error"].is_null(), "{progress}");
    assert!(progress["events"].as_u64().unwrap() > 0);

    let rebuilt = snapshot(&t, &orders, &customers).await;
    assert_eq!(rebuilt, live);
    // And it stays live after the swap.
    assert_eq!(t.confirm_deposit(&last).await.status, 201);
    t.order_reaches(&last, "Shipping").await;
    eventually("the swapped-in read model follows on", || async {
        t.get(Service::OrderStatus, &format!("/orders/{last}"))
            .await
            .body["status"]
            == "Shipping"
    })
    .await;
    t.stop().await;
}
