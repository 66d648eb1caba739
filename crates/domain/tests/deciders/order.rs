use domain::order::*;
use domain::{CancelReason, OrderStatus};

use crate::helpers::*;

fn place() -> OrderCommand {
    OrderCommand::Place {
        order_id: order_id(),
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(2),
        unit_price: eur(1250),
        at: at(0),
    }
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced(OrderPlaced {
        order_id: order_id(),
        order_status: OrderStatus::OrderPlaced,
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(2),
        unit_price: eur(1250),
        amount: eur(2500),
        at: at(0),
    })
}

fn shipped() -> OrderEvent {
    OrderEvent::OrderShipped(OrderShipped {
        order_id: order_id(),
        order_status: OrderStatus::Shipping,
        at: at(5),
    })
}

fn cancelled(reason: CancelReason) -> OrderEvent {
    OrderEvent::OrderCanceled(OrderCanceled {
        order_id: order_id(),
        order_status: OrderStatus::Cancelled,
        reason,
        at: at(3),
    })
}

#[test]
fn placing_an_order_captures_price_and_amount() {
    given::<Order>(&[]).when(place()).then(vec![placed()]);
}

#[test]
fn placing_the_same_order_again_changes_nothing() {
    given::<Order>(&[placed()]).when(place()).then_nothing();
}

#[test]
fn placing_another_order_under_the_same_id_is_refused() {
    let other = OrderCommand::Place {
        order_id: order_id(),
        customer_id: bob(),
        product_id: product_id(),
        quantity: qty(1),
        unit_price: eur(1250),
        at: at(0),
    };
    given::<Order>(&[placed()])
        .when(other)
        .then_err(OrderError::AlreadyPlacedDifferently);
}

#[test]
fn an_order_whose_total_is_over_the_limit_is_refused() {
    let huge = OrderCommand::Place {
        order_id: order_id(),
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(100),
        unit_price: eur(domain::values::AMOUNT_CENTS_MAX),
        at: at(0),
    };
    given::<Order>(&[])
        .when(huge)
        .then_err(OrderError::AmountTooLarge);
}

#[test]
fn commands_on_an_order_that_does_not_exist_are_refused() {
    given::<Order>(&[])
        .when(OrderCommand::MarkShipped { at: at(1) })
        .then_err(OrderError::NotPlaced);
    given::<Order>(&[])
        .when(OrderCommand::Cancel {
            reason: CancelReason::CustomerRequest,
            at: at(1),
        })
        .then_err(OrderError::NotPlaced);
    given::<Order>(&[])
        .when(OrderCommand::ConfirmReceipt {
            customer_id: alice(),
            at: at(1),
        })
        .then_err(OrderError::NotPlaced);
}

#[test]
fn a_placed_order_is_cancelled_once() {
    let cancel = || OrderCommand::Cancel {
        reason: CancelReason::OutOfStock,
        at: at(3),
    };
    given::<Order>(&[placed()])
        .when(cancel())
        .then(vec![cancelled(CancelReason::OutOfStock)]);
    given::<Order>(&[placed(), cancelled(CancelReason::OutOfStock)])
        .when(cancel())
        .then_nothing();
}

#[test]
fn a_shipped_order_cannot_be_cancelled() {
    given::<Order>(&[placed(), shipped()])
        .when(OrderCommand::Cancel {
            reason: CancelReason::CustomerRequest,
            at: at(6),
        })
        .then_err(OrderError::AlreadyShipped);
}

#[test]
fn receipt_before_shipping_is_refused() {
    given::<Order>(&[placed()])
        .when(OrderCommand::ConfirmReceipt {
            customer_id: alice(),
            at: at(4),
        })
        .then_err(OrderError::NotShippedYet);
}

#[test]
fn receipt_after_shipping_closes_the_order_once() {
    let receipt = || OrderCommand::ConfirmReceipt {
        customer_id: alice(),
        at: at(9),
    };
    let closed = OrderEvent::OrderClosed(OrderClosed {
        order_id: order_id(),
        order_status: OrderStatus::Closed,
        at: at(9),
    });
    given::<Order>(&[placed(), shipped()])
        .when(receipt())
        .then(vec![closed.clone()]);
    given::<Order>(&[placed(), shipped(), closed])
        .when(receipt())
        .then_nothing();
}

#[test]
fn only_the_orders_customer_confirms_receipt() {
    given::<Order>(&[placed(), shipped()])
        .when(OrderCommand::ConfirmReceipt {
            customer_id: bob(),
            at: at(9),
        })
        .then_err(OrderError::NotYourOrder);
}

#[test]
fn a_cancelled_order_is_neither_shipped_nor_received() {
    let history = [placed(), cancelled(CancelReason::CustomerRequest)];
    given::<Order>(&history)
        .when(OrderCommand::MarkShipped { at: at(5) })
        .then_err(OrderError::Cancelled);
    given::<Order>(&history)
        .when(OrderCommand::ConfirmReceipt {
            customer_id: alice(),
            at: at(5),
        })
        .then_err(OrderError::Cancelled);
}

#[test]
fn shipping_is_reported_once() {
    given::<Order>(&[placed()])
        .when(OrderCommand::MarkShipped { at: at(5) })
        .then(vec![shipped()]);
    given::<Order>(&[placed(), shipped()])
        .when(OrderCommand::MarkShipped { at: at(6) })
        .then_nothing();
}
