//! A command's answer, the same in every service.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eventlog::Executed;
use serde::{Deserialize, Serialize};

/// A command's answer: the state after it, and where its last event is in the log — what a
/// query of the read model may ask to see at least (read-your-writes). No position when the
/// command changed nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Written<T> {
    #[serde(flatten)]
    pub state: T,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

/// The answer to a command: 201 with the state after it if it changed something, 200 if it was
/// already so (a repeated command), with its position either way.
pub fn answer<S, E, T: Serialize>(executed: &Executed<S, E>, state: T) -> Response {
    let status = if executed.events.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = Written {
        state,
        position: executed.position,
    };
    (status, axum::Json(body)).into_response()
}
