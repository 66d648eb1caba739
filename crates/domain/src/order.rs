//! The order: placed by a customer, shipped, then closed by the customer's receipt — or
//! cancelled. Stream `order-{orderId}`.
//!
//! Whether an order may still be cancelled by its customer is the payment's decision (it alone
//! knows whether the deposit was confirmed); the order is cancelled once that was decided.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::{CancelReason, OrderStatus};
use crate::values::{CustomerId, Money, OrderId, ProductId, Quantity};
use crate::{event_contract, Decider};

#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    Place {
        order_id: OrderId,
        customer_id: CustomerId,
        product_id: ProductId,
        quantity: Quantity,
        /// The product's price when the order is placed, from the order service's catalogue.
        unit_price: Money,
        at: DateTime<Utc>,
    },
    /// The parcel left (the saga reports the delivery's start).
    MarkShipped { at: DateTime<Utc> },
    Cancel {
        reason: CancelReason,
        at: DateTime<Utc>,
    },
    ConfirmReceipt {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub customer_id: CustomerId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub amount: Money,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCanceled {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub reason: CancelReason,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderClosed {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    OrderPlaced(OrderPlaced),
    OrderShipped(OrderShipped),
    OrderCanceled(OrderCanceled),
    OrderClosed(OrderClosed),
}

event_contract!(OrderEvent {
    OrderPlaced = crate::contract::ORDER_PLACED,
    OrderShipped = crate::contract::ORDER_SHIPPED,
    OrderCanceled = crate::contract::ORDER_CANCELED,
    OrderClosed = crate::contract::ORDER_CLOSED,
});

/// What the order needs to remember of its placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum OrderState {
    #[default]
    NotPlaced,
    Placed(Placed),
    Shipped(Placed),
    Cancelled(Placed, CancelReason),
    Closed(Placed),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order does not exist")]
    NotPlaced,
    #[error("the order was already placed with other details")]
    AlreadyPlacedDifferently,
    #[error("the order total is over the limit")]
    AmountTooLarge,
    #[error("the order is cancelled")]
    Cancelled,
    #[error("the order is closed")]
    Closed,
    #[error("the parcel has left: the order can no longer be cancelled")]
    AlreadyShipped,
    #[error("receipt can only be confirmed once the parcel has been shipped")]
    NotShippedYet,
    #[error("this is another customer's order")]
    NotYourOrder,
}

pub struct Order;

impl Decider for Order {
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn starts_stream(command: &OrderCommand) -> bool {
        matches!(command, OrderCommand::Place { .. })
    }

    fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderState as S;
        match (command, state) {
            (
                OrderCommand::Place {
                    order_id,
                    customer_id,
                    product_id,
                    quantity,
                    unit_price,
                    at,
                },
                S::NotPlaced,
            ) => {
                let amount = unit_price
                    .times(quantity)
                    .map_err(|_| OrderError::AmountTooLarge)?;
                Ok(vec![OrderEvent::OrderPlaced(OrderPlaced {
                    order_id,
                    order_status: OrderStatus::OrderPlaced,
                    customer_id,
                    product_id,
                    quantity,
                    unit_price,
                    amount,
                    at,
                })])
            }
            // A retried placement is accepted once more without a second event.
            (
                OrderCommand::Place {
                    order_id,
                    customer_id,
                    product_id,
                    quantity,
                    ..
                },
                placed,
            ) => {
                let same = placed.placed().is_some_and(|p| {
                    p.order_id == order_id
                        && p.customer_id == customer_id
                        && p.product_id == product_id
                        && p.quantity == quantity
                });
                if same {
                    Ok(vec![])
                } else {
                    Err(OrderError::AlreadyPlacedDifferently)
                }
            }
            (_, S::NotPlaced) => Err(OrderError::NotPlaced),

            (OrderCommand::MarkShipped { at }, S::Placed(p)) => {
                Ok(vec![OrderEvent::OrderShipped(OrderShipped {
                    order_id: p.order_id,
                    order_status: OrderStatus::Shipping,
                    at,
                })])
            }
            (OrderCommand::MarkShipped { .. }, S::Shipped(_) | S::Closed(_)) => Ok(vec![]),
            (OrderCommand::MarkShipped { .. }, S::Cancelled(..)) => Err(OrderError::Cancelled),

            (OrderCommand::Cancel { reason, at }, S::Placed(p)) => {
                Ok(vec![OrderEvent::OrderCanceled(OrderCanceled {
                    order_id: p.order_id,
                    order_status: OrderStatus::Cancelled,
                    reason,
                    at,
                })])
            }
            (OrderCommand::Cancel { .. }, S::Cancelled(..)) => Ok(vec![]),
            (OrderCommand::Cancel { .. }, S::Shipped(_)) => Err(OrderError::AlreadyShipped),
            (OrderCommand::Cancel { .. }, S::Closed(_)) => Err(OrderError::Closed),

            (OrderCommand::ConfirmReceipt { customer_id, at }, state) => {
                let placed = state.placed().ok_or(OrderError::NotPlaced)?;
                if placed.customer_id != customer_id {
                    return Err(OrderError::NotYourOrder);
                }
                match state {
                    S::Shipped(p) => Ok(vec![OrderEvent::OrderClosed(OrderClosed {
                        order_id: p.order_id,
                        order_status: OrderStatus::Closed,
                        at,
                    })]),
                    S::Closed(_) => Ok(vec![]),
                    S::Cancelled(..) => Err(OrderError::Cancelled),
                    _ => Err(OrderError::NotShippedYet),
                }
            }
        }
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        match (state, event) {
            (OrderState::NotPlaced, OrderEvent::OrderPlaced(e)) => OrderState::Placed(Placed {
                order_id: e.order_id,
                customer_id: e.customer_id.clone(),
                product_id: e.product_id,
                quantity: e.quantity,
                unit_price: e.unit_price,
                amount: e.amount,
            }),
            (OrderState::Placed(p), OrderEvent::OrderShipped(_)) => OrderState::Shipped(p),
            (OrderState::Placed(p), OrderEvent::OrderCanceled(e)) => {
                OrderState::Cancelled(p, e.reason)
            }
            (OrderState::Shipped(p), OrderEvent::OrderClosed(_)) => OrderState::Closed(p),
            // An event that does not fit the state changes nothing (it cannot be decided so).
            (state, _) => state,
        }
    }
}

impl OrderState {
    pub fn placed(&self) -> Option<&Placed> {
        match self {
            OrderState::NotPlaced => None,
            OrderState::Placed(p)
            | OrderState::Shipped(p)
            | OrderState::Closed(p)
            | OrderState::Cancelled(p, _) => Some(p),
        }
    }
}
