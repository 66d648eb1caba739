//! The circuit breaker every caller of another service uses (the services' calls and the
//! gateway's upstreams): failsafe's consecutive-failures policy with a jittered, growing pause.

use std::future::Future;
use std::time::Duration;

use failsafe::backoff::EqualJittered;
use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::futures::CircuitBreaker as _;
use failsafe::StateMachine;

/// A call refused by an open breaker, or the call's own failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tripped<E> {
    Open,
    Failed(E),
}

#[derive(Clone)]
pub struct Breaker {
    state: StateMachine<ConsecutiveFailures<EqualJittered>, ()>,
    /// Its name in the `minimall_breaker_open` gauge (1 open, 0 closed): the service called.
    name: std::sync::Arc<str>,
}

impl Breaker {
    /// Opens after `failures_max` failures in a row, for `open_s` seconds, doubling (jittered)
    /// up to `open_s_max` while failures go on. failsafe panics on pauses under a second and
    /// jitters in whole seconds within [s/2, s], so below 2 s it would open for 0 s: the pause
    /// is clamped to at least 2 s rather than trusted from configuration.
    pub fn new(name: &str, failures_max: u32, open_s: u64, open_s_max: u64) -> Breaker {
        let open_s = open_s.max(2);
        let policy = failsafe::failure_policy::consecutive_failures(
            failures_max.max(1),
            failsafe::backoff::equal_jittered(
                Duration::from_secs(open_s),
                Duration::from_secs(open_s_max.max(open_s)),
            ),
        );
        Breaker {
            state: failsafe::Config::new().failure_policy(policy).build(),
            name: name.into(),
        }
    }

    /// Whether a call would go through now.
    pub fn is_call_permitted(&self) -> bool {
        self.state.is_call_permitted()
    }

    /// Runs `call` unless the breaker is open; an `Err` counts as a failure.
    pub async fn call<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Tripped<E>> {
        let outcome = match self.state.call(call).await {
            Ok(value) => Ok(value),
            Err(failsafe::Error::Rejected) => Err(Tripped::Open),
            Err(failsafe::Error::Inner(e)) => Err(Tripped::Failed(e)),
        };
        let open = if self.is_call_permitted() { 0.0 } else { 1.0 };
        metrics::gauge!("minimall_breaker_open", "breaker" => self.name.to_string()).set(open);
        outcome
    }
}
