//! The read model's rule, pure: how each event changes an order's row (the statuses of `domain::status`)
//! and what it adds to the order's timeline. No I/O: the runner loads rows, calls `evolve`, and
//! writes them back with the checkpoint in one transaction.

use domain::delivery::DeliveryEvent;
use domain::order::OrderEvent;
use domain::payment::PaymentEvent;
use domain::product::ProductEvent;
use domain::{OrderId, OrderStatus};
use eventlog::Seen;

/// An event the read model cares about, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Order(OrderEvent),
    Payment(PaymentEvent),
    Product(ProductEvent),
    Delivery(DeliveryEvent),
}

impl Fact {
    /// The fact an event of the shop's streams states; `None` for anything else.
    pub fn of(seen: &Seen) -> Option<Fact> {
        match seen.stream.split('-').next()? {
            "order" => seen.decode().map(Fact::Order),
            "payment" => seen.decode().map(Fact::Payment),
            "product" => seen.decode().map(Fact::Product),
            "delivery" => seen.decode().map(Fact::Delivery),
            _ => None,
        }
    }

    /// The order it concerns (product events without an order concern none).
    pub fn order_id(&self) -> Option<OrderId> {
        Some(match self {
            Fact::Order(OrderEvent::OrderPlaced(e)) => e.order_id,
            Fact::Order(OrderEvent::OrderShipped(e)) => e.order_id,
            Fact::Order(OrderEvent::OrderCanceled(e)) => e.order_id,
            Fact::Order(OrderEvent::OrderClosed(e)) => e.order_id,
            Fact::Payment(PaymentEvent::PayPlaced(e)) => e.order_id,
            Fact::Payment(PaymentEvent::PayChecked(e)) => e.order_id,
            Fact::Payment(PaymentEvent::PayCanceled(e)) => e.order_id,
            Fact::Product(ProductEvent::QtyDecreased(e)) => e.order_id,
            Fact::Product(ProductEvent::QtyIncreased(e)) => e.order_id,
            Fact::Product(_) => return None,
            Fact::Delivery(DeliveryEvent::DeliveryStarted(e)) => e.order_id,
            Fact::Delivery(DeliveryEvent::DeliveryCompleted(e)) => e.order_id,
        })
    }
}

pub use api::order_status::{DeliveryInfo, Deposit, Moment, OrderRow};

/// The row after `fact`; `None` while the order is unknown (a fact about an order whose
/// placement has not been seen cannot be shown).
pub fn evolve(row: Option<OrderRow>, fact: &Fact, revision: u64) -> Option<OrderRow> {
    let mut row = match (row, fact) {
        (None, Fact::Order(OrderEvent::OrderPlaced(e))) => {
            return Some(OrderRow {
                order_id: e.order_id,
                customer_id: e.customer_id.as_str().to_string(),
                status: OrderStatus::OrderPlaced,
                cancel_reason: None,
                product_id: e.product_id,
                quantity: e.quantity.units(),
                unit_price: e.unit_price.as_cents(),
                amount: e.amount.as_cents(),
                deposit: None,
                delivery: None,
                stock_returned: false,
                placed_at: e.at,
                updated_at: e.at,
                order_revision: revision,
            })
        }
        (None, _) => return None,
        (Some(row), _) => row,
    };
    match fact {
        Fact::Order(e) => {
            row.order_revision = revision;
            match e {
                OrderEvent::OrderPlaced(_) => {}
                // What the customer sees is what the order accepts: Shipping, the status in
                // which a receipt may be confirmed, starts when the order records it.
                OrderEvent::OrderShipped(e) => {
                    row.status = advance(row.status, OrderStatus::Shipping);
                    row.updated_at = e.at;
                }
                OrderEvent::OrderCanceled(e) => {
                    row.status = OrderStatus::Cancelled;
                    row.cancel_reason = Some(e.reason);
                    row.updated_at = e.at;
                }
                OrderEvent::OrderClosed(e) => {
                    row.status = OrderStatus::Closed;
                    row.updated_at = e.at;
                }
            }
        }
        Fact::Payment(PaymentEvent::PayPlaced(e)) => {
            row.deposit = Some(Deposit {
                reference: e.deposit_reference.clone(),
                account: e.account.clone(),
                amount: e.amount.as_cents(),
                due_at: e.due_at,
                confirmed_at: None,
                cancelled: false,
                refund: false,
            });
            row.status = advance(row.status, OrderStatus::AwaitingDeposit);
            row.updated_at = e.at;
        }
        Fact::Payment(PaymentEvent::PayChecked(e)) => {
            if let Some(deposit) = &mut row.deposit {
                deposit.confirmed_at = Some(e.at);
            }
            row.status = advance(row.status, OrderStatus::DepositConfirmed);
            row.updated_at = e.at;
        }
        Fact::Payment(PaymentEvent::PayCanceled(e)) => {
            if let Some(deposit) = &mut row.deposit {
                deposit.cancelled = true;
                deposit.refund = e.refund;
            }
            row.updated_at = e.at;
        }
        Fact::Product(ProductEvent::QtyDecreased(e)) => {
            row.status = advance(row.status, OrderStatus::Preparing);
            row.updated_at = e.at;
        }
        Fact::Product(ProductEvent::QtyIncreased(e)) => {
            row.stock_returned = true;
            row.updated_at = e.at;
        }
        Fact::Product(_) => {}
        Fact::Delivery(DeliveryEvent::DeliveryStarted(e)) => {
            row.delivery = Some(DeliveryInfo {
                started_at: e.at,
                delivered_at: None,
            });
            row.updated_at = e.at;
        }
        Fact::Delivery(DeliveryEvent::DeliveryCompleted(e)) => {
            if let Some(delivery) = &mut row.delivery {
                delivery.delivered_at = Some(e.at);
            }
            row.updated_at = e.at;
        }
    }
    Some(row)
}

/// The status moves forward only: a cancelled or closed order stays so whatever arrives late.
fn advance(current: OrderStatus, next: OrderStatus) -> OrderStatus {
    match current {
        OrderStatus::Cancelled | OrderStatus::Closed => current,
        _ if rank(next) > rank(current) => next,
        _ => current,
    }
}

fn rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::OrderPlaced => 0,
        OrderStatus::AwaitingDeposit => 1,
        OrderStatus::DepositConfirmed => 2,
        OrderStatus::Preparing => 3,
        OrderStatus::Shipping => 4,
        OrderStatus::Closed => 5,
        OrderStatus::Cancelled => 6,
    }
}

/// The timeline line for `fact` on `row` (after it), from the event's envelope.
pub fn moment(before: Option<OrderStatus>, after: &OrderRow, seen: &Seen) -> Moment {
    let metadata = seen.metadata.as_ref();
    let (actor_kind, actor_id) =
        metadata.map_or(("system".to_string(), "unknown".to_string()), |m| {
            let kind = serde_json::to_value(m.actor.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            (kind, m.actor.id.clone())
        });
    Moment {
        event_type: seen.event_type.clone(),
        at: metadata.map_or(after.updated_at, |m| m.at),
        actor_kind,
        actor_id,
        event_id: seen.id,
        causation_id: metadata.map(|m| m.causation_id),
        status: (before != Some(after.status)).then_some(after.status),
        position: seen.position.commit,
    }
}
