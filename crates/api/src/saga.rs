//! The saga's answers: where one instance stands (`GET /saga/status`), its parked triggers, and
//! the operator's view the gateway assembles from every instance and the read model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A position in the store's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

/// A trigger held back because a service its step needs (or the store) is unavailable; tried
/// again every retry pause, or at once on an operator's retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParkedTrigger {
    #[schema(format = Uuid)]
    pub order_id: String,
    /// The trigger, by name (e.g. `DepositConfirmed`).
    pub trigger: String,
    /// Why it waits, e.g. which service did not answer.
    pub reason: String,
    pub since: DateTime<Utc>,
    /// Tries so far.
    pub attempts: u32,
    /// Later triggers of the same order waiting behind it.
    pub behind: usize,
}

/// Where one saga instance stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaStatus {
    /// This instance in the lease table (new at every start).
    #[schema(format = Uuid)]
    pub instance: String,
    /// The partitions of the orders it works now.
    pub partitions: Vec<usize>,
    pub caught_up: bool,
    /// Whether this run has taken the partitions the lease table gives it and read their
    /// bookkeeping…
    pub checkpoint_read: bool,
    /// …and the oldest checkpoint they were taken at (`null`: from the start of the log).
    pub started_after: Option<Position>,
    /// The oldest checkpoint of the partitions it works.
    pub checkpoint: Option<Position>,
    /// Entries the checkpoint trackers hold (unfinished events and runs of finished ones).
    pub pending_events: usize,
    /// Events being handled (handed to a worker, not finished).
    pub unfinished_events: usize,
    pub deposit_timers: usize,
    /// Services whose circuit breaker is open: the saga waits for them.
    pub breakers_open: Vec<String>,
    /// Seconds since its follower last handed out an event while it had some to catch up on
    /// (0 when caught up).
    pub follower_lag_s: f64,
    /// Events of the streams it follows stored after the last one its follower handed out,
    /// counted every 5 s among the log's last 10,000 (`null` until first counted): what "caught
    /// up" hides once it fell behind again.
    pub events_behind: Option<u64>,
    /// Triggers parked, oldest first (at most `PARKED_SHOWN_MAX`).
    pub parked: Vec<ParkedTrigger>,
    /// All triggers parked, shown or not.
    pub parked_count: usize,
}

/// Parked triggers one status lists at most.
pub const PARKED_SHOWN_MAX: usize = 100;

/// One saga instance as the operator sees it: its status, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaInstanceView {
    pub url: String,
    pub status: Option<SagaStatus>,
    pub unreachable: Option<String>,
}

/// An order on a step the shop works itself (not waiting for a person) for longer than it
/// should take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StuckOrder {
    #[schema(format = Uuid)]
    pub order_id: String,
    #[schema(value_type = crate::schema::OrderStatusName)]
    pub status: domain::status::OrderStatus,
    pub since: DateTime<Utc>,
    pub for_s: i64,
}

/// One read-model replica as the operator sees it: its status, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadModelView {
    pub url: String,
    pub status: Option<crate::order_status::ReadModelStatus>,
    pub unreachable: Option<String>,
}

/// What the person on call needs on one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    pub sagas: Vec<SagaInstanceView>,
    pub read_models: Vec<ReadModelView>,
    /// Orders on a step the shop works itself for more than `stuckAfterS`, oldest first.
    pub stuck: Vec<StuckOrder>,
    pub stuck_after_s: i64,
    /// The gateway's upstreams whose breaker is open.
    pub gateway_breakers_open: Vec<String>,
    pub at: DateTime<Utc>,
}

/// What an operator's retry of a parked trigger did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retried {
    #[schema(format = Uuid)]
    pub order_id: String,
    /// The trigger that was tried again.
    pub trigger: String,
    /// Still parked after the try (the service is still unavailable), or `null`: it went on.
    pub still_parked: Option<ParkedTrigger>,
}
