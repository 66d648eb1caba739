//! The order-status read model's answers: an order's row as the customer and the seller see
//! it, its timeline, and the lists. The read model keeps its rows in this shape too.

use chrono::{DateTime, Utc};
use domain::{CancelReason, OrderId, OrderStatus, ProductId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The deposit the customer is asked to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deposit {
    pub reference: String,
    pub account: String,
    pub amount: i64,
    pub due_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled: bool,
    pub refund: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryInfo {
    pub started_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One order as the customer and the seller see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderRow {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub customer_id: String,
    #[schema(value_type = crate::schema::OrderStatusName)]
    pub status: OrderStatus,
    #[schema(value_type = Option<crate::schema::CancelReasonName>)]
    pub cancel_reason: Option<CancelReason>,
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    pub quantity: u32,
    pub unit_price: i64,
    pub amount: i64,
    pub deposit: Option<Deposit>,
    pub delivery: Option<DeliveryInfo>,
    /// Stock taken for the order and given back (a compensation).
    pub stock_returned: bool,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The order stream's revision this row has seen (what commands on the order return).
    pub order_revision: u64,
}

/// One line of an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Moment {
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// customer, seller or system.
    pub actor_kind: String,
    pub actor_id: String,
    pub event_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// The status the order entered with this event, if it changed.
    #[schema(value_type = Option<crate::schema::OrderStatusName>)]
    pub status: Option<OrderStatus>,
    pub position: u64,
}

/// An order with what the customer's screen shows around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDetail {
    #[serde(flatten)]
    pub row: OrderRow,
    pub product_name: Option<String>,
    pub timeline: Vec<Moment>,
}

/// An order in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    #[serde(flatten)]
    pub row: OrderRow,
    pub product_name: Option<String>,
}

/// Where one read-model replica stands (`GET /status`), for the person on call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadModelStatus {
    /// It has reached the end of the log since it started (it answers queries).
    pub caught_up: bool,
    /// Its last write to its database succeeded.
    pub writing: bool,
    /// The log position of the last event it applied (`null`: none yet).
    pub applied: Option<crate::saga::Position>,
    /// Seconds its follower has been catching up without handing out an event (0 when it is
    /// live).
    pub follower_lag_s: f64,
    /// Events of the streams it follows stored after the last one its follower handed out,
    /// counted every 5 s among the log's last 10,000 (`null` until first counted): what "caught
    /// up" hides once it fell behind again.
    pub events_behind: Option<u64>,
}
