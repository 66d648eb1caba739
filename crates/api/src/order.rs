//! The order service's contract.

use domain::{OrderId, ProductId};
use serde::{Deserialize, Serialize};
use servicekit::{Actor, CallError, Cause, Upstream};
use utoipa::ToSchema;

use crate::schema::{CancelReasonName, OrderStatusName};
use crate::{post, Answered, Empty, Written};

/// `POST /orders`: a customer places an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    /// Chosen by the client to make a retried placement safe; new if absent.
    #[schema(format = Uuid)]
    pub order_id: Option<String>,
    #[schema(format = Uuid)]
    pub product_id: String,
    /// Units, 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
}

/// `POST /orders/{id}/cancel`: only the saga gives a reason; a customer's cancel is always
/// `CustomerRequest` (and its body may be left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelOrder {
    pub reason: Option<CancelReasonName>,
}

/// An order as the order service keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    /// OrderPlaced, Shipping, Closed or Cancelled: the order's own lifecycle. The customer's
    /// full status (deposit, stock) is the read model's.
    pub status: OrderStatusName,
    pub customer_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    pub quantity: u32,
    /// Cents.
    pub unit_price: i64,
    /// Cents.
    pub amount: i64,
    pub cancel_reason: Option<CancelReasonName>,
    /// The order stream's revision.
    pub revision: Option<u64>,
}

/// A call to the order service.
#[derive(Clone)]
pub struct OrderClient(pub Upstream);

impl OrderClient {
    pub async fn mark_shipped(
        &self,
        order_id: OrderId,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<OrderView>>, CallError> {
        let path = format!("/orders/{order_id}/shipment");
        post(&self.0, &path, &Empty {}, actor, cause).await
    }

    pub async fn cancel(
        &self,
        order_id: OrderId,
        request: &CancelOrder,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<OrderView>>, CallError> {
        let path = format!("/orders/{order_id}/cancel");
        post(&self.0, &path, request, actor, cause).await
    }
}
