//! Tests 7-9: services down, and the saga replaying from an older checkpoint.

use std::time::Duration;

use eventstore::{AppendToStreamOptions, EventData, ExpectedRevision};
use shop::Service;

use crate::helpers::*;

/// Test 7.
#[tokio::test(flavor = "multi_thread")]
async fn orders_are_accepted_while_payment_inventory_and_delivery_are_down_and_go_on_when_back() {
    let mut t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    t.shop.stop_service(Service::Payment).await;
    t.shop.stop_service(Service::Inventory).await;
    t.shop.stop_service(Service::Delivery).await;

    // Priced from the order service's own catalogue view: no other service is needed.
    let order = t.place("alice", &product, 1).await;
    assert_eq!(t.order(&order).await.body["amount"], 1250);
    // The saga keeps trying; nothing is lost and nothing is given up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(t.order(&order).await.body["status"], "OrderPlaced");
    assert!(t.events(&format!("payment-{order}")).await.is_empty());

    t.shop.start_service(Service::Payment).await.unwrap();
    t.payment_opened(&order).await;
    assert_eq!(t.payment(&order).await.body["status"], "AwaitingDeposit");
    t.shop.start_service(Service::Inventory).await.unwrap();
    t.shop.start_service(Service::Delivery).await.unwrap();
    assert_eq!(t.confirm_deposit(&order).await.status, 201);
    t.order_reaches(&order, "Shipping").await;
    t.stop().await;
}

/// Test 8.
#[tokio::test(flavor = "multi_thread")]
async fn with_inventory_down_the_breaker_opens_nothing_is_compensated_and_the_order_goes_on() {
    let mut t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;
    t.shop.stop_service(Service::Inventory).await;

    assert_eq!(t.confirm_deposit(&order).await.status, 201);
    t.saga_breaker_opens("inventory").await;
    // Unreachable is not "out of stock": no compensation.
    assert_eq!(t.order(&order).await.body["status"], "OrderPlaced");
    // The waiting order holds up no other: new orders still get their payment.
    let other = t.place("bob", &product, 1).await;
    t.payment_opened(&other).await;
    assert_eq!(t.payment(&order).await.body["status"], "DepositConfirmed");
    assert!(!t
        .event_types(&format!("saga-{order}"))
        .await
        .contains(&"CompensationStarted".to_string()));

    t.shop.start_service(Service::Inventory).await.unwrap();
    t.order_reaches(&order, "Shipping").await;
    assert_eq!(t.stock(&product).await, 9);
    t.stop().await;
}

