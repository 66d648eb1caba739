//! The saga's reactions: given what it recorded, when a trigger arrives, then what it records and
//! which calls it makes.

use chrono::{DateTime, Utc};
use domain::saga::*;
use domain::{CancelReason, Decider, OrderStatus};

use crate::helpers::*;

fn facts() -> OrderFacts {
    OrderFacts {
        order_id: order_id(),
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(2),
        amount: eur(2500),
    }
}

fn requested() -> SagaEvent {
    SagaEvent::PaymentRequested(PaymentRequested {
        order_id: order_id(),
        order_status: OrderStatus::OrderPlaced,
        order: facts(),
    })
}

fn awaited(due_at: DateTime<Utc>) -> SagaEvent {
    SagaEvent::DepositAwaited(DepositAwaited {
        order_id: order_id(),
        order_status: OrderStatus::AwaitingDeposit,
        due_at,
    })
}

fn step(order_status: OrderStatus) -> Step {
    Step {
        order_id: order_id(),
        order_status,
    }
}

fn compensation(reason: CancelReason, stock_returned: bool) -> SagaEvent {
    SagaEvent::CompensationStarted(CompensationStarted {
        order_id: order_id(),
        order_status: OrderStatus::Cancelled,
        reason,
        stock_returned,
    })
}

fn cancels(reason: CancelReason) -> Vec<Action> {
    vec![
        Action::CancelPayment {
            order_id: order_id(),
            reason,
        },
        Action::CancelOrder {
            order_id: order_id(),
            reason,
        },
    ]
}

fn give_back() -> Action {
    Action::GiveStockBack {
        product_id: product_id(),
        order_id: order_id(),
    }
}

fn take() -> Action {
    Action::TakeStock {
        product_id: product_id(),
        order_id: order_id(),
        quantity: qty(2),
    }
}

#[track_caller]
fn given_when(history: &[SagaEvent], trigger: Trigger) -> Reaction {
    react(&Saga::fold(history), trigger)
}

#[track_caller]
fn expect(reaction: Reaction, events: Vec<SagaEvent>, actions: Vec<Action>) {
    assert_eq!(reaction, Reaction { events, actions });
}

fn paid() -> Vec<SagaEvent> {
    vec![
        requested(),
        awaited(at(30)),
        SagaEvent::StockRequested(step(OrderStatus::DepositConfirmed)),
    ]
}

#[test]
fn a_placed_order_gets_a_payment() {
    expect(
        given_when(&[], Trigger::OrderPlaced(facts())),
        vec![requested()],
        vec![Action::OpenPayment {
            order_id: order_id(),
            amount: eur(2500),
        }],
    );
}

#[test]
fn the_confirmed_deposit_takes_stock_then_the_taken_stock_starts_a_delivery() {
    expect(
        given_when(&[requested()], Trigger::PaymentOpened { due_at: at(30) }),
        vec![awaited(at(30))],
        vec![],
    );
    expect(
        given_when(&[requested(), awaited(at(30))], Trigger::DepositConfirmed),
        vec![SagaEvent::StockRequested(step(
            OrderStatus::DepositConfirmed,
        ))],
        vec![take()],
    );
    expect(
        given_when(&paid(), Trigger::StockTaken),
        vec![SagaEvent::DeliveryRequested(step(OrderStatus::Preparing))],
        vec![Action::StartDelivery(facts())],
    );
}

#[test]
fn the_started_delivery_ships_the_order_and_the_receipt_completes_the_delivery_and_the_saga() {
    let mut history = paid();
    history.push(SagaEvent::DeliveryRequested(step(OrderStatus::Preparing)));
    expect(
        given_when(&history, Trigger::DeliveryStarted),
        vec![SagaEvent::ShipmentRecorded(step(OrderStatus::Shipping))],
        vec![Action::MarkOrderShipped {
            order_id: order_id(),
        }],
    );
    history.push(SagaEvent::ShipmentRecorded(step(OrderStatus::Shipping)));
    expect(
        given_when(&history, Trigger::OrderClosed),
        vec![SagaEvent::SagaCompleted(step(OrderStatus::Closed))],
        vec![Action::MarkDelivered {
            order_id: order_id(),
        }],
    );
    history.push(SagaEvent::SagaCompleted(step(OrderStatus::Closed)));
    expect(given_when(&history, Trigger::OrderClosed), vec![], vec![]);
}

#[test]
fn out_of_stock_cancels_payment_and_order() {
    expect(
        given_when(&paid(), Trigger::StockShort),
        vec![compensation(CancelReason::OutOfStock, false)],
        cancels(CancelReason::OutOfStock),
    );
}

#[test]
fn a_customer_cancel_cancels_the_payment() {
    let reason = CancelReason::CustomerRequest;
    expect(
        given_when(
            &[requested(), awaited(at(30))],
            Trigger::OrderCancelled { reason },
        ),
        vec![compensation(reason, false)],
        cancels(reason),
    );
}

#[test]
fn an_overdue_deposit_expires_the_payment_then_cancels_the_order() {
    let history = [requested(), awaited(at(30))];
    expect(
        given_when(&history, Trigger::DepositDue),
        vec![],
        vec![Action::CancelPayment {
            order_id: order_id(),
            reason: CancelReason::DepositOverdue,
        }],
    );
    let reason = CancelReason::DepositOverdue;
    expect(
        given_when(&history, Trigger::PaymentCancelled { reason }),
        vec![compensation(reason, false)],
        cancels(reason),
    );
}

#[test]
fn a_refused_delivery_gives_the_stock_back_and_refunds() {
    let mut history = paid();
    history.push(SagaEvent::DeliveryRequested(step(OrderStatus::Preparing)));
    let reason = CancelReason::DeliveryFailed;
    let mut actions = vec![give_back()];
    actions.extend(cancels(reason));
    expect(
        given_when(&history, Trigger::DeliveryRefused),
        vec![compensation(reason, true)],
        actions,
    );
}

#[test]
fn stock_taken_by_a_call_that_raced_the_compensation_goes_back_once() {
    let mut history = paid();
    history.push(compensation(CancelReason::OutOfStock, false));
    let returned = SagaEvent::StockReturnRequested(step(OrderStatus::Cancelled));
    expect(
        given_when(&history, Trigger::StockTaken),
        vec![returned.clone()],
        vec![give_back()],
    );
    history.push(returned);
    expect(given_when(&history, Trigger::StockTaken), vec![], vec![]);
}

#[test]
fn replayed_triggers_change_nothing_once_the_saga_moved_on() {
    let mut history = paid();
    history.push(SagaEvent::DeliveryRequested(step(OrderStatus::Preparing)));
    for trigger in [
        Trigger::OrderPlaced(facts()),
        Trigger::PaymentOpened { due_at: at(30) },
        Trigger::DepositConfirmed,
        Trigger::StockTaken,
        Trigger::DepositDue,
    ] {
        expect(given_when(&history, trigger), vec![], vec![]);
    }
}

#[test]
fn a_finished_saga_ignores_late_cancels() {
    let mut history = paid();
    history.extend([
        SagaEvent::DeliveryRequested(step(OrderStatus::Preparing)),
        SagaEvent::ShipmentRecorded(step(OrderStatus::Shipping)),
        SagaEvent::SagaCompleted(step(OrderStatus::Closed)),
    ]);
    let reason = CancelReason::CustomerRequest;
    expect(
        given_when(&history, Trigger::OrderCancelled { reason }),
        vec![],
        vec![],
    );
}
