//! A product's stock over two streams: the order's reservation, planned first, and the product's,
//! counted at its expected revision (ARCHITECTURE.md, "Stock"). Black box over the inventory's
//! HTTP API, with the store written directly where a crash or an older version left it so.

use std::sync::Arc;

use eventstore::{AppendToStreamOptions, EventData, ExpectedRevision};
use serde_json::{json, Value};
use shop::Service;
use uuid::Uuid;

use crate::helpers::*;

/// Writes events to a stream as the inventory would have (data as given, the contract's
/// metadata), expecting the stream's revision.
async fn write(t: &TestShop, stream: &str, expected: ExpectedRevision, events: &[(&str, Value)]) {
    let order_or_product = Uuid::new_v4();
    let proposed: Vec<EventData> = events
        .iter()
        .map(|(event_type, data)| {
            EventData::json(*event_type, data)
                .unwrap()
                .metadata_as_json(&json!({
                    "$correlationId": order_or_product,
                    "$causationId": Uuid::new_v4(),
                    "actor": { "kind": "system", "id": "inventory" },
                    "at": chrono::Utc::now(),
                }))
                .unwrap()
        })
        .collect();
    let options = AppendToStreamOptions::default().expected_revision(expected);
    t.store
        .append_to_stream(stream, &options, proposed)
        .await
        .unwrap();
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn qty_decreased(product: Uuid, order: Uuid, quantity: u32, after: u32) -> (&'static str, Value) {
    let data = json!({ "productId": product, "orderId": order, "orderStatus": "Preparing",
        "quantity": quantity, "stockAfter": after, "at": now() });
    ("QtyDecreased", data)
}

fn qty_increased(product: Uuid, order: Uuid, quantity: u32, after: u32) -> (&'static str, Value) {
    let data = json!({ "productId": product, "orderId": order, "orderStatus": "Cancelled",
        "quantity": quantity, "stockAfter": after, "at": now() });
    ("QtyIncreased", data)
}

fn planned(product: Uuid, order: Uuid, movement: &str, quantity: u32, revision: u64) -> Value {
    json!({ "orderId": order, "productId": product, "movement": movement,
        "quantity": quantity, "productRevision": revision, "at": now() })
}

impl TestShop {
    /// Plans a take for a new order at the product's next revision, as the inventory does just
    /// before appending it; returns the order and that revision.
    async fn plan_take(&self, product: &str, quantity: u32) -> (Uuid, u64) {
        let order = Uuid::new_v4();
        let revision = self.events(&format!("product-{product}")).await.len() as u64;
        let plan = planned(product.parse().unwrap(), order, "Take", quantity, revision);
        let reservation = format!("reservation-{order}");
        let plan = [("StockMovePlanned", plan)];
        write(self, &reservation, ExpectedRevision::NoStream, &plan).await;
        (order, revision)
    }

    async fn take(&self, product: &str, order: &str, quantity: u32) -> Answer {
        let path = format!("/products/{product}/decrease");
        let body = json!({ "orderId": order, "quantity": quantity });
        self.post(Service::Inventory, &path, "system:saga", body)
            .await
    }

    async fn give_back(&self, product: &str, order: &str) -> Answer {
        let path = format!("/products/{product}/increase");
        let body = json!({ "orderId": order });
        self.post(Service::Inventory, &path, "system:saga", body)
            .await
    }

    /// How many events of `event_type` the product's stream holds.
    async fn count_of(&self, product: &str, event_type: &str) -> usize {
        let types = self.event_types(&format!("product-{product}")).await;
        types.iter().filter(|t| *t == event_type).count()
    }
}

/// A product written before reservations existed (its stream remembers its orders): its orders'
/// reservations are written on the first stock move, and every order is answered as its history
/// says.
#[tokio::test(flavor = "multi_thread")]
async fn a_product_recorded_before_reservations_keeps_every_order_as_it_was() {
    let t = spawn_shop().await;
    let product = Uuid::new_v4();
    let (taken, given_back) = (Uuid::new_v4(), Uuid::new_v4());
    let registered = json!({ "productId": product, "name": "Old tea", "price": 700, "at": now() });
    let added = json!({ "productId": product, "quantity": 10, "stockAfter": 10, "at": now() });
    let stream = format!("product-{product}");
    write(
        &t,
        &stream,
        ExpectedRevision::NoStream,
        &[
            ("ProductRegistered", registered),
            ("StockAdded", added),
            qty_decreased(product, taken, 2, 8),
            qty_decreased(product, given_back, 3, 5),
            qty_increased(product, given_back, 3, 8),
        ],
    )
    .await;
    let (product, taken, given_back) = (
        product.to_string(),
        taken.to_string(),
        given_back.to_string(),
    );

    let again = t.take(&product, &taken, 2).await;
    assert_eq!((again.status, again.body["stock"].as_u64()), (200, Some(8)));
    let refused = t.take(&product, &given_back, 3).await;
    assert_eq!(
        (refused.status, refused.problem_type()),
        (409, "/problems/already-given-back"),
        "{refused:?}"
    );
    assert_eq!(t.give_back(&product, &given_back).await.status, 200);
    let fresh = Uuid::new_v4().to_string();
    let new = t.take(&product, &fresh, 4).await;
    assert_eq!((new.status, new.body["stock"].as_u64()), (201, Some(4)));
    let back = t.give_back(&product, &taken).await;
    assert_eq!((back.status, back.body["stock"].as_u64()), (201, Some(6)));
    assert_eq!(t.stock(&product).await, 6);

    // Counted once, after the reservations were written; the old events stay as they were.
    assert_eq!(t.count_of(&product, "StockCounted").await, 1);
    for order in [&taken, &given_back] {
        let plans = t.event_types(&format!("reservation-{order}")).await;
        assert!(!plans.is_empty(), "order {order} has its reservation");
    }
    let first = t.events(&format!("reservation-{given_back}")).await;
    assert_eq!(first[0].data["movement"], "GiveBack");
    assert_eq!(first[0].data["productRevision"], 4);
    t.stop().await;
}

/// The inventory stopped between planning an order's take and appending it: the take happens
/// once, on the next call.
#[tokio::test(flavor = "multi_thread")]
async fn a_take_planned_but_never_written_happens_once_on_the_next_call() {
    let t = spawn_shop().await;
    let product = t.product("Matcha", 1500, 5).await;
    // Planned at the product's next revision, which nothing took.
    let (order, _) = t.plan_take(&product, 2).await;
    let order = order.to_string();

    let taken = t.take(&product, &order, 2).await;
    assert_eq!((taken.status, taken.body["stock"].as_u64()), (201, Some(3)));
    let again = t.take(&product, &order, 2).await;
    assert_eq!((again.status, again.body["stock"].as_u64()), (200, Some(3)));
    assert_eq!(t.count_of(&product, "QtyDecreased").await, 1);
    t.stop().await;
}

/// A plan whose revision another event took (a stock addition won the race): the take did not
/// happen, and the next call takes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_take_whose_revision_went_to_another_event_happens_on_the_next_call() {
    let t = spawn_shop().await;
    let product = t.product("Sencha", 900, 5).await;
    let (order, _) = t.plan_take(&product, 1).await;
    let path = format!("/products/{product}/stock");
    let add = t
        .post(
            Service::Inventory,
            &path,
            "seller:shop",
            json!({ "quantity": 2 }),
        )
        .await;
    assert_eq!(add.status, 201, "{add:?}");

    let taken = t.take(&product, &order.to_string(), 1).await;
    assert_eq!((taken.status, taken.body["stock"].as_u64()), (201, Some(6)));
    t.stop().await;
}

