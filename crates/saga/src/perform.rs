//! The saga's calls, one per action, and what their answers mean to it. A call is repeated
//! until a service answers: while a service is unreachable or its breaker is open, the saga
//! waits — it never takes silence for a refusal (an unreachable inventory is not "out of stock").

use std::time::Duration;

use domain::saga::{Action, Trigger};
use servicekit::{Reply, Upstream};
use uuid::Uuid;

/// Who the saga is in the calls it makes.
const SAGA_ACTOR: &str = "system:saga";

#[derive(Clone)]
pub struct Services {
    pub order: Upstream,
    pub payment: Upstream,
    pub inventory: Upstream,
    pub delivery: Upstream,
    pub retry_pause: Duration,
}

impl Services {
    /// Makes the call for `action` until a service answers; the answer may be news for the saga
    /// (stock short, delivery refused).
    pub async fn perform(&self, action: &Action, cause: Uuid) -> Option<Trigger> {
        let (upstream, path, body) = self.call_for(action);
        let reply = loop {
            match upstream.post(&path, &body, SAGA_ACTOR, cause).await {
                Ok(reply) => break reply,
                Err(e) => {
                    tracing::warn!(error = %e, ?action, "waiting for the service to come back");
                    tokio::time::sleep(self.retry_pause).await;
                }
            }
        };
        meaning(action, &reply)
    }

    fn call_for(&self, action: &Action) -> (&Upstream, String, serde_json::Value) {
        use serde_json::json;
        match action {
            Action::OpenPayment { order_id, amount } => (
                &self.payment,
                format!("/payments/{order_id}"),
                json!({ "amount": amount.as_cents() }),
            ),
            Action::TakeStock {
                product_id,
                order_id,
                quantity,
            } => (
                &self.inventory,
                format!("/products/{product_id}/decrease"),
                json!({ "orderId": order_id, "quantity": quantity.units() }),
            ),
            Action::GiveStockBack {
                product_id,
                order_id,
            } => (
                &self.inventory,
                format!("/products/{product_id}/increase"),
                json!({ "orderId": order_id }),
            ),
            Action::StartDelivery(order) => (
                &self.delivery,
                "/deliveries".to_string(),
                json!({
                    "orderId": order.order_id,
                    "customerId": order.customer_id,
                    "productId": order.product_id,
                    "quantity": order.quantity.units(),
                }),
            ),
            Action::MarkOrderShipped { order_id } => (
                &self.order,
                format!("/orders/{order_id}/shipment"),
                json!({}),
            ),
            Action::CancelPayment { order_id, reason } => (
                &self.payment,
                format!("/payments/{order_id}/cancel"),
                json!({ "reason": reason }),
            ),
            Action::CancelOrder { order_id, reason } => (
                &self.order,
                format!("/orders/{order_id}/cancel"),
                json!({ "reason": reason }),
            ),
        }
    }
}

/// What an answer means to the saga. Refusals that only say "already done" or "someone else
/// won" (a confirmed deposit against an overdue cancel) need nothing more.
fn meaning(action: &Action, reply: &Reply) -> Option<Trigger> {
    if reply.is_success() {
        return None;
    }
    match action {
        Action::TakeStock { .. } => match reply.problem() {
            Some("already-given-back") => None,
            // Short, or the product is gone: either way the stock cannot cover the order.
            _ => Some(Trigger::StockShort),
        },
        Action::StartDelivery(_) => Some(Trigger::DeliveryRefused),
        _ => {
            tracing::info!(?action, status = reply.status, problem = ?reply.problem(), "call refused; nothing more to do");
            None
        }
    }
}
