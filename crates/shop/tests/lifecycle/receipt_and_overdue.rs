//! Tests 10-11: receipt only after shipping; a deposit that never comes.

use std::time::Duration;

use serde_json::json;
use shop::Service;

use crate::helpers::*;

/// Test 10.
#[tokio::test(flavor = "multi_thread")]
async fn receipt_before_shipping_is_refused_and_after_it_closes_the_order() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;
    let receipt = |customer: &'static str| {
        let path = format!("/orders/{order}/receipt");
        let t = &t;
        async move {
            t.post(
                Service::Order,
                &path,
                &format!("customer:{customer}"),
                json!({}),
            )
            .await
        }
    };

    let early = receipt("alice").await;
    assert_eq!(early.status, 409, "{early:?}");
    assert_eq!(early.problem_type(), "/problems/not-shipped-yet");

    assert_eq!(t.confirm_deposit(&order).await.status, 201);
    t.order_reaches(&order, "Shipping").await;
    assert_eq!(receipt("bob").await.status, 404, "another customer's order");
    let closed = receipt("alice").await;
    assert_eq!(closed.status, 201, "{closed:?}");
    assert_eq!(closed.body["status"], "Closed");
    // Confirming again is harmless.
    assert_eq!(receipt("alice").await.status, 200);
    t.saga_settled().await;
    assert_eq!(
        t.event_types(&format!("saga-{order}"))
            .await
            .last()
            .unwrap(),
        "SagaCompleted"
    );
    t.stop().await;
}

/// Test 11.
#[tokio::test(flavor = "multi_thread")]
async fn an_overdue_deposit_cancels_the_order() {
    let t = spawn_shop_with(|s| s.parts.due_period = Duration::from_secs(1)).await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;

    let cancelled = t.order_reaches(&order, "Cancelled").await;
    assert_eq!(cancelled.body["cancelReason"], "DepositOverdue");
    let payment = t.payment(&order).await.body;
    assert_eq!(payment["status"], "Cancelled");
    assert_eq!(payment["refund"], false);
    // Too late to pay now.
    assert_eq!(t.confirm_deposit(&order).await.status, 409);
    t.saga_settled().await;
    assert_eq!(t.stock(&product).await, 10);
    assert!(t.events(&format!("delivery-{order}")).await.is_empty());
    t.stop().await;
}

/// The saga's deposit timers are part of its bookkeeping: its checkpoint moves past an order
/// still awaiting its deposit, and a restarted saga re-arms that order's timer from the
/// bookkeeping instead of replaying the log back to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_saga_rearms_a_deposit_timer_without_replaying_back_to_it() {
    let mut t = spawn_shop_with(|s| s.parts.due_period = Duration::from_secs(10)).await;
    let product = t.product("Genmaicha", 800, 10).await;
    let waiting = t.place("alice", &product, 1).await;
    t.payment_opened(&waiting).await;
    let options = eventstore::ReadStreamOptions::default();
    let mut payment = t
        .store
        .read_stream(format!("payment-{waiting}"), &options)
        .await
        .unwrap();
    let opened_at = payment.next().await.unwrap().unwrap();
    let opened_at = opened_at.get_original_event().position.commit;
    // Later orders go on; the checkpoint passes the waiting order's payment.
    let paid = t.place("bob", &product, 1).await;
    t.payment_opened(&paid).await;
    assert_eq!(t.confirm_deposit(&paid).await.status, 201);
    t.order_reaches(&paid, "Shipping").await;
    eventually("the checkpoint passes the waiting order", || async {
        let status = t.get(Service::Saga, "/saga/status").await.body;
        status["checkpoint"]["commit"].as_u64() > Some(opened_at)
    })
    .await;
    let partition = saga::partition_of(domain::OrderId::parse(&waiting).unwrap());
    let bookkeeping = saga::checkpoint_stream(partition);
    eventually("the checkpoint is stored", || async {
        let stored = t.events(&bookkeeping).await;
        stored
            .iter()
            .rev()
            .find(|e| e.event_type == "CheckpointStored")
            .is_some_and(|e| e.data["commit"].as_u64() > Some(opened_at))
    })
    .await;

    t.shop.stop_service(Service::Saga).await;
    t.shop.start_service(Service::Saga).await.unwrap();
    eventually("the saga reads its bookkeeping", || async {
        let status = t.get(Service::Saga, "/saga/status").await.body;
        status["checkpointRead"] == true
    })
    .await;
    let status = t.get(Service::Saga, "/saga/status").await.body;
    assert_eq!(status["depositTimers"], 1, "{status}");
    assert!(
        status["startedAfter"]["commit"].as_u64() > Some(opened_at),
        "read on from its checkpoint: {status}"
    );
    let cancelled = t.order_reaches(&waiting, "Cancelled").await;
    assert_eq!(cancelled.body["cancelReason"], "DepositOverdue");
    t.saga_settled().await;
    let kept = t.event_types(&bookkeeping).await;
    assert!(kept.iter().any(|e| e == "DepositTimersCounted"), "{kept:?}");
    t.stop().await;
}

