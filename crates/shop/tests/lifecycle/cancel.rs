//! Tests 2-4: a customer's cancel against the seller's deposit confirmation: exactly one wins.

use std::sync::Arc;

use shop::Service;

use crate::helpers::*;

/// Test 2.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_before_the_deposit_cancels_order_and_payment_and_touches_no_stock() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 2).await;
    t.payment_opened(&order).await;

    let cancel = t.cancel("alice", &order).await;
    assert_eq!(cancel.status, 201, "{cancel:?}");
    assert_eq!(cancel.body["status"], "Cancelled");
    assert_eq!(cancel.body["cancelReason"], "CustomerRequest");
    t.saga_settled().await;

    let payment = t.payment(&order).await.body;
    assert_eq!(payment["status"], "Cancelled");
    assert_eq!(payment["refund"], false);
    assert_eq!(t.stock(&product).await, 10);
    assert!(t.events(&format!("delivery-{order}")).await.is_empty());
    assert_eq!(t.delivery(&order).await.status, 404);
    // The seller can no longer confirm it.
    assert_eq!(t.confirm_deposit(&order).await.status, 409);
    // Cancelling again changes nothing.
    assert_eq!(t.cancel("alice", &order).await.status, 200);
    assert_eq!(
        t.event_types(&format!("order-{order}")).await,
        ["OrderPlaced", "OrderCanceled"]
    );
    t.stop().await;
}

/// Test 3.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_after_the_deposit_is_refused_with_a_reason_and_the_order_goes_on() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 2).await;
    t.payment_opened(&order).await;
    assert_eq!(t.confirm_deposit(&order).await.status, 201);

    let cancel = t.cancel("alice", &order).await;
    assert_eq!(cancel.status, 409, "{cancel:?}");
    assert_eq!(cancel.content_type, "application/problem+json");
    assert_eq!(cancel.problem_type(), "/problems/deposit-confirmed");
    assert!(cancel.body["detail"]
        .as_str()
        .unwrap()
        .contains("confirmed"));

    t.order_reaches(&order, "Shipping").await;
    assert_eq!(t.delivery(&order).await.body["status"], "Underway");
    assert_eq!(
        t.event_types(&format!("delivery-{order}")).await,
        ["DeliveryStarted"]
    );
    assert_eq!(t.stock(&product).await, 8);
    t.stop().await;
}

/// A cancel as a client sends it: a 503 with Retry-After (the payment did not answer in time
/// on a loaded machine) is sent again after the wait it names. True with the answer if it was
/// sent again: the payment may have cancelled before its answer was late, so the order is then
/// cancelled by the saga and the cancel sent again answers 200, already cancelled.
async fn cancel_retrying_when_busy(t: &TestShop, order: &str) -> (Answer, bool) {
    const ATTEMPTS_MAX: usize = 5;
    let mut answer = t.cancel("alice", order).await;
    let mut sent_again = false;
    for _ in 1..ATTEMPTS_MAX {
        let Some(wait_s) = answer
            .retry_after
            .as_deref()
            .filter(|_| answer.status == 503)
        else {
            break;
        };
        let wait_s: u64 = wait_s.parse().expect("Retry-After in seconds");
        tokio::time::sleep(std::time::Duration::from_secs(wait_s)).await;
        answer = t.cancel("alice", order).await;
        sent_again = true;
    }
    (answer, sent_again)
}

/// Test 4: many orders, each with a cancel and a confirmation sent at the same moment, all at
/// once. Exactly one of each pair wins, and the outcome is whole.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_racing_the_confirmation_has_exactly_one_winner() {
    const TRIALS: usize = 100;
    let t = Arc::new(spawn_shop().await);
    let product = t.product("Green tea", 1250, 1_000).await;
    let mut orders = Vec::new();
    for _ in 0..TRIALS {
        orders.push(t.place("alice", &product, 1).await);
    }
    for order in &orders {
        t.payment_opened(order).await;
    }
    let start = Arc::new(tokio::sync::Barrier::new(TRIALS * 2));
    let mut races = Vec::new();
    for order in &orders {
        let cancel = tokio::spawn({
            let (t, order, start) = (Arc::clone(&t), order.clone(), Arc::clone(&start));
            async move {
                start.wait().await;
                cancel_retrying_when_busy(&t, &order).await
            }
        });
        let confirm = tokio::spawn({
            let (t, order, start) = (Arc::clone(&t), order.clone(), Arc::clone(&start));
            async move {
                start.wait().await;
                // The cancel's path is longer (it asks the payment first): a random head start
                // for it makes both outcomes happen.
                let head_start_us = uuid::Uuid::new_v4().as_u128() % 300_000;
                tokio::time::sleep(std::time::Duration::from_micros(head_start_us as u64)).await;
                t.confirm_deposit(&order).await
            }
        });
        races.push((order.clone(), cancel, confirm));
    }
    let mut cancelled = Vec::new();
    let mut confirmed = Vec::new();
    for (order, cancel, confirm) in races {
        let ((cancel, sent_again), confirm) = (cancel.await.unwrap(), confirm.await.unwrap());
        match (cancel.status, confirm.status) {
            (201, 409) => cancelled.push(order),
            (200, 409) if sent_again => cancelled.push(order),
            (409, 201) => confirmed.push(order),
            other => panic!(
                "order {order}: cancel and confirm answered {other:?}: {cancel:?} {confirm:?}"
            ),
        }
    }
    assert!(
        !cancelled.is_empty() && !confirmed.is_empty(),
        "both outcomes should occur: {} cancels, {} confirmations won",
        cancelled.len(),
        confirmed.len()
    );
    t.saga_settled().await;
    for order in &cancelled {
        t.order_reaches(order, "Cancelled").await;
        assert_eq!(t.payment(order).await.body["status"], "Cancelled");
        assert!(t.events(&format!("delivery-{order}")).await.is_empty());
    }
    for order in &confirmed {
        t.order_reaches(order, "Shipping").await;
        assert_eq!(t.payment(order).await.body["status"], "DepositConfirmed");
    }
    // Stock was taken exactly for the confirmed orders.
    assert_eq!(t.stock(&product).await as usize, 1_000 - confirmed.len());
    let decreases = t
        .event_types(&format!("product-{product}"))
        .await
        .into_iter()
        .filter(|e| e == "QtyDecreased")
        .count();
    assert_eq!(decreases, confirmed.len());
    eprintln!(
        "{TRIALS} races: {} cancels won, {} confirmations won",
        cancelled.len(),
        confirmed.len()
    );
    let t = Arc::into_inner(t).expect("no task holds the shop any more");
    t.stop().await;
}

/// Another customer cannot cancel someone's order (it is answered as unknown).
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_cannot_cancel_another_customers_order() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    let cancel = t.cancel("bob", &order).await;
    assert_eq!(cancel.status, 404, "{cancel:?}");
    assert_eq!(
        t.get(Service::Order, &format!("/orders/{order}"))
            .await
            .body["status"],
        "OrderPlaced"
    );
    t.stop().await;
}
