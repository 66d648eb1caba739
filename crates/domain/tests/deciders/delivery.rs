use domain::delivery::*;
use domain::{OrderId, OrderStatus};

use crate::helpers::*;

fn start() -> DeliveryCommand {
    DeliveryCommand::Start {
        order_id: order_id(),
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(2),
        at: at(6),
    }
}

fn started() -> DeliveryEvent {
    DeliveryEvent::DeliveryStarted(DeliveryStarted {
        order_id: order_id(),
        order_status: OrderStatus::Preparing,
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(2),
        at: at(6),
    })
}

#[test]
fn a_delivery_starts_once_per_order() {
    given::<Delivery>(&[]).when(start()).then(vec![started()]);
    given::<Delivery>(&[started()]).when(start()).then_nothing();
}

#[test]
fn a_delivery_stream_holds_one_order() {
    let other = DeliveryCommand::Start {
        order_id: OrderId::new(),
        customer_id: alice(),
        product_id: product_id(),
        quantity: qty(1),
        at: at(7),
    };
    given::<Delivery>(&[started()])
        .when(other)
        .then_err(DeliveryError::OtherOrder);
}

#[test]
fn a_delivery_is_completed_once_it_started() {
    let completed = DeliveryEvent::DeliveryCompleted(DeliveryCompleted {
        order_id: order_id(),
        order_status: OrderStatus::Closed,
        at: at(8),
    });
    given::<Delivery>(&[])
        .when(DeliveryCommand::MarkDelivered { at: at(8) })
        .then_err(DeliveryError::NotStarted);
    given::<Delivery>(&[started()])
        .when(DeliveryCommand::MarkDelivered { at: at(8) })
        .then(vec![completed.clone()]);
    given::<Delivery>(&[started(), completed])
        .when(DeliveryCommand::MarkDelivered { at: at(9) })
        .then_nothing();
}
