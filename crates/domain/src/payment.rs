//! The payment of an order by bank transfer. Stream `payment-{orderId}`.
//!
//! The payment is the single authority on "deposit confirmed": a customer's cancel and the
//! seller's confirmation are both decided here, against the same stream revision, so exactly
//! one of them wins.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::{CancelReason, OrderStatus};
use crate::values::{Money, OrderId};
use crate::{event_contract, Decider};

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Opened by the saga when an order is placed.
    Open {
        order_id: OrderId,
        amount: Money,
        /// What the customer writes on the transfer so the seller can match it.
        deposit_reference: String,
        /// The account to pay into.
        account: String,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The seller saw the money arrive.
    ConfirmDeposit { at: DateTime<Utc> },
    /// The customer changed their mind: allowed only while the deposit is not confirmed. Allowed
    /// before the payment was opened too: it then can never be opened (nor confirmed).
    CancelByCustomer {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// The order cannot go on (out of stock, delivery impossible): cancelled, with a refund if
    /// money was received.
    CancelForOrder {
        order_id: OrderId,
        reason: CancelReason,
        at: DateTime<Utc>,
    },
    /// The due date passed without a deposit.
    Expire { now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayPlaced {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub amount: Money,
    pub deposit_reference: String,
    pub account: String,
    pub due_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayChecked {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub amount: Money,
    /// Since version 2: the reference the money came with.
    pub deposit_reference: String,
    pub at: DateTime<Utc>,
}

/// The reference a customer writes on the transfer for `order_id`, so the seller can match it:
/// short, derived from the order's id, so a retried opening gives the same reference.
pub fn deposit_reference(order_id: OrderId) -> String {
    let hex = order_id.as_uuid().simple().to_string().to_uppercase();
    format!("MM-{}", &hex[..12])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayCanceled {
    pub order_id: OrderId,
    pub order_status: OrderStatus,
    pub reason: CancelReason,
    /// Money was received and is paid back.
    pub refund: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEvent {
    PayPlaced(PayPlaced),
    PayChecked(PayChecked),
    PayCanceled(PayCanceled),
}

event_contract!(PaymentEvent {
    PayPlaced = crate::contract::PAY_PLACED,
    PayChecked = crate::contract::PAY_CHECKED,
    PayCanceled = crate::contract::PAY_CANCELED,
});

#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub order_id: OrderId,
    pub amount: Money,
    pub deposit_reference: String,
    pub account: String,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum PaymentState {
    #[default]
    NotOpened,
    AwaitingDeposit(Opened),
    DepositConfirmed(Opened),
    /// `opened` is `None` when the payment was cancelled before it was opened.
    Cancelled {
        opened: Option<Opened>,
        reason: CancelReason,
        refund: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("there is no payment for this order")]
    NotOpened,
    #[error("the payment was already opened with other details")]
    AlreadyOpenedDifferently,
    #[error("the deposit was already confirmed: the order can no longer be cancelled")]
    DepositAlreadyConfirmed,
    #[error("the payment is cancelled")]
    Cancelled,
    #[error("the deposit is not due yet")]
    NotDueYet,
}

pub struct Payment;

impl Decider for Payment {
    type State = PaymentState;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn starts_stream(command: &PaymentCommand) -> bool {
        matches!(command, PaymentCommand::Open { .. })
    }

    fn decide(
        state: &PaymentState,
        command: PaymentCommand,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        use PaymentState as S;
        let cancel = |order_id, reason, refund, at| {
            Ok(vec![PaymentEvent::PayCanceled(PayCanceled {
                order_id,
                order_status: OrderStatus::Cancelled,
                reason,
                refund,
                at,
            })])
        };
        match (command, state) {
            (
                PaymentCommand::Open {
                    order_id,
                    amount,
                    deposit_reference,
                    account,
                    due_at,
                    at,
                },
                S::NotOpened,
            ) => Ok(vec![PaymentEvent::PayPlaced(PayPlaced {
                order_id,
                order_status: OrderStatus::AwaitingDeposit,
                amount,
                deposit_reference,
                account,
                due_at,
                at,
            })]),
            (
                PaymentCommand::Open {
                    order_id, amount, ..
                },
                state,
            ) => match state {
                S::Cancelled { .. } => Err(PaymentError::Cancelled),
                _ => match state.opened() {
                    Some(o) if o.order_id == order_id && o.amount == amount => Ok(vec![]),
                    _ => Err(PaymentError::AlreadyOpenedDifferently),
                },
            },
            // Cancelling before the payment is opened closes it for good: a confirmation can
            // then never win against the cancel, whichever the saga does first.
            (PaymentCommand::CancelByCustomer { order_id, at }, S::NotOpened) => {
                cancel(order_id, CancelReason::CustomerRequest, false, at)
            }
            (
                PaymentCommand::CancelForOrder {
                    order_id,
                    reason,
                    at,
                },
                S::NotOpened,
            ) => cancel(order_id, reason, false, at),
            (_, S::NotOpened) => Err(PaymentError::NotOpened),

            (PaymentCommand::ConfirmDeposit { at }, S::AwaitingDeposit(o)) => {
                Ok(vec![PaymentEvent::PayChecked(PayChecked {
                    order_id: o.order_id,
                    order_status: OrderStatus::DepositConfirmed,
                    amount: o.amount,
                    deposit_reference: o.deposit_reference.clone(),
                    at,
                })])
            }
            (PaymentCommand::ConfirmDeposit { .. }, S::DepositConfirmed(_)) => Ok(vec![]),
            (PaymentCommand::ConfirmDeposit { .. }, S::Cancelled { .. }) => {
                Err(PaymentError::Cancelled)
            }

            (PaymentCommand::CancelByCustomer { at, .. }, S::AwaitingDeposit(o)) => {
                cancel(o.order_id, CancelReason::CustomerRequest, false, at)
            }
            (PaymentCommand::CancelByCustomer { .. }, S::DepositConfirmed(_)) => {
                Err(PaymentError::DepositAlreadyConfirmed)
            }
            // Repeating the customer's cancel is harmless; but a payment cancelled for another
            // reason (out of stock, overdue) was not the customer's doing: refused, so the order
            // keeps the real reason.
            (PaymentCommand::CancelByCustomer { .. }, S::Cancelled { reason, .. }) => {
                if *reason == CancelReason::CustomerRequest {
                    Ok(vec![])
                } else {
                    Err(PaymentError::Cancelled)
                }
            }

            (PaymentCommand::CancelForOrder { reason, at, .. }, S::AwaitingDeposit(o)) => {
                cancel(o.order_id, reason, false, at)
            }
            (PaymentCommand::CancelForOrder { reason, at, .. }, S::DepositConfirmed(o)) => {
                cancel(o.order_id, reason, true, at)
            }
            (PaymentCommand::CancelForOrder { .. }, S::Cancelled { .. }) => Ok(vec![]),

            (PaymentCommand::Expire { now }, S::AwaitingDeposit(o)) => {
                if now < o.due_at {
                    return Err(PaymentError::NotDueYet);
                }
                cancel(o.order_id, CancelReason::DepositOverdue, false, now)
            }
            (PaymentCommand::Expire { .. }, S::DepositConfirmed(_)) => {
                Err(PaymentError::DepositAlreadyConfirmed)
            }
            (PaymentCommand::Expire { .. }, S::Cancelled { .. }) => Ok(vec![]),
        }
    }

    fn evolve(state: PaymentState, event: &PaymentEvent) -> PaymentState {
        match (state, event) {
            (PaymentState::NotOpened, PaymentEvent::PayPlaced(e)) => {
                PaymentState::AwaitingDeposit(Opened {
                    order_id: e.order_id,
                    amount: e.amount,
                    deposit_reference: e.deposit_reference.clone(),
                    account: e.account.clone(),
                    due_at: e.due_at,
                })
            }
            (PaymentState::AwaitingDeposit(o), PaymentEvent::PayChecked(_)) => {
                PaymentState::DepositConfirmed(o)
            }
            (
                PaymentState::AwaitingDeposit(opened) | PaymentState::DepositConfirmed(opened),
                PaymentEvent::PayCanceled(e),
            ) => PaymentState::Cancelled {
                opened: Some(opened),
                reason: e.reason,
                refund: e.refund,
            },
            (PaymentState::NotOpened, PaymentEvent::PayCanceled(e)) => PaymentState::Cancelled {
                opened: None,
                reason: e.reason,
                refund: e.refund,
            },
            (state, _) => state,
        }
    }
}

impl PaymentState {
    pub fn opened(&self) -> Option<&Opened> {
        match self {
            PaymentState::NotOpened => None,
            PaymentState::AwaitingDeposit(o) | PaymentState::DepositConfirmed(o) => Some(o),
            PaymentState::Cancelled { opened, .. } => opened.as_ref(),
        }
    }
}
