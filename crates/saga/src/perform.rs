//! The saga's calls, one per action, and what their answers mean to it. A call is repeated
//! until a service answers: while a service is unreachable or its breaker is open, the saga
//! waits — it never takes silence for a refusal (an unreachable inventory is not "out of stock").

use domain::saga::{Action, Trigger};
use servicekit::{Cause, Reply, Upstream};

/// Who the saga is in the calls it makes.
const SAGA_ACTOR: &str = "system:saga";

#[derive(Clone)]
pub struct Services {
    pub order: Upstream,
    pub payment: Upstream,
    pub inventory: Upstream,
    pub delivery: Upstream,
}

/// What a call's answer means to the saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Done, or already so, or overtaken by a decision that needs nothing more from the saga.
    Done,
    /// An answer that is news for the saga (stock short, delivery refused).
    News(Trigger),
    /// The payment refused to cancel because the deposit was confirmed: the order must go on.
    PaymentKept,
}

/// The service could not be reached, or did not give an answer the saga can act on: the step
/// waits and is tried again. Never taken for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Services {
    /// Makes the call for `action` once (with the upstream's own bounded retries).
    pub async fn perform(&self, action: &Action, cause: Cause) -> Result<Answer, Unavailable> {
        let (upstream, path, body) = self.call_for(action);
        match upstream.post(&path, &body, SAGA_ACTOR, cause).await {
            Ok(reply) => meaning(action, &reply),
            Err(e) => {
                tracing::warn!(error = %e, ?action, "service unavailable; the step waits");
                Err(Unavailable)
            }
        }
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
            Action::MarkDelivered { order_id } => (
                &self.delivery,
                format!("/deliveries/{order_id}/delivered"),
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

/// What an answer means to the saga. Only answers that really decide something are taken as
/// such: "out of stock", a refused delivery, a confirmed deposit; conflicts that only say
/// "already done" need nothing more. Anything else (a rate limit, a wrong route after a bad
/// deployment) is not a business answer: the step waits rather than compensate wrongly.
fn meaning(action: &Action, reply: &Reply) -> Result<Answer, Unavailable> {
    if reply.is_success() {
        return Ok(Answer::Done);
    }
    let problem = reply.problem();
    let answer = match (action, reply.status, problem) {
        (Action::TakeStock { .. }, _, Some("out-of-stock" | "not-found")) => {
            Some(Answer::News(Trigger::StockShort))
        }
        (Action::StartDelivery(_), 409 | 422, _) => Some(Answer::News(Trigger::DeliveryRefused)),
        (Action::CancelPayment { .. }, _, Some("deposit-confirmed")) => Some(Answer::PaymentKept),
        // Already given back, already cancelled, not due yet (the timer fires again), …
        (_, 409, _) => Some(Answer::Done),
        _ => None,
    };
    match answer {
        Some(answer) => {
            if answer == Answer::Done {
                tracing::debug!(
                    ?action,
                    status = reply.status,
                    ?problem,
                    "refused; nothing more to do"
                );
            }
            Ok(answer)
        }
        None => {
            tracing::error!(?action, status = reply.status, ?problem, body = %reply.body, "unexpected answer; the step waits");
            Err(Unavailable)
        }
    }
}
