//! Whether the store answers: a probe asks it for the log's last position every
//! `STORE_PROBE_MS`, so a service can say it is not ready while the store is away, and that it
//! is wedged when the store has been away too long.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::EventLog;

/// How often the store is probed, and how long one probe may take, in milliseconds.
pub const STORE_PROBE_MS: u64 = 1_000;
const STORE_PROBE_WAIT_MS: u64 = 1_000;

/// What the probe last found. Unreachable until the first probe answers.
#[derive(Clone)]
pub struct StoreReach {
    unreachable_since: Arc<Mutex<Option<Instant>>>,
}

impl StoreReach {
    pub fn is_reachable(&self) -> bool {
        self.unreachable_for().is_none()
    }

    /// How long the store has not answered; `None` while it answers.
    pub fn unreachable_for(&self) -> Option<Duration> {
        self.unreachable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|since| since.elapsed())
    }

    fn found(&self, reachable: bool) {
        let mut since = self
            .unreachable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (reachable, *since) {
            (true, Some(_)) => {
                tracing::info!("the event store answers again");
                *since = None;
            }
            (false, None) => {
                tracing::warn!("the event store does not answer");
                *since = Some(Instant::now());
            }
            _ => {}
        }
    }
}

impl EventLog {
    /// A probe of the store, and what it finds: run the future (for ever) to keep it current.
    pub fn probe(
        &self,
    ) -> (
        StoreReach,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let reach = StoreReach {
            unreachable_since: Arc::new(Mutex::new(Some(Instant::now()))),
        };
        let log = self.clone();
        let found = reach.clone();
        let probing = async move {
            let mut tick = tokio::time::interval(Duration::from_millis(STORE_PROBE_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let asked = tokio::time::timeout(
                    Duration::from_millis(STORE_PROBE_WAIT_MS),
                    log.last_position(),
                )
                .await;
                found.found(matches!(asked, Ok(Ok(_))));
            }
        };
        (reach, probing)
    }
}
