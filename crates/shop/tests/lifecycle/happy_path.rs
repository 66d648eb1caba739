use serde_json::Value;

use crate::helpers::*;

/// Test 1: F1 → F5; each stream holds the expected events in order, each with orderId,
/// orderStatus, correlation and causation ids.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_goes_from_placement_to_receipt() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 2).await;
    t.payment_opened(&order).await;
    let payment = t.payment(&order).await.body;
    assert_eq!(payment["status"], "AwaitingDeposit");
    assert_eq!(payment["amount"], 2500);
    assert!(payment["depositReference"]
        .as_str()
        .unwrap()
        .starts_with("MM-"));
    assert!(payment["dueAt"].is_string() && payment["account"].is_string());

    assert_eq!(t.confirm_deposit(&order).await.status, 201);
    t.order_reaches(&order, "Shipping").await;
    let receipt = t.receipt("alice", &order).await;
    assert_eq!(receipt.status, 201, "{receipt:?}");
    assert_eq!(receipt.body["status"], "Closed");
    t.saga_settled().await;

    assert_eq!(
        t.event_types(&format!("order-{order}")).await,
        ["OrderPlaced", "OrderShipped", "OrderClosed"]
    );
    assert_eq!(
        t.event_types(&format!("payment-{order}")).await,
        ["PayPlaced", "PayChecked"]
    );
    assert_eq!(
        t.event_types(&format!("delivery-{order}")).await,
        ["DeliveryStarted", "DeliveryCompleted"]
    );
    assert_eq!(
        t.event_types(&format!("product-{product}")).await,
        [
            "ProductRegistered",
            "StockAdded",
            "StockCounted",
            "QtyDecreased"
        ]
    );
    assert_eq!(
        t.event_types(&format!("reservation-{order}")).await,
        ["StockMovePlanned"]
    );
    assert_eq!(
        t.event_types(&format!("saga-{order}")).await,
        [
            "PaymentRequested",
            "DepositAwaited",
            "StockRequested",
            "DeliveryRequested",
            "ShipmentRecorded",
            "SagaCompleted"
        ]
    );
    assert_eq!(t.stock(&product).await, 8);

    // Every event of the order's process carries its id, its resulting status, and its
    // correlation (the order) and causation ids.
    let mut statuses = Vec::new();
    for stream in ["order", "payment", "delivery", "saga"] {
        for event in t.events(&format!("{stream}-{order}")).await {
            check_envelope(&event, &order);
            statuses.push(event.data["orderStatus"].as_str().unwrap().to_string());
        }
    }
    let decreased = t.events(&format!("product-{product}")).await.pop().unwrap();
    check_envelope(&decreased, &order);
    assert_eq!(decreased.data["orderStatus"], "Preparing");
    for status in [
        "OrderPlaced",
        "AwaitingDeposit",
        "DepositConfirmed",
        "Shipping",
        "Closed",
    ] {
        assert!(
            statuses.iter().any(|s| s == status),
            "{status} in {statuses:?}"
        );
    }

    // Causation links the process: the payment was opened because of the order's placement.
    let placed = &t.events(&format!("order-{order}")).await[0];
    let pay_placed = &t.events(&format!("payment-{order}")).await[0];
    assert_eq!(
        pay_placed.metadata["$causationId"],
        Value::from(placed.id.clone())
    );
    assert_eq!(pay_placed.metadata["actor"]["kind"], "system");
    assert_eq!(placed.metadata["actor"]["id"], "alice");
    t.stop().await;
}

#[track_caller]
fn check_envelope(event: &Stored, order: &str) {
    assert_eq!(event.data["orderId"], order, "{event:?}");
    assert!(event.data["orderStatus"].is_string(), "{event:?}");
    assert_eq!(event.metadata["$correlationId"], order, "{event:?}");
    let causation = event.metadata["$causationId"].as_str().unwrap_or("");
    assert!(uuid::Uuid::parse_str(causation).is_ok(), "{event:?}");
}
