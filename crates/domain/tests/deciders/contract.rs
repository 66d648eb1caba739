//! The events are a contract: fixed type names, JSON data with `orderId` and
//! `orderStatus`, and stored events of today still load tomorrow.

use domain::delivery::DeliveryEvent;
use domain::order::OrderEvent;
use domain::payment::PaymentEvent;
use domain::product::ProductEvent;
use domain::Event;
use serde_json::json;

#[track_caller]
fn loads<E: Event + std::fmt::Debug>(event_type: &str, data: serde_json::Value) -> E {
    let event = E::from_json(event_type, data.clone()).expect("a known type, valid data");
    assert_eq!(event.event_type(), event_type);
    assert_eq!(event.to_json(), data, "round trip");
    event
}

#[test]
fn stored_order_events_load_and_round_trip() {
    let order = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let _: OrderEvent = loads(
        "OrderPlaced",
        json!({
            "orderId": order, "orderStatus": "OrderPlaced", "customerId": "alice",
            "productId": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "quantity": 2, "unitPrice": 1250,
            "amount": 2500, "at": "2026-11-24T12:00:00Z"
        }),
    );
    let _: OrderEvent = loads(
        "OrderShipped",
        json!({"orderId": order, "orderStatus": "Shipping", "at": "2026-11-24T12:05:00Z"}),
    );
    let _: OrderEvent = loads(
        "OrderCanceled",
        json!({"orderId": order, "orderStatus": "Cancelled", "reason": "OutOfStock", "at": "2026-11-24T12:05:00Z"}),
    );
    let _: OrderEvent = loads(
        "OrderClosed",
        json!({"orderId": order, "orderStatus": "Closed", "at": "2026-11-24T12:09:00Z"}),
    );
}

#[test]
fn stored_payment_product_and_delivery_events_load_and_round_trip() {
    let order = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let product = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let _: PaymentEvent = loads(
        "PayPlaced",
        json!({
            "orderId": order, "orderStatus": "AwaitingDeposit", "amount": 2500, "depositReference": "MM-0001",
            "account": "DE89", "dueAt": "2026-11-27T12:00:00Z", "at": "2026-11-24T12:01:00Z"
        }),
    );
    let _: PaymentEvent = loads(
        "PayChecked",
        json!({
            "orderId": order, "orderStatus": "DepositConfirmed", "amount": 2500,
            "depositReference": "MM-0F8FAD5BD9CB", "schemaVersion": 2, "at": "2026-11-24T12:10:00Z"
        }),
    );
    let _: PaymentEvent = loads(
        "PayCanceled",
        json!({"orderId": order, "orderStatus": "Cancelled", "reason": "OutOfStock", "refund": true, "at": "2026-11-24T12:12:00Z"}),
    );
    let _: ProductEvent = loads(
        "ProductRegistered",
        json!({"productId": product, "name": "Green tea", "price": 1250, "at": "2026-11-24T12:00:00Z"}),
    );
    let _: ProductEvent = loads(
        "StockAdded",
        json!({"productId": product, "quantity": 5, "stockAfter": 5, "at": "2026-11-24T12:00:00Z"}),
    );
    let _: ProductEvent = loads(
        "QtyDecreased",
        json!({"productId": product, "orderId": order, "orderStatus": "Preparing", "quantity": 2, "stockAfter": 3, "at": "2026-11-24T12:11:00Z"}),
    );
    let _: ProductEvent = loads(
        "QtyIncreased",
        json!({"productId": product, "orderId": order, "orderStatus": "Cancelled", "quantity": 2, "stockAfter": 5, "at": "2026-11-24T12:13:00Z"}),
    );
    let _: DeliveryEvent = loads(
        "DeliveryStarted",
        json!({
            "orderId": order, "orderStatus": "Shipping", "customerId": "alice", "productId": product, "quantity": 2, "at": "2026-11-24T12:14:00Z"
        }),
    );
    let _: DeliveryEvent = loads(
        "DeliveryCompleted",
        json!({"orderId": order, "orderStatus": "Shipping", "at": "2026-11-24T12:20:00Z"}),
    );
}

#[test]
fn a_pay_checked_of_version_1_loads_with_the_reference_derived_from_its_order() {
    let order = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let v1 = json!({"orderId": order, "orderStatus": "DepositConfirmed", "amount": 2500, "at": "2026-11-24T12:10:00Z"});
    let PaymentEvent::PayChecked(checked) = PaymentEvent::from_json("PayChecked", v1).unwrap()
    else {
        panic!("not a PayChecked");
    };
    assert_eq!(checked.deposit_reference, "MM-0F8FAD5BD9CB");
    let written = PaymentEvent::PayChecked(checked).to_json();
    assert_eq!(written["schemaVersion"], 2);
    let newer = json!({"orderId": order, "orderStatus": "DepositConfirmed", "amount": 2500,
                       "depositReference": "MM-1", "schemaVersion": 3, "at": "2026-11-24T12:10:00Z"});
    assert!(matches!(
        PaymentEvent::from_json("PayChecked", newer),
        Err(domain::EventError::TooNew {
            found: 3,
            known: 2,
            ..
        })
    ));
}

#[test]
fn unknown_types_are_not_this_aggregates_and_bad_data_is_an_error() {
    assert!(matches!(
        OrderEvent::from_json("PayPlaced", json!({})),
        Err(domain::EventError::UnknownType(t)) if t == "PayPlaced"
    ));
    assert!(OrderEvent::from_json("OrderClosed", json!({"orderId": "nope"})).is_err());
    let bad_quantity = json!({"productId": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "quantity": 0, "stockAfter": 0, "at": "2026-11-24T12:00:00Z"});
    assert!(ProductEvent::from_json("StockAdded", bad_quantity).is_err());
}
