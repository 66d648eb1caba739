//! The saga process manager: follows the store from a durably stored checkpoint and
//! carries each order through payment, stock and delivery, compensating when a step fails.
//!
//! It owns the `saga-{orderId}` streams (what it decided for each order), `saga-leases` (which
//! instance works which partition of the orders: several instances share the work, one order
//! at a time by one of them) and `saga-checkpoint-{partition}` (how far each partition has
//! been read, and its deposit timers running). What to do is `domain::saga::react`; this crate does the I/O: it turns
//! observed events into triggers, makes the calls over HTTP (timeout, retries with backoff and
//! jitter, a circuit breaker per service — an unreachable service is waited for, never taken for
//! a "no"), records the saga's events at the expected revision, and keeps deposit timers.
//!
//! It must not: write another service's streams, or decide business rules itself.

mod checkpoint;
mod leases;
mod observe;
mod perform;
mod runner;

use std::time::Duration;

pub use servicekit::StartError;
use servicekit::{Running, UpstreamSettings};

pub use checkpoint::{
    BookkeepingEvent, CheckpointStored, CHECKPOINTS_KEPT, CHECKPOINT_STREAM, DEPOSIT_TIMERS_MAX,
};
pub use leases::{
    checkpoint_stream, partition_of, LeaseEvent, FENCE_MS, LEASE_MS, LEASE_STREAM, PARTITIONS,
    RENEW_MS,
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    pub store_url: String,
    pub order: UpstreamSettings,
    pub payment: UpstreamSettings,
    pub inventory: UpstreamSettings,
    pub delivery: UpstreamSettings,
    /// Pause between rounds of calls to a service that is down (its breaker open), and between
    /// tries to reach the store.
    pub retry_pause: Duration,
    /// How often the checkpoint is stored (when it moved).
    pub checkpoint_interval: Duration,
    /// Verifies callers' signed identities (the secret the gateway and services share).
    pub identity: servicekit::IdentityKey,
}

impl Settings {
    /// Services at their default local ports.
    pub fn local(
        listen: impl Into<servicekit::Listen>,
        store_url: String,
        identity: servicekit::IdentityKey,
    ) -> Settings {
        Settings {
            listen: listen.into(),
            store_url,
            identity,
            order: UpstreamSettings::new("http://127.0.0.1:8081"),
            payment: UpstreamSettings::new("http://127.0.0.1:8082"),
            inventory: UpstreamSettings::new("http://127.0.0.1:8083"),
            delivery: UpstreamSettings::new("http://127.0.0.1:8084"),
            retry_pause: Duration::from_millis(500),
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// Starts the saga and its status endpoint.
pub async fn build(settings: Settings) -> Result<Running, StartError> {
    runner::start(settings).await
}