/// Test 9: the saga stopped mid-flight and restarted from an older checkpoint produces no
/// second stock decrease, payment or delivery.
#[tokio::test(flavor = "multi_thread")]
async fn a_saga_replaying_from_an_older_checkpoint_has_no_second_effect() {
    let mut t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 100).await;
    let shipped = t.place("alice", &product, 2).await;
    let cancelled = t.place("bob", &product, 1).await;
    let in_flight = t.place("carol", &product, 3).await;
    let waiting = t.place("dave", &product, 1).await;
    for order in [&shipped, &cancelled, &in_flight, &waiting] {
        t.payment_opened(order).await;
    }
    assert_eq!(t.confirm_deposit(&shipped).await.status, 201);
    assert_eq!(t.cancel("bob", &cancelled).await.status, 201);
    t.order_reaches(&shipped, "Shipping").await;
    t.saga_settled().await;

    // Mid-flight: a deposit confirmed just as the saga stops.
    assert_eq!(t.confirm_deposit(&in_flight).await.status, 201);
    t.shop.stop_service(Service::Saga).await;

    // Rewind: every partition's checkpoint goes back to the start of the log (written as an
    // operator would, with the contract's metadata).
    for partition in 0..saga::PARTITIONS {
        let rewind = EventData::json(
            "CheckpointStored",
            &serde_json::json!({ "commit": 0, "prepare": 0 }),
        )
        .unwrap()
        .metadata_as_json(&serde_json::json!({
            "$correlationId": uuid::Uuid::new_v4(),
            "$causationId": uuid::Uuid::new_v4(),
            "actor": { "kind": "system", "id": "operator" },
            "at": chrono::Utc::now(),
        }))
        .unwrap();
        t.store
            .append_to_stream(
                saga::checkpoint_stream(partition),
                &AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any),
                rewind,
            )
            .await
            .unwrap();
    }
    t.shop.start_service(Service::Saga).await.unwrap();
    // It really replays: this run starts from the rewound checkpoint.
    eventually("the saga reads its checkpoint", || async {
        let status = t.get(Service::Saga, "/saga/status").await.body;
        status["checkpointRead"] == true
    })
    .await;
    let status = t.get(Service::Saga, "/saga/status").await.body;
    assert_eq!(status["startedAfter"]["commit"], 0, "{status}");
    t.order_reaches(&in_flight, "Shipping").await;
    assert_eq!(t.confirm_deposit(&waiting).await.status, 201);
    t.order_reaches(&waiting, "Shipping").await;
    t.saga_settled().await;

    let count = |types: Vec<String>, wanted: &str| types.iter().filter(|t| *t == wanted).count();
    let product_events = t.event_types(&format!("product-{product}")).await;
    assert_eq!(
        count(product_events.clone(), "QtyDecreased"),
        3,
        "{product_events:?}"
    );
    assert_eq!(count(product_events, "QtyIncreased"), 0);
    assert_eq!(t.stock(&product).await, 100 - 2 - 3 - 1);
    for order in [&shipped, &cancelled, &in_flight, &waiting] {
        let payments = t.event_types(&format!("payment-{order}")).await;
        assert_eq!(count(payments, "PayPlaced"), 1);
        let deliveries = t.event_types(&format!("delivery-{order}")).await;
        assert!(deliveries.len() <= 1, "{deliveries:?}");
        // The saga recorded each step once.
        let mut steps = t.event_types(&format!("saga-{order}")).await;
        let recorded = steps.len();
        steps.sort();
        steps.dedup();
        assert_eq!(steps.len(), recorded, "a step recorded twice for {order}");
    }
    assert_eq!(t.order(&cancelled).await.body["status"], "Cancelled");

    // The checkpoint streams are bookkeeping: the store keeps only their latest checkpoints.
    for partition in 0..saga::PARTITIONS {
        let stream = saga::checkpoint_stream(partition);
        let metadata = t
            .store
            .get_stream_metadata(stream.as_str(), &Default::default())
            .await
            .unwrap();
        let eventstore::StreamMetadataResult::Success(metadata) = metadata else {
            panic!("{stream} has metadata: {metadata:?}");
        };
        assert_eq!(metadata.metadata().max_count, Some(saga::CHECKPOINTS_KEPT));
        let kept = t.event_types(&stream).await;
        assert!(kept.len() as u64 <= saga::CHECKPOINTS_KEPT, "{kept:?}");
    }
    t.stop().await;
}

/// A saga stopped while a compensation waits for a service (out of stock found, payment down)
/// finishes it when it runs again: the answer that was news is not lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_compensation_interrupted_by_a_restart_is_finished_after_it() {
    let mut t = spawn_shop().await;
    let product = t.product("Teapot", 6400, 1).await;
    let order = t.place("alice", &product, 2).await;
    t.payment_opened(&order).await;
    t.saga_settled().await;

    t.shop.stop_service(Service::Saga).await;
    assert_eq!(t.confirm_deposit(&order).await.status, 201);
    t.shop.stop_service(Service::Payment).await;
    t.shop.start_service(Service::Saga).await.unwrap();
    // The saga found the stock short and now waits for payment to refund.
    t.saga_breaker_opens("payment").await;
    t.shop.stop_service(Service::Saga).await;
    t.shop.start_service(Service::Payment).await.unwrap();
    t.shop.start_service(Service::Saga).await.unwrap();

    let cancelled = t.order_reaches(&order, "Cancelled").await;
    assert_eq!(cancelled.body["cancelReason"], "OutOfStock");
    let payment = t.payment(&order).await.body;
    assert_eq!(
        (payment["status"].as_str(), payment["refund"].as_bool()),
        (Some("Cancelled"), Some(true))
    );
    assert_eq!(t.stock(&product).await, 1);
    t.stop().await;
}

