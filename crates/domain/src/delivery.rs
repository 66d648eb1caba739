//! The delivery of an order's parcel. Stream `delivery-{orderId}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::OrderStatus;
use crate::values::{CustomerId, OrderId, ProductId, Quantity};
use crate::{event_contract, Decider};

#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryCommand {
    /// Started by the saga once the stock was taken.
    Start {
        order_id: OrderId,
        customer_id: CustomerId,
        product_id: ProductId,
        quantity: Quantity,
        at: DateTime<Utc>,
    },
    /// The parcel reached its customer: recorded by the saga once the customer confirmed
    /// receipt (the order is closed by then).
    MarkDelivered { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStarted {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub customer_id: CustomerId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCompleted {
    pub order_id: OrderId,
    /// `Closed`: a delivery is completed when its customer confirmed receipt.
    pub order_status: OrderStatus,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryEvent {
    DeliveryStarted(DeliveryStarted),
    DeliveryCompleted(DeliveryCompleted),
}

event_contract!(DeliveryEvent {
    DeliveryStarted = crate::contract::DELIVERY_STARTED,
    DeliveryCompleted = crate::contract::DELIVERY_COMPLETED,
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryState {
    #[default]
    NotStarted,
    Underway {
        order_id: OrderId,
    },
    Delivered {
        order_id: OrderId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("no delivery was started for this order")]
    NotStarted,
    #[error("a delivery for another order is on this stream")]
    OtherOrder,
}

pub struct Delivery;

impl Decider for Delivery {
    type State = DeliveryState;
    type Command = DeliveryCommand;
    type Event = DeliveryEvent;
    type Error = DeliveryError;

    fn starts_stream(command: &DeliveryCommand) -> bool {
        matches!(command, DeliveryCommand::Start { .. })
    }

    fn decide(
        state: &DeliveryState,
        command: DeliveryCommand,
    ) -> Result<Vec<DeliveryEvent>, DeliveryError> {
        match (command, *state) {
            (
                DeliveryCommand::Start {
                    order_id,
                    customer_id,
                    product_id,
                    quantity,
                    at,
                },
                DeliveryState::NotStarted,
            ) => Ok(vec![DeliveryEvent::DeliveryStarted(DeliveryStarted {
                order_id,
                // The customer sees Shipping once the order recorded the shipment, the moment
                // it accepts a receipt.
                order_status: OrderStatus::Preparing,
                customer_id,
                product_id,
                quantity,
                at,
            })]),
            (
                DeliveryCommand::Start { order_id, .. },
                DeliveryState::Underway { order_id: started }
                | DeliveryState::Delivered { order_id: started },
            ) => {
                if order_id == started {
                    Ok(vec![])
                } else {
                    Err(DeliveryError::OtherOrder)
                }
            }
            (DeliveryCommand::MarkDelivered { .. }, DeliveryState::NotStarted) => {
                Err(DeliveryError::NotStarted)
            }
            (DeliveryCommand::MarkDelivered { at }, DeliveryState::Underway { order_id }) => {
                Ok(vec![DeliveryEvent::DeliveryCompleted(DeliveryCompleted {
                    order_id,
                    order_status: OrderStatus::Closed,
                    at,
                })])
            }
            (DeliveryCommand::MarkDelivered { .. }, DeliveryState::Delivered { .. }) => Ok(vec![]),
        }
    }

    fn evolve(state: DeliveryState, event: &DeliveryEvent) -> DeliveryState {
        match (state, event) {
            (DeliveryState::NotStarted, DeliveryEvent::DeliveryStarted(e)) => {
                DeliveryState::Underway {
                    order_id: e.order_id,
                }
            }
            (DeliveryState::Underway { order_id }, DeliveryEvent::DeliveryCompleted(_)) => {
                DeliveryState::Delivered { order_id }
            }
            (state, _) => state,
        }
    }
}