/// The inventory stopped after appending a planned take but before answering: the retried call
/// finds it done and takes nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn a_take_written_but_not_answered_is_not_taken_again() {
    let t = spawn_shop().await;
    let product = t.product("Hojicha", 1100, 5).await;
    let product_id: Uuid = product.parse().unwrap();
    let (order, revision) = t.plan_take(&product, 2).await;
    let stream = format!("product-{product}");
    write(
        &t,
        &stream,
        ExpectedRevision::Exact(revision - 1),
        &[qty_decreased(product_id, order, 2, 3)],
    )
    .await;

    let again = t.take(&product, &order.to_string(), 2).await;
    assert_eq!((again.status, again.body["stock"].as_u64()), (200, Some(3)));
    assert_eq!(t.count_of(&product, "QtyDecreased").await, 1);
    assert_eq!(t.stock(&product).await, 3);
    t.stop().await;
}

/// A best seller: hundreds of orders behind it, each taken once even when the call is repeated
/// at once, given back once; the product's stream is counted every 100 events so loading it reads
/// only what follows the latest count.
#[tokio::test(flavor = "multi_thread")]
async fn a_product_with_hundreds_of_orders_takes_and_gives_back_each_once() {
    const ORDERS: usize = 240;
    const COPIES: usize = 3;
    const WAVE_ORDERS: usize = 8;
    let t = Arc::new(spawn_shop().await);
    let product = t.product("Best seller", 500, ORDERS as i64).await;
    let orders: Vec<String> = (0..ORDERS).map(|_| Uuid::new_v4().to_string()).collect();
    let mut statuses = Vec::new();
    // In waves, as the saga's bounded concurrency would call: every order of a wave races its
    // copies and the other orders for the product's stream.
    for wave in orders.chunks(WAVE_ORDERS) {
        let calls: Vec<_> = wave
            .iter()
            .flat_map(|order| std::iter::repeat_n(order.clone(), COPIES))
            .map(|order| {
                let (t, product) = (Arc::clone(&t), product.clone());
                tokio::spawn(async move { t.take(&product, &order, 1).await.status })
            })
            .collect();
        for call in calls {
            statuses.push(call.await.unwrap());
        }
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(created, ORDERS, "each order taken once: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 200));
    assert_eq!(t.stock(&product).await, 0);
    assert_eq!(t.count_of(&product, "QtyDecreased").await, ORDERS);

    for order in orders.iter().take(ORDERS / 2) {
        assert_eq!(t.give_back(&product, order).await.status, 201);
        assert_eq!(t.give_back(&product, order).await.status, 200);
    }
    assert_eq!(t.stock(&product).await, (ORDERS / 2) as u64);
    let events = t.events(&format!("product-{product}")).await;
    let counts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == "StockCounted")
        .map(|(revision, _)| revision)
        .collect();
    assert!(counts.len() >= 4, "counted as the stream grows: {counts:?}");
    assert!(
        counts.windows(2).all(|w| w[1] - w[0] <= 101),
        "at most 100 events between counts: {counts:?}"
    );
    let t = Arc::into_inner(t).expect("no task holds the shop any more");
    t.stop().await;
}
