//! The one error type of a service's handlers: a problem to answer with, or a store failure
//! (logged once, answered with 503 + Retry-After when the store cannot be reached, a generic
//! 500 otherwise). Each service maps its domain's refusals to
//! problems in one function, handed to `ApiError::from_execute`.

use axum::response::{IntoResponse, Response};
use domain::ValueError;
use eventlog::{ExecuteError, LogError, CONFLICT_RETRIES_MAX};

use crate::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl ApiError {
    /// A failed command: the domain's refusal as the service's `refusal` maps it, a stream that
    /// kept changing (503, retry), or the store.
    pub fn from_execute<E>(error: ExecuteError<E>, refusal: impl FnOnce(E) -> Problem) -> ApiError {
        match error {
            ExecuteError::Rejected(e) => ApiError::Problem(refusal(e)),
            ExecuteError::Conflict => ApiError::Problem(Problem::unavailable(
                format!("the record kept changing under {CONFLICT_RETRIES_MAX} tries; retry"),
                1,
            )),
            ExecuteError::Log(e) => ApiError::Log(e),
        }
    }
}

/// A parsed request value, or the 422 naming the `field` it came from.
pub fn field<T>(field: &str, parsed: Result<T, ValueError>) -> Result<T, Problem> {
    parsed.map_err(|e| Problem::invalid_field(field, &e))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem(problem) => problem.into_response(),
            ApiError::Log(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, "the event store cannot be reached");
                Problem::unavailable("the event store cannot be reached; retry shortly", 1)
                    .into_response()
            }
            ApiError::Log(e) => Problem::internal(&e).into_response(),
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    /// A service's own database (a read model) cannot be opened.
    #[error("database: {0}")]
    Database(String),
}
