//! The order process manager (saga), pure: it carries one order from placement through the
//! deposit, the stock and the delivery to the receipt, and undoes earlier steps when a later one
//! fails. Its memory is its own stream, `saga-{orderId}`.
//!
//! `react(state, trigger)` says what the saga records and which calls it makes next; the runner
//! makes the calls (each idempotent at the service that answers it), then records the events at
//! the stream's expected revision. Because it records only after acting, a crash in between makes
//! the runner act again on replay — harmless, as every call is idempotent — and once recorded, a
//! replayed trigger finds the state moved on and does nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::{CancelReason, OrderStatus};
use crate::values::{CustomerId, Money, OrderId, ProductId, Quantity};
use crate::{event_contract, Decider};

/// What the saga knows of an order from its placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFacts {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub amount: Money,
}

/// What the saga reacts to: an order's events as it observes them, the outcomes of its own
/// calls, and its deposit timer.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    OrderPlaced(OrderFacts),
    PaymentOpened {
        due_at: DateTime<Utc>,
    },
    DepositConfirmed,
    PaymentCancelled {
        reason: CancelReason,
    },
    StockTaken,
    DeliveryStarted,
    OrderCancelled {
        reason: CancelReason,
    },
    OrderClosed,
    /// Inventory answered that the stock cannot cover the order.
    StockShort,
    /// Delivery refused to start (not unreachable: refused).
    DeliveryRefused,
    /// The deposit's due date passed (the timer fired).
    DepositDue,
}

impl Trigger {
    /// The trigger's name, without its data (for logs and metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::OrderPlaced(_) => "OrderPlaced",
            Trigger::PaymentOpened { .. } => "PaymentOpened",
            Trigger::DepositConfirmed => "DepositConfirmed",
            Trigger::PaymentCancelled { .. } => "PaymentCancelled",
            Trigger::StockTaken => "StockTaken",
            Trigger::DeliveryStarted => "DeliveryStarted",
            Trigger::OrderCancelled { .. } => "OrderCancelled",
            Trigger::OrderClosed => "OrderClosed",
            Trigger::StockShort => "StockShort",
            Trigger::DeliveryRefused => "DeliveryRefused",
            Trigger::DepositDue => "DepositDue",
        }
    }
}