/// A store whose saga bookkeeping was written before the orders were split into partitions
/// (one `saga-checkpoint` for all): each partition takes up the old checkpoint and the timers
/// of its own orders, so a saga of this version reads on from there with every timer armed.
#[tokio::test(flavor = "multi_thread")]
async fn bookkeeping_from_before_partitions_is_taken_up_by_each_partition() {
    use eventstore::{AppendToStreamOptions, EventData, ExpectedRevision};
    let dir = tempfile::tempdir().unwrap();
    let store = estore::start(estore::Settings::ephemeral(dir.path()))
        .await
        .unwrap();
    let client = eventstore::Client::new(store.connection_string().parse().unwrap()).unwrap();
    let metadata = json!({
        "$correlationId": uuid::Uuid::nil(),
        "$causationId": uuid::Uuid::nil(),
        "actor": { "kind": "system", "id": "saga" },
        "at": chrono::Utc::now(),
    });
    let event = |event_type: &str, data: serde_json::Value| {
        EventData::json(event_type, &data)
            .unwrap()
            .metadata_as_json(&metadata)
            .unwrap()
    };
    // The old saga's bookkeeping: a first checkpoint (whose own position it then read up to),
    // then a count with two orders awaiting their deposit, in two different partitions.
    let mut orders = Vec::new();
    while orders.len() < 2 {
        let order = domain::OrderId::new();
        if orders
            .iter()
            .all(|o| saga::partition_of(*o) != saga::partition_of(order))
        {
            orders.push(order);
        }
    }
    let options = AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
    let first = event("CheckpointStored", json!({ "commit": 0, "prepare": 0 }));
    let read_up_to = client
        .append_to_stream(saga::CHECKPOINT_STREAM, &options, first)
        .await
        .unwrap()
        .position;
    let due_at = chrono::Utc::now() + chrono::Duration::days(3);
    let timers: Vec<_> = orders
        .iter()
        .map(|order| json!({ "orderId": order, "dueAt": due_at }))
        .collect();
    let count = json!({
        "checkpoint": { "commit": read_up_to.commit, "prepare": read_up_to.prepare },
        "timers": timers,
    });
    client
        .append_to_stream(
            saga::CHECKPOINT_STREAM,
            &options,
            event("DepositTimersCounted", count),
        )
        .await
        .unwrap();

    let url = store.connection_string();
    let t = spawn_shop_with(|settings| settings.store_url = Some(url)).await;
    eventually("the saga takes up its partitions", || async {
        let status = t.get(Service::Saga, "/saga/status").await.body;
        status["checkpointRead"] == true
    })
    .await;
    let status = t.get(Service::Saga, "/saga/status").await.body;
    assert_eq!(status["depositTimers"], 2, "{status}");
    assert_eq!(
        status["startedAfter"]["commit"].as_u64(),
        Some(read_up_to.commit),
        "read on from the old checkpoint, not from the start: {status}"
    );
    t.stop().await;
}
