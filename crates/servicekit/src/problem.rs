//! Errors as `application/problem+json`: a stable `type` a client can act on, a `title`, the
//! `status` and a `detail` for people.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct Problem {
    pub status: StatusCode,
    /// The last part of the `type` URI: `/problems/{slug}`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Seconds after which a retry may succeed (503, 429).
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is not valid",
            detail,
        )
    }

    /// A field that parsed as JSON but holds a value the shop does not accept.
    pub fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-fields",
            "The body's fields are not valid",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn conflict(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, slug, title, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed for this caller",
            detail,
        )
    }

    /// A dependency is down or busy: the client may retry after `retry_after_s`.
    pub fn unavailable(detail: impl Into<String>, retry_after_s: u64) -> Problem {
        Problem {
            retry_after_s: Some(retry_after_s),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable, retry later",
                detail,
            )
        }
    }

    /// Something broke on our side. The cause is logged here, once; the body stays generic.
    pub fn internal(cause: &dyn std::fmt::Display) -> Problem {
        tracing::error!(%cause, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed on our side; it is safe to retry",
        )
    }

    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.slug)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: self.type_uri(),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON body whose every rejection (syntax, wrong fields, wrong content type, too large) is a
/// problem+json answer.
pub struct Json<T>(pub T);

#[axum::async_trait]
impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(rejected(rejection)),
        }
    }
}

fn rejected(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    let detail = rejection.body_text();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            status,
            "body-too-large",
            "The request body is too large",
            format!("bodies are limited to {} bytes", crate::BODY_BYTES_MAX),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
            status,
            "unsupported-media-type",
            "The body must be JSON",
            "send the body with Content-Type: application/json",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => Problem::new(
            status,
            "invalid-fields",
            "The body's fields are not valid",
            detail,
        ),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not valid JSON",
            detail,
        ),
    }
}