/// A call the saga makes. Each is idempotent at the service that answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    OpenPayment {
        order_id: OrderId,
        amount: Money,
    },
    TakeStock {
        product_id: ProductId,
        order_id: OrderId,
        quantity: Quantity,
    },
    GiveStockBack {
        product_id: ProductId,
        order_id: OrderId,
    },
    StartDelivery(OrderFacts),
    MarkOrderShipped {
        order_id: OrderId,
    },
    /// The customer confirmed receipt: the delivery is complete.
    MarkDelivered {
        order_id: OrderId,
    },
    /// `DepositOverdue` asks the payment to expire (it checks the due date itself).
    CancelPayment {
        order_id: OrderId,
        reason: CancelReason,
    },
    CancelOrder {
        order_id: OrderId,
        reason: CancelReason,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequested {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub order: OrderFacts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositAwaited {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub due_at: DateTime<Utc>,
}

/// The step of the process an event of the saga marks, with no more to say than that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
}

/// Someone on call asked for the order's step, parked while a service it needs was
/// unavailable, to be tried again now (who: the event's actor). Changes nothing in the saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerRetried {
    pub order_id: OrderId,
    /// The trigger that was parked, by name.
    pub trigger: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompensationStarted {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub reason: CancelReason,
    /// Stock may have been taken for the order, so it is given back.
    pub stock_returned: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SagaEvent {
    PaymentRequested(PaymentRequested),
    DepositAwaited(DepositAwaited),
    StockRequested(Step),
    DeliveryRequested(Step),
    ShipmentRecorded(Step),
    SagaCompleted(Step),
    CompensationStarted(CompensationStarted),
    StockReturnRequested(Step),
    TriggerRetried(TriggerRetried),
}

event_contract!(SagaEvent {
    PaymentRequested = crate::contract::PAYMENT_REQUESTED,
    DepositAwaited = crate::contract::DEPOSIT_AWAITED,
    StockRequested = crate::contract::STOCK_REQUESTED,
    DeliveryRequested = crate::contract::DELIVERY_REQUESTED,
    ShipmentRecorded = crate::contract::SHIPMENT_RECORDED,
    SagaCompleted = crate::contract::SAGA_COMPLETED,
    CompensationStarted = crate::contract::COMPENSATION_STARTED,
    StockReturnRequested = crate::contract::STOCK_RETURN_REQUESTED,
    TriggerRetried = crate::contract::TRIGGER_RETRIED,
});

#[derive(Debug, Clone, PartialEq, Default)]
pub enum SagaState {
    #[default]
    NotStarted,
    AwaitingPayment(OrderFacts),
    AwaitingDeposit {
        order: OrderFacts,
        due_at: DateTime<Utc>,
    },
    TakingStock(OrderFacts),
    Delivering(OrderFacts),
    Shipping(OrderFacts),
    Completed(OrderFacts),
    Compensating {
        order: OrderFacts,
        reason: CancelReason,
        stock_returned: bool,
    },
}

impl SagaState {
    /// When the deposit is due, while the saga waits for it.
    pub fn deposit_due_at(&self) -> Option<DateTime<Utc>> {
        match self {
            SagaState::AwaitingDeposit { due_at, .. } => Some(*due_at),
            _ => None,
        }
    }
}

/// What the saga records and the calls it makes, for one trigger.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reaction {
    pub events: Vec<SagaEvent>,
    pub actions: Vec<Action>,
}

/// The saga never refuses a trigger: one that does not fit the state is ignored (a replay, or
/// news the process no longer needs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SagaError {}

pub struct Saga;

/// The saga's reaction to a trigger in a state.
pub fn react(state: &SagaState, trigger: Trigger) -> Reaction {
    use SagaState as S;
    use Trigger as T;
    match (state, trigger) {
        (S::NotStarted, T::OrderPlaced(order)) => Reaction {
            actions: vec![Action::OpenPayment {
                order_id: order.order_id,
                amount: order.amount,
            }],
            events: vec![SagaEvent::PaymentRequested(PaymentRequested {
                order_id: order.order_id,
                order_status: OrderStatus::OrderPlaced,
                order,
            })],
        },
        (S::AwaitingPayment(order), T::PaymentOpened { due_at }) => Reaction {
            events: vec![SagaEvent::DepositAwaited(DepositAwaited {
                order_id: order.order_id,
                order_status: OrderStatus::AwaitingDeposit,
                due_at,
            })],
            actions: vec![],
        },
        (S::AwaitingPayment(order) | S::AwaitingDeposit { order, .. }, T::DepositConfirmed) => {
            Reaction {
                events: vec![SagaEvent::StockRequested(step(
                    order,
                    OrderStatus::DepositConfirmed,
                ))],
                actions: vec![Action::TakeStock {
                    product_id: order.product_id,
                    order_id: order.order_id,
                    quantity: order.quantity,
                }],
            }
        }
        (S::AwaitingDeposit { order, .. }, T::DepositDue) => Reaction {
            events: vec![],
            actions: vec![Action::CancelPayment {
                order_id: order.order_id,
                reason: CancelReason::DepositOverdue,
            }],
        },
        (S::TakingStock(order), T::StockTaken) => Reaction {
            events: vec![SagaEvent::DeliveryRequested(step(
                order,
                OrderStatus::Preparing,
            ))],
            actions: vec![Action::StartDelivery(order.clone())],
        },
        (S::TakingStock(order), T::StockShort) => {
            compensate(order, CancelReason::OutOfStock, false)
        }
        (S::Delivering(order), T::DeliveryStarted) => Reaction {
            events: vec![SagaEvent::ShipmentRecorded(step(
                order,
                OrderStatus::Shipping,
            ))],
            actions: vec![Action::MarkOrderShipped {
                order_id: order.order_id,
            }],
        },
        (S::Delivering(order), T::DeliveryRefused) => {
            compensate(order, CancelReason::DeliveryFailed, true)
        }
        (S::Shipping(order), T::OrderClosed) => Reaction {
            events: vec![SagaEvent::SagaCompleted(step(order, OrderStatus::Closed))],
            actions: vec![Action::MarkDelivered {
                order_id: order.order_id,
            }],
        },
        // A cancel from either side before the deposit: the other side follows.
        (
            S::AwaitingPayment(order) | S::AwaitingDeposit { order, .. },
            T::OrderCancelled { reason } | T::PaymentCancelled { reason },
        ) => compensate(order, reason, false),
        // Not expected once the deposit is confirmed (the payment refuses such cancels); if it
        // happens all the same, a stock call may be under way, so stock goes back too.
        (
            S::TakingStock(order) | S::Delivering(order),
            T::OrderCancelled { reason } | T::PaymentCancelled { reason },
        ) => compensate(order, reason, true),
        // Stock taken by a call that raced the compensation goes back as well.
        (
            S::Compensating {
                order,
                stock_returned: false,
                ..
            },
            T::StockTaken,
        ) => Reaction {
            events: vec![SagaEvent::StockReturnRequested(step(
                order,
                OrderStatus::Cancelled,
            ))],
            actions: vec![Action::GiveStockBack {
                product_id: order.product_id,
                order_id: order.order_id,
            }],
        },
        _ => Reaction::default(),
    }
}

fn step(order: &OrderFacts, order_status: OrderStatus) -> Step {
    Step {
        order_id: order.order_id,
        order_status,
    }
}

/// Cancels the payment (with a refund when money was received — the payment knows) and the
/// order, and gives the stock back when some may have been taken.
fn compensate(order: &OrderFacts, reason: CancelReason, stock_returned: bool) -> Reaction {
    let give_back = stock_returned.then_some(Action::GiveStockBack {
        product_id: order.product_id,
        order_id: order.order_id,
    });
    let actions = give_back
        .into_iter()
        .chain([
            Action::CancelPayment {
                order_id: order.order_id,
                reason,
            },
            Action::CancelOrder {
                order_id: order.order_id,
                reason,
            },
        ])
        .collect();
    Reaction {
        events: vec![SagaEvent::CompensationStarted(CompensationStarted {
            order_id: order.order_id,
            order_status: OrderStatus::Cancelled,
            reason,
            stock_returned,
        })],
        actions,
    }
}

impl Decider for Saga {
    type State = SagaState;
    type Command = Trigger;
    type Event = SagaEvent;
    type Error = SagaError;

    fn decide(state: &SagaState, trigger: Trigger) -> Result<Vec<SagaEvent>, SagaError> {
        Ok(react(state, trigger).events)
    }

    fn evolve(state: SagaState, event: &SagaEvent) -> SagaState {
        use SagaState as S;
        match (state, event) {
            (S::NotStarted, SagaEvent::PaymentRequested(e)) => S::AwaitingPayment(e.order.clone()),
            (S::AwaitingPayment(order), SagaEvent::DepositAwaited(e)) => S::AwaitingDeposit {
                order,
                due_at: e.due_at,
            },
            (
                S::AwaitingPayment(order) | S::AwaitingDeposit { order, .. },
                SagaEvent::StockRequested(_),
            ) => S::TakingStock(order),
            (S::TakingStock(order), SagaEvent::DeliveryRequested(_)) => S::Delivering(order),
            (S::Delivering(order), SagaEvent::ShipmentRecorded(_)) => S::Shipping(order),
            (S::Shipping(order), SagaEvent::SagaCompleted(_)) => S::Completed(order),
            (state, SagaEvent::CompensationStarted(e)) => match state.order() {
                Some(order) => S::Compensating {
                    order: order.clone(),
                    reason: e.reason,
                    stock_returned: e.stock_returned,
                },
                None => state,
            },
            (S::Compensating { order, reason, .. }, SagaEvent::StockReturnRequested(_)) => {
                S::Compensating {
                    order,
                    reason,
                    stock_returned: true,
                }
            }
            (state, _) => state,
        }
    }
}

impl SagaState {
    pub fn order(&self) -> Option<&OrderFacts> {
        match self {
            SagaState::NotStarted => None,
            SagaState::AwaitingPayment(order)
            | SagaState::AwaitingDeposit { order, .. }
            | SagaState::TakingStock(order)
            | SagaState::Delivering(order)
            | SagaState::Shipping(order)
            | SagaState::Completed(order)
            | SagaState::Compensating { order, .. } => Some(order),
        }
    }
}
