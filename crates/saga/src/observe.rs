//! Which observed events matter to the saga, as triggers for the order they belong to.

use domain::delivery::DeliveryEvent;
use domain::order::OrderEvent;
use domain::payment::PaymentEvent;
use domain::product::ProductEvent;
use domain::saga::{OrderFacts, Trigger};
use domain::OrderId;
use eventlog::Seen;

/// The stream families the saga follows.
pub const FOLLOWED_PREFIXES: [&str; 4] = ["order-", "payment-", "product-", "delivery-"];

/// The order an event concerns and what it means to the saga; `None` if nothing.
pub fn observe(seen: &Seen) -> Option<(OrderId, Trigger)> {
    let family = seen.stream.split('-').next()?;
    match family {
        "order" => match seen.decode::<OrderEvent>()? {
            OrderEvent::OrderPlaced(e) => Some((
                e.order_id,
                Trigger::OrderPlaced(OrderFacts {
                    order_id: e.order_id,
                    customer_id: e.customer_id,
                    product_id: e.product_id,
                    quantity: e.quantity,
                    amount: e.amount,
                }),
            )),
            OrderEvent::OrderCanceled(e) => {
                Some((e.order_id, Trigger::OrderCancelled { reason: e.reason }))
            }
            OrderEvent::OrderClosed(e) => Some((e.order_id, Trigger::OrderClosed)),
            OrderEvent::OrderShipped(_) => None,
        },
        "payment" => match seen.decode::<PaymentEvent>()? {
            PaymentEvent::PayPlaced(e) => {
                Some((e.order_id, Trigger::PaymentOpened { due_at: e.due_at }))
            }
            PaymentEvent::PayChecked(e) => Some((e.order_id, Trigger::DepositConfirmed)),
            PaymentEvent::PayCanceled(e) => {
                Some((e.order_id, Trigger::PaymentCancelled { reason: e.reason }))
            }
        },
        "product" => match seen.decode::<ProductEvent>()? {
            ProductEvent::QtyDecreased(e) => Some((e.order_id, Trigger::StockTaken)),
            _ => None,
        },
        "delivery" => match seen.decode::<DeliveryEvent>()? {
            DeliveryEvent::DeliveryStarted(e) => Some((e.order_id, Trigger::DeliveryStarted)),
            DeliveryEvent::DeliveryCompleted(_) => None,
        },
        _ => None,
    }
}
