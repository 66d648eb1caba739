//! Calling another service: each attempt has a timeout; failed attempts (unreachable, timed
//! out, 5xx) are retried a bounded number of times with exponential backoff and jitter; and a
//! circuit breaker (failsafe) stops calling a service that keeps failing, for a jittered pause,
//! so callers fail fast instead of piling up on it. A 4xx is an answer, not a failure.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::{
    Breaker, Cause, IdentityKey, Tripped, ACTOR_HEADER, CAUSATION_HEADER, PROOF_HEADER,
    REQUEST_ID_HEADER, TRACEPARENT_HEADER,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// e.g. `http://127.0.0.1:8083`
    pub base_url: String,
    /// Longest wait for one attempt's answer, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per call, the first included.
    pub attempts_max: u32,
    /// Pause before the first retry, in milliseconds; it doubles with each retry.
    pub backoff_ms: u64,
    /// Failed attempts in a row that open the breaker.
    pub breaker_failures_max: u32,
    /// Pause of an open breaker, in seconds (at least 2, see `Breaker::new`); it doubles while
    /// the service keeps failing, up to `breaker_open_s_max`.
    pub breaker_open_s: u64,
    pub breaker_open_s_max: u64,
}

impl UpstreamSettings {
    pub fn new(base_url: impl Into<String>) -> UpstreamSettings {
        UpstreamSettings {
            base_url: base_url.into(),
            timeout_ms: 2_000,
            attempts_max: 3,
            backoff_ms: 50,
            breaker_failures_max: 5,
            breaker_open_s: 2,
            breaker_open_s_max: 16,
        }
    }
}

/// An answer from the service (any status below 500).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The kind of problem answered, if the answer is one the catalogue knows.
    pub fn problem(&self) -> Option<crate::ProblemKind> {
        self.body
            .get("type")
            .and_then(|t| t.as_str())
            .and_then(crate::ProblemKind::of_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{service} is failing; its circuit breaker is open")]
    BreakerOpen { service: &'static str },
    #[error("{service} did not answer: {reason}")]
    Unreachable {
        service: &'static str,
        reason: String,
    },
}

/// A service called over HTTP.
#[derive(Clone)]
pub struct Upstream {
    service: &'static str,
    identity: IdentityKey,
    settings: Arc<UpstreamSettings>,
    http: reqwest::Client,
    breaker: Breaker,
}

impl Upstream {
    pub fn new(
        service: &'static str,
        settings: UpstreamSettings,
        identity: IdentityKey,
    ) -> Upstream {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            // Services talk to each other directly, never through a proxy from the environment.
            .no_proxy()
            .build()
            .unwrap_or_default();
        let breaker = Breaker::new(
            service,
            settings.breaker_failures_max,
            settings.breaker_open_s,
            settings.breaker_open_s_max,
        );
        Upstream {
            service,
            identity,
            settings: Arc::new(settings),
            http,
            breaker,
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Whether the breaker currently lets calls through.
    pub fn is_call_permitted(&self) -> bool {
        self.breaker.is_call_permitted()
    }

    /// POSTs `body` as JSON to `path`, on behalf of `actor`, naming what caused the call and
    /// the span it is made from.
    pub async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        actor: &eventlog::Actor,
        cause: Cause,
    ) -> Result<Reply, CallError> {
        let actor = actor.to_string();
        let causation_id = cause.id;
        let body = serde_json::to_vec(body).unwrap_or_default();
        let url = format!("{}{}", self.settings.base_url, path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header(ACTOR_HEADER, &actor)
                .header(PROOF_HEADER, self.identity.prove(&actor))
                .header(CAUSATION_HEADER, causation_id.to_string())
                .header(REQUEST_ID_HEADER, format!("{causation_id}-{attempt}"))
                .body(body.clone());
            let request = match cause.trace {
                Some(trace) => request.header(TRACEPARENT_HEADER, trace.to_string()),
                None => request,
            };
            let outcome = self.breaker.call(send(request)).await;
            let reason = match outcome {
                Ok(reply) => return Ok(reply),
                Err(Tripped::Open) => {
                    return Err(CallError::BreakerOpen {
                        service: self.service,
                    })
                }
                Err(Tripped::Failed(reason)) => reason,
            };
            if attempt >= self.settings.attempts_max {
                return Err(CallError::Unreachable {
                    service: self.service,
                    reason,
                });
            }
            tracing::debug!(service = self.service, attempt, %reason, "call failed; retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// `backoff_ms * 2^(attempt-1)`, plus up to as much again at random.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.backoff_ms << (attempt - 1).min(10);
        let jitter = uuid::Uuid::new_v4().as_u128() % u128::from(base.max(1));
        Duration::from_millis(base + jitter as u64)
    }
}

/// One attempt: an answer below 500 is a reply; anything else a failure the breaker counts.
async fn send(request: reqwest::RequestBuilder) -> Result<Reply, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    if status >= 500 {
        return Err(format!("answered {status}"));
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Reply { status, body })
}
