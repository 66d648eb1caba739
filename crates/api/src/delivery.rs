//! The delivery service's contract.

use domain::OrderId;
use serde::{Deserialize, Serialize};
use servicekit::{Actor, CallError, Cause, Upstream};
use utoipa::ToSchema;

use crate::{post, Answered, Empty, Written};

/// `POST /deliveries`: the saga starts an order's delivery once its stock was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartDelivery {
    #[schema(format = Uuid)]
    pub order_id: String,
    pub customer_id: String,
    #[schema(format = Uuid)]
    pub product_id: String,
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DeliveryStatus {
    NotStarted,
    Underway,
    Delivered,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub status: DeliveryStatus,
    /// The delivery stream's revision.
    pub revision: Option<u64>,
}

/// A call to the delivery service.
#[derive(Clone)]
pub struct DeliveryClient(pub Upstream);

impl DeliveryClient {
    pub async fn start(
        &self,
        request: &StartDelivery,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<DeliveryView>>, CallError> {
        post(&self.0, "/deliveries", request, actor, cause).await
    }

    pub async fn mark_delivered(
        &self,
        order_id: OrderId,
        actor: &Actor,
        cause: Cause,
    ) -> Result<Answered<Written<DeliveryView>>, CallError> {
        let path = format!("/deliveries/{order_id}/delivered");
        post(&self.0, &path, &Empty {}, actor, cause).await
    }
}
