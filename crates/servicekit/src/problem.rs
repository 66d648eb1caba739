//! Errors as `application/problem+json`: a stable `type` a client can act on, a `title`, the
//! `status` and a `detail` for people.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::error::Category;

pub use crate::kinds::ProblemKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.title())]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    /// Seconds after which a retry may succeed (503, 429).
    pub retry_after_s: Option<u64>,
    /// The request field at fault, as a path (`quantity`, `items[0].name`), where one is.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl Problem {
    /// A problem of `kind`; the detail says what happened, for people.
    pub fn of(kind: ProblemKind, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
            retry_after_s: None,
            field: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::of(ProblemKind::BadRequest, detail)
    }

    /// A body that parsed as JSON but whose `field` holds what the shop does not accept; the
    /// detail reads `field: why`.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Problem {
        Problem::unprocessable(Some(field), format!("{field}: {why}"))
    }

    /// A 422 naming the `field` at fault where there is one (a body that is not an object has
    /// none).
    fn unprocessable(field: Option<&str>, detail: String) -> Problem {
        Problem {
            field: field.map(str::to_string),
            ..Problem::of(ProblemKind::InvalidFields, detail)
        }
    }

    /// A value the shop does not accept in `field`: the detail says why, naming it.
    pub fn invalid_field(field: &str, why: &domain::ValueError) -> Problem {
        Problem::unprocessable(Some(field), format!("{field} {why}"))
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::of(ProblemKind::NotFound, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::of(ProblemKind::Forbidden, detail)
    }

    /// A dependency is down or busy: the client may retry after `retry_after_s`.
    pub fn unavailable(detail: impl Into<String>, retry_after_s: u64) -> Problem {
        Problem {
            retry_after_s: Some(retry_after_s),
            ..Problem::of(ProblemKind::Unavailable, detail)
        }
    }

    /// Something broke on our side. The cause is logged here, once; the body stays generic.
    pub fn internal(cause: &dyn std::fmt::Display) -> Problem {
        tracing::error!(%cause, "request failed");
        Problem::of(
            ProblemKind::Internal,
            "the request failed on our side; it is safe to retry",
        )
    }

    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.kind.slug())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: self.type_uri(),
            title: self.kind.title(),
            status: self.status().as_u16(),
            detail: &self.detail,
            field: self.field.as_deref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status(), bytes).into_response();
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

/// A JSON body whose every rejection (syntax, trailing data, wrong fields, wrong content type,
/// too large) is a problem+json answer.
pub struct Json<T>(pub T);

/// A JSON body that may be left out entirely (no bytes at all); anything sent must be valid.
pub struct OptionalJson<T>(pub Option<T>);

#[axum::async_trait]
impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (is_json, bytes) = body_of(request, state).await?;
        parse_json(is_json, &bytes).map(Json)
    }
}

#[axum::async_trait]
impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (is_json, bytes) = body_of(request, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        parse_json(is_json, &bytes).map(|value| OptionalJson(Some(value)))
    }
}

/// The body's bytes (within the body limit) and whether it was declared JSON.
async fn body_of<S: Send + Sync>(request: Request, state: &S) -> Result<(bool, Bytes), Problem> {
    let is_json = declares_json(request.headers());
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(body_rejected)?;
    Ok((is_json, bytes))
}

/// Whether the request says its body is JSON.
pub fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
}

/// A body that could not be read: too large (413), or broken.
pub fn body_rejected(rejection: BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::of(
            ProblemKind::BodyTooLarge,
            format!("bodies are limited to {} bytes", crate::BODY_BYTES_MAX),
        )
    } else {
        Problem::bad_request(rejection.body_text())
    }
}

/// Exactly one JSON value of the expected shape: trailing data is refused too.
pub fn parse_json<T: DeserializeOwned>(is_json: bool, bytes: &[u8]) -> Result<T, Problem> {
    if !is_json {
        return Err(Problem::of(
            ProblemKind::UnsupportedMediaType,
            "send the body with Content-Type: application/json",
        ));
    }
    let mut reading = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut reading).map_err(|e| {
        let field = field_of(&e);
        let e = e.into_inner();
        match e.classify() {
            Category::Data => match field {
                Some(field) => Problem::invalid(&field, e),
                None => Problem::unprocessable(None, format!("the body {e}")),
            },
            Category::Syntax | Category::Eof | Category::Io => malformed(&e),
        }
    })?;
    reading.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> Problem {
    Problem::of(ProblemKind::MalformedJson, e.to_string())
}

/// The field a data error is about: where it happened, or — for a field missing or unknown,
/// reported at the object holding it — the field it names.
fn field_of(e: &serde_path_to_error::Error<serde_json::Error>) -> Option<String> {
    let at = e.path().to_string();
    let message = e.inner().to_string();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|start| message.strip_prefix(start)?.split('`').next());
    // A body that is not an object fails at its top (`.`) or at an index (`[0]`): no field.
    let holder = (at != "." && !at.starts_with('[')).then_some(at);
    match (holder, named) {
        (Some(holder), Some(name)) => Some(format!("{holder}.{name}")),
        (None, Some(name)) => Some(name.to_string()),
        (holder, None) => holder,
    }
}

/// A query string whose rejection (a missing or malformed parameter) is a problem+json answer.
pub struct Query<T>(pub T);

#[axum::async_trait]
impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| Problem::bad_request(rejection.body_text()))
    }
}
