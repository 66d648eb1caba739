//! Every problem the shop answers with, in one catalogue: its `type` (`/problems/{slug}`), its
//! status, what it means and whether the same request may succeed if retried. The services
//! answer with these kinds, their callers match on them, and the OpenAPI documents list them.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

macro_rules! problem_kinds {
    ($($kind:ident = $slug:literal, $status:ident, $title:literal, $retry:literal, $meaning:literal;)+) => {
        /// A problem's kind: the last part of its `type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ProblemKind {
            $(#[serde(rename = $slug)] #[doc = $meaning] $kind,)+
        }

        impl ProblemKind {
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$kind),+];

            pub fn slug(self) -> &'static str {
                match self { $(ProblemKind::$kind => $slug,)+ }
            }

            pub fn status(self) -> StatusCode {
                match self { $(ProblemKind::$kind => StatusCode::$status,)+ }
            }

            pub fn title(self) -> &'static str {
                match self { $(ProblemKind::$kind => $title,)+ }
            }

            /// Whether the same request may succeed later (after `Retry-After` where given).
            pub fn retry(self) -> bool {
                match self { $(ProblemKind::$kind => $retry,)+ }
            }

            pub fn meaning(self) -> &'static str {
                match self { $(ProblemKind::$kind => $meaning,)+ }
            }

            /// The kind a problem `type` (`/problems/{slug}`) names, if it is one.
            pub fn of_type(problem_type: &str) -> Option<ProblemKind> {
                match problem_type.rsplit('/').next()? {
                    $($slug => Some(ProblemKind::$kind),)+
                    _ => None,
                }
            }
        }
    };
}

problem_kinds! {
    BadRequest = "bad-request", BAD_REQUEST, "The request is not valid", false,
        "A header, path or query parameter is malformed; the detail says which.";
    MalformedJson = "malformed-json", BAD_REQUEST, "The body is not valid JSON", false,
        "The body is not one JSON document.";
    InvalidFields = "invalid-fields", UNPROCESSABLE_ENTITY, "The body's fields are not valid", false,
        "The body is JSON but a field holds what the shop does not accept; `field` names it.";
    Unidentified = "unidentified", UNAUTHORIZED, "Who is asking?", false,
        "A service was called without a signed identity (x-actor and x-actor-proof).";
    Unauthorized = "unauthorized", UNAUTHORIZED, "Log in first", false,
        "The gateway needs a valid bearer token (POST /api/login), or the login was refused.";
    Forbidden = "forbidden", FORBIDDEN, "Not allowed for this caller", false,
        "The caller's role may not do this.";
    NotFound = "not-found", NOT_FOUND, "Not found", false,
        "No such route, or no such order, payment, product or delivery (another customer's order is answered so too).";
    MethodNotAllowed = "method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed", false,
        "The route does not take that method.";
    BodyTooLarge = "body-too-large", PAYLOAD_TOO_LARGE, "The request body is too large", false,
        "Bodies are limited to 16 KiB.";
    UriTooLong = "uri-too-long", URI_TOO_LONG, "The request's path is too long", false,
        "Path and query are limited to 8 KiB.";
    UnsupportedMediaType = "unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "The body must be JSON", false,
        "A body was sent without Content-Type: application/json.";
    HeadersTooLarge = "headers-too-large", REQUEST_HEADER_FIELDS_TOO_LARGE, "The request's headers are too large", false,
        "At most 64 headers of 16 KiB in all.";
    RateLimited = "rate-limited", TOO_MANY_REQUESTS, "Too many requests", true,
        "This client passed its request rate at the gateway; retry after Retry-After seconds.";
    AlreadyPlaced = "already-placed", CONFLICT, "Order already placed", false,
        "An order with this id was placed with other details.";
    OrderCancelled = "order-cancelled", CONFLICT, "The order is cancelled", false,
        "The order is cancelled: it takes no more commands but reads.";
    OrderClosed = "order-closed", CONFLICT, "The order is closed", false,
        "The customer confirmed receipt: the order is closed.";
    AlreadyShipped = "already-shipped", CONFLICT, "The parcel has left", false,
        "The order shipped: it can no longer be cancelled.";
    NotShippedYet = "not-shipped-yet", CONFLICT, "Not shipped yet", true,
        "A receipt is taken once the order is Shipping; retry when it is.";
    DepositConfirmed = "deposit-confirmed", CONFLICT, "Deposit already confirmed", false,
        "The seller confirmed the deposit: the order can no longer be cancelled.";
    CancelRefused = "cancel-refused", CONFLICT, "The payment refused the cancel", false,
        "The payment could not be cancelled; the detail says why.";
    AlreadyOpened = "already-opened", CONFLICT, "Payment already opened", false,
        "The order's payment was opened with another amount.";
    PaymentCancelled = "payment-cancelled", CONFLICT, "Payment cancelled", false,
        "The payment is cancelled: no deposit can be confirmed.";
    NotDueYet = "not-due-yet", CONFLICT, "The deposit is not due yet", true,
        "The payment cannot expire before its due date.";
    AlreadyRegistered = "already-registered", CONFLICT, "Already registered", false,
        "A product with this id was registered with other details.";
    OutOfStock = "out-of-stock", CONFLICT, "Out of stock", false,
        "The stock cannot cover the order.";
    AlreadyGivenBack = "already-given-back", CONFLICT, "Stock already given back", false,
        "The order's stock was given back before.";
    OtherOrder = "other-order", CONFLICT, "Another order's delivery", false,
        "The delivery stream holds another order's delivery.";
    RebuildRunning = "rebuild-running", CONFLICT, "A rebuild is running", true,
        "One rebuild of the read model runs at a time; retry when it is done.";
    Unavailable = "unavailable", SERVICE_UNAVAILABLE, "Temporarily unavailable, retry later", true,
        "Busy, stopping, or a dependency (the event store, another service, a read that waits for a position) is not there yet; retry after Retry-After seconds.";
    Wedged = "wedged", SERVICE_UNAVAILABLE, "The service is wedged", false,
        "Liveness: the service should be restarted.";
    UpstreamFailed = "upstream-failed", BAD_GATEWAY, "A service behind the gateway failed", true,
        "The gateway could not get an answer from the service behind it.";
    UpstreamTimeout = "upstream-timeout", GATEWAY_TIMEOUT, "A service behind the gateway did not answer in time", true,
        "The service behind the gateway took longer than the gateway waits.";
    Internal = "internal", INTERNAL_SERVER_ERROR, "Internal error", true,
        "Something broke on the shop's side; the request is safe to retry.";
}

#[cfg(test)]
mod tests {
    use super::ProblemKind;

    #[test]
    fn every_kind_reads_back_from_its_type() {
        for kind in ProblemKind::ALL {
            let problem_type = format!("/problems/{}", kind.slug());
            assert_eq!(ProblemKind::of_type(&problem_type), Some(*kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.slug())
            );
        }
    }
}
