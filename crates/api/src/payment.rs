//! The payment service's contract.

use chrono::{DateTime, Utc};
use domain::OrderId;
use serde::{Deserialize, Serialize};
use servicekit::{Actor, CallError, Cause, Upstream};
use utoipa::ToSchema;

use crate::schema::CancelReasonName;
use crate::{post, Answered, Written};

/// `POST /payments/{orderId}`: the saga opens the order's payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenPayment {
    /// Cents, 0 to 100,000,000.
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub amount: i64,
}

/// `POST /payments/{orderId}/cancel`: `DepositOverdue` asks the payment to expire (it checks
/// the due date itself); a refund follows when money was received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelPayment {
    pub reason: CancelReasonName,
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PaymentStatus {
    NotOpened,
    AwaitingDeposit,
    DepositConfirmed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub status: PaymentStatus,
    /// Cents.
    pub amount: Option<i64>,
    pub deposit_reference: Option<String>,
    pub account: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    /// Money received is paid back.
    pub refund: bool,
    /// The payment stream's revision.
    pub revision: Option<u64>,
}

/// A call to the payment service.
#[derive(Clone)]
pub struct PaymentClient(pub Upstream);

impl PaymentClient {
    pub async fn open(
        &self,
        order_id: OrderId,
        request: &OpenPayment,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<PaymentView>>, CallError> {
        post(
            &self.0,
            &format!("/payments/{order_id}"),
            request,
            actor,
            cause,
        )
        .await
    }

    pub async fn cancel(
        &self,
        order_id: OrderId,
        request: &CancelPayment,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<PaymentView>>, CallError> {
        let path = format!("/payments/{order_id}/cancel");
        post(&self.0, &path, request, actor, cause).await
    }
}
