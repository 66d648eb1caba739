//! The saga's calls, one per action, through each service's typed client, and what their
//! answers mean to it. A call is repeated until a service answers: while a service is
//! unreachable or its breaker is open, the saga waits — it never takes silence for a refusal
//! (an unreachable inventory is not "out of stock").

use api::delivery::{DeliveryClient, StartDelivery};
use api::inventory::{InventoryClient, StockForOrder};
use api::order::{CancelOrder, OrderClient};
use api::payment::{CancelPayment, OpenPayment, PaymentClient};
use api::{Answered, Refusal};
use domain::saga::{Action, Trigger};
use servicekit::{Actor, CallError, Cause, ProblemKind};

/// Who the saga is in the calls it makes.
fn saga_actor() -> Actor {
    Actor::system("saga")
}

#[derive(Clone)]
pub struct Services {
    pub order: OrderClient,
    pub payment: PaymentClient,
    pub inventory: InventoryClient,
    pub delivery: DeliveryClient,
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
/// waits and is tried again. Never taken for a refusal. Says why, for the person on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// The service an action calls.
fn service_of(action: &Action) -> &'static str {
    match action {
        Action::OpenPayment { .. } | Action::CancelPayment { .. } => "payment",
        Action::TakeStock { .. } | Action::GiveStockBack { .. } => "inventory",
        Action::StartDelivery(_) | Action::MarkDelivered { .. } => "delivery",
        Action::MarkOrderShipped { .. } | Action::CancelOrder { .. } => "order",
    }
}

impl Services {
    /// Makes the call for `action` once (with the upstream's own bounded retries).
    pub async fn perform(&self, action: &Action, cause: Cause) -> Result<Answer, Unavailable> {
        match self.call(action, cause).await {
            Ok(None) => Ok(Answer::Done),
            Ok(Some(refusal)) => meaning(action, &refusal),
            Err(e) => {
                tracing::warn!(error = %e, ?action, "service unavailable; the step waits");
                Err(Unavailable(format!(
                    "{} did not answer: {e}",
                    service_of(action)
                )))
            }
        }
    }

    /// The call for `action`: `None` when it was done (or already so), else the refusal.
    async fn call(&self, action: &Action, cause: Cause) -> Result<Option<Refusal>, CallError> {
        let actor = &saga_actor();
        Ok(match action {
            Action::OpenPayment { order_id, amount } => {
                let request = OpenPayment {
                    amount: amount.as_cents(),
                };
                refusal(self.payment.open(*order_id, &request, actor, cause).await?)
            }
            Action::TakeStock {
                product_id,
                order_id,
                quantity,
            } => {
                let request = StockForOrder {
                    order_id: order_id.to_string(),
                    quantity: Some(i64::from(quantity.units())),
                };
                let answered = self.inventory.decrease(*product_id, &request, actor, cause);
                refusal(answered.await?)
            }
            Action::GiveStockBack {
                product_id,
                order_id,
            } => {
                let request = StockForOrder {
                    order_id: order_id.to_string(),
                    quantity: None,
                };
                let answered = self.inventory.increase(*product_id, &request, actor, cause);
                refusal(answered.await?)
            }
            Action::StartDelivery(order) => {
                let request = StartDelivery {
                    order_id: order.order_id.to_string(),
                    customer_id: order.customer_id.as_str().to_string(),
                    product_id: order.product_id.to_string(),
                    quantity: i64::from(order.quantity.units()),
                };
                refusal(self.delivery.start(&request, actor, cause).await?)
            }
            Action::MarkOrderShipped { order_id } => {
                refusal(self.order.mark_shipped(*order_id, actor, cause).await?)
            }
            Action::MarkDelivered { order_id } => refusal(
                self.delivery
                    .mark_delivered(*order_id, actor, cause)
                    .await?,
            ),
            Action::CancelPayment { order_id, reason } => {
                let request = CancelPayment {
                    reason: (*reason).into(),
                };
                refusal(
                    self.payment
                        .cancel(*order_id, &request, actor, cause)
                        .await?,
                )
            }
            Action::CancelOrder { order_id, reason } => {
                let request = CancelOrder {
                    reason: Some((*reason).into()),
                };
                refusal(self.order.cancel(*order_id, &request, actor, cause).await?)
            }
        })
    }
}

fn refusal<T>(answered: Answered<T>) -> Option<Refusal> {
    match answered {
        Answered::Done { .. } => None,
        Answered::Refused(refusal) => Some(refusal),
    }
}

/// What a refusal means to the saga. Only answers that really decide something are taken as
/// such: "out of stock", a refused delivery, a confirmed deposit; conflicts that only say
/// "already done" need nothing more. Anything else (a rate limit, a wrong route after a bad
/// deployment, an answer that does not fit the contract) is not a business answer: the step
/// waits rather than compensate wrongly.
fn meaning(action: &Action, refusal: &Refusal) -> Result<Answer, Unavailable> {
    use ProblemKind as K;
    let answer = match (action, refusal.kind) {
        (Action::TakeStock { .. }, Some(K::OutOfStock | K::NotFound)) => {
            Some(Answer::News(Trigger::StockShort))
        }
        (Action::StartDelivery(_), Some(K::OtherOrder | K::InvalidFields)) => {
            Some(Answer::News(Trigger::DeliveryRefused))
        }
        (Action::CancelPayment { .. }, Some(K::DepositConfirmed)) => Some(Answer::PaymentKept),
        // Already given back, already cancelled, not due yet (the timer fires again), …
        (_, Some(kind)) if kind.status() == 409 => Some(Answer::Done),
        _ => None,
    };
    match answer {
        Some(answer) => {
            if answer == Answer::Done {
                tracing::debug!(?action, ?refusal, "refused; nothing more to do");
            }
            Ok(answer)
        }
        None => {
            tracing::error!(?action, ?refusal, "unexpected answer; the step waits");
            Err(Unavailable(format!(
                "{} answered {} ({}), which decides nothing",
                service_of(action),
                refusal.status,
                refusal.detail
            )))
        }
    }
}