/// Places orders (each with its own orderId) until `stop`: what was acknowledged, what was shed
/// with 503 + Retry-After, and what failed otherwise.
async fn place_until(
    order_url: String,
    identity: servicekit::IdentityKey,
    product: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, usize, Vec<String>) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(REQUEST_MS_MAX))
        .build()
        .unwrap();
    let actor = "customer:alice";
    let (mut acknowledged, mut shed, mut failed) = (Vec::new(), 0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let order = uuid::Uuid::new_v4().to_string();
        let sent = http
            .post(format!("{order_url}/orders"))
            .header("x-actor", actor)
            .header(servicekit::PROOF_HEADER, identity.prove(actor))
            .json(&serde_json::json!({"productId": product, "quantity": 1, "orderId": order}))
            .send()
            .await;
        match sent.map(|r| (r.status().as_u16(), r.headers().contains_key("retry-after"))) {
            Ok((201, _)) => acknowledged.push(order),
            Ok((503, true)) => shed += 1,
            other => failed.push(format!("{other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acknowledged, shed, failed)
}

/// The store stopped and started again under load: while it is away every service that needs
/// it says it is not ready and commands are shed with 503 + Retry-After; once it is back every
/// follower resumes, and every acknowledged order is worked once.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_store_away_commands_are_shed_and_when_it_is_back_every_follower_resumes() {
    let mut t = spawn_shop().await;
    let product = t.product("lamp", 1_000, 10_000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(place_until(
        t.shop.url(Service::Order),
        t.shop.identity().clone(),
        product,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    t.shop.stop_store().await;
    let needing_store = [
        Service::Order,
        Service::Payment,
        Service::Inventory,
        Service::Delivery,
        Service::Saga,
        Service::OrderStatus,
    ];
    for service in needing_store {
        eventually(&format!("{service:?} says it is not ready"), || async {
            let ready = t.get(service, "/health/ready").await;
            ready.status == 503 && ready.body["detail"] == "the event store does not answer"
        })
        .await;
    }
    let shed = t
        .post(
            Service::Order,
            "/orders",
            "customer:bob",
            serde_json::json!({"productId": uuid::Uuid::new_v4(), "quantity": 1}),
        )
        .await;
    assert_eq!(
        (shed.status, shed.retry_after.is_some()),
        (503, true),
        "{shed:?}"
    );
    assert_eq!(t.get(Service::Order, "/health/live").await.status, 200);

    t.shop.start_store().await.unwrap();
    for service in needing_store {
        eventually(&format!("{service:?} is ready again"), || async {
            t.get(service, "/health/ready").await.status == 200
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, shed, failed) = load.await.unwrap();
    assert!(failed.is_empty(), "failed: {failed:?}");
    assert!(shed > 0, "the load never met the store away");
    assert!(
        acknowledged.len() >= 10,
        "too little load: {acknowledged:?}"
    );

    // Every follower resumed: the saga opened each acknowledged order's payment once, and the
    // read model shows it.
    for order in &acknowledged {
        eventually(
            &format!("the read model shows {order} awaiting its deposit"),
            || async {
                let seen = t
                    .get(Service::OrderStatus, &format!("/orders/{order}"))
                    .await;
                seen.body["status"] == "AwaitingDeposit"
            },
        )
        .await;
        assert_eq!(
            t.event_types(&format!("payment-{order}")).await,
            ["PayPlaced"],
            "order {order}"
        );
    }
    t.stop().await;
}

/// A saga that cannot renew its leases (the store is gone) stops working its partitions before
/// another instance could take them over, and takes them up again once the store is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_saga_that_cannot_renew_its_leases_stops_working_and_resumes_once_it_can() {
    let mut t = spawn_shop().await;
    let product = t.product("Kukicha", 600, 10).await;
    let partitions =
        |status: &serde_json::Value| status["partitions"].as_array().map_or(0, Vec::len);
    eventually("the saga holds every partition", || async {
        partitions(&t.get(Service::Saga, "/saga/status").await.body) == saga::PARTITIONS
    })
    .await;
    t.shop.stop_store().await;
    let stopped = std::time::Instant::now();
    eventually("the saga stops working its partitions", || async {
        partitions(&t.get(Service::Saga, "/saga/status").await.body) == 0
    })
    .await;
    assert!(
        stopped.elapsed() < std::time::Duration::from_millis(saga::LEASE_MS),
        "fenced after {:?}: before another instance would take over",
        stopped.elapsed()
    );
    t.shop.start_store().await.unwrap();
    eventually("the saga takes its partitions up again", || async {
        partitions(&t.get(Service::Saga, "/saga/status").await.body) == saga::PARTITIONS
    })
    .await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;
    t.stop().await;
}
