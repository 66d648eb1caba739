//! Who calls, and on whose behalf: the `x-actor` header (`customer:alice`, `seller:shop`,
//! `system:saga`), the request id and the event or command that caused the call. Until the
//! gateway signs identities (a later issue), services trust this header: they listen on loopback
//! or inside the cluster only.

use crate::ProblemKind;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use eventlog::{Actor, ActorKind, Metadata};
use uuid::Uuid;

use crate::{Problem, TraceParent, TRACEPARENT_HEADER};

pub const ACTOR_HEADER: &str = "x-actor";
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The id of the event (or command) that caused this request; it becomes `$causationId`.
pub const CAUSATION_HEADER: &str = "x-causation-id";
/// Longest accepted request id, in bytes.
const REQUEST_ID_BYTES_MAX: usize = 128;

/// Why a call to another service is made: the event or command that caused it (its
/// `$causationId` there), and the span it is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    pub id: Uuid,
    pub trace: Option<TraceParent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub request_id: Option<String>,
    /// What caused this request: the header's id, or a fresh id naming this command.
    pub causation_id: Uuid,
    /// This request's span: a child of the caller's `traceparent`, or a new trace.
    pub trace: TraceParent,
}

impl Caller {
    /// The metadata for the events this request appends to the process `correlation_id`.
    pub fn metadata(&self, correlation_id: Uuid) -> Metadata {
        Metadata {
            correlation_id,
            causation_id: self.causation_id,
            actor: self.actor.clone(),
            at: chrono::Utc::now(),
            request_id: self.request_id.clone(),
            trace_parent: Some(self.trace.to_string()),
        }
    }

    /// Why a call this request makes to another service is made.
    pub fn cause(&self) -> Cause {
        Cause {
            id: self.causation_id,
            trace: Some(self.trace),
        }
    }

    pub fn is(&self, kind: ActorKind) -> bool {
        self.actor.kind == kind
    }

    /// Refuses the request unless the caller is one of `kinds`.
    pub fn must_be(&self, kinds: &[ActorKind], action: &str) -> Result<(), Problem> {
        if kinds.contains(&self.actor.kind) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "a {} may not {action}",
                self.actor.kind.name()
            )))
        }
    }
}

pub fn parse_actor(text: &str) -> Result<Actor, Problem> {
    text.parse()
        .map_err(|e: eventlog::BadActor| Problem::bad_request(format!("{ACTOR_HEADER}: {e}")))
}

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map_err(|_| Problem::bad_request(format!("{name} must be ASCII")))
                })
                .transpose()
        };
        let actor = header(ACTOR_HEADER)?.ok_or_else(|| {
            Problem::of(
                ProblemKind::Unidentified,
                format!("commands need the {ACTOR_HEADER} header"),
            )
        })?;
        let actor = parse_actor(actor)?;
        let request_id = match header(REQUEST_ID_HEADER)? {
            Some(id) if id.len() > REQUEST_ID_BYTES_MAX => {
                return Err(Problem::bad_request(format!(
                    "{REQUEST_ID_HEADER} is limited to {REQUEST_ID_BYTES_MAX} bytes"
                )))
            }
            id => id.map(str::to_string),
        };
        let causation_id = match header(CAUSATION_HEADER)? {
            Some(id) => Uuid::parse_str(id)
                .map_err(|_| Problem::bad_request(format!("{CAUSATION_HEADER} must be a UUID")))?,
            None => Uuid::new_v4(),
        };
        // `serve` put this request's own span there (a child of the caller's).
        let trace = header(TRACEPARENT_HEADER)?
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::root);
        Ok(Caller {
            actor,
            request_id,
            causation_id,
            trace,
        })
    }
}
