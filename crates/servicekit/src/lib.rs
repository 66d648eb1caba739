//! What every minimall HTTP service shares, so each service holds only its own routes and rules:
//! problem+json errors (RFC 9457), the JSON body extractor with explicit limits, who the caller
//! is (`x-actor`), serving with liveness, readiness, metrics and graceful shutdown, and calling
//! another service with a timeout, bounded retries and a circuit breaker.
//!
//! It must not: know any service's routes, commands or events.

mod api_error;
mod breaker;
mod caller;
mod handover;
mod identity;
mod kinds;
pub mod metered;
pub mod openapi;
pub mod otel;
mod problem;
mod secret;
mod serve;
mod trace;
mod upstream;
mod written;

pub use api_error::{field, ApiError, StartError};
pub use breaker::{Breaker, Tripped};
pub use caller::{Caller, Cause, ACTOR_HEADER, CAUSATION_HEADER, REQUEST_ID_HEADER};
pub use eventlog::{Actor, ActorKind};
pub use handover::{Listen, ReadyPipe};
pub use identity::{IdentityKey, PROOF_HEADER, PROOF_TTL_S};
pub use problem::{
    body_rejected, declares_json, parse_json, Json, OptionalJson, Problem, ProblemKind, Query,
};
pub use secret::Secret;
pub use serve::{
    serve, Readiness, Running, Stopping, BODY_BYTES_MAX, DRAIN_NOTICE_MS_MAX, HEADERS_MAX,
    HEADER_BYTES_MAX, STORE_GONE_S_MAX, TRACE_ID_HEADER, URI_BYTES_MAX,
};
pub use trace::{TraceParent, TRACEPARENT_HEADER};
pub use upstream::{CallError, Reply, Upstream, UpstreamSettings};
pub use written::{answer, Written};
