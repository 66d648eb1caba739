//! The shop's HTTP contracts: each service's requests and answers as types shared by the
//! service that answers and the parts that call it, one typed client per service, and the
//! schemas the OpenAPI documents are generated from.
//!
//! It owns: the wire shapes (camelCase JSON) of the order, payment, inventory and delivery
//! services and of the order-status read model, and what an answer means to a caller (`Answered`).
//!
//! It must not: hold business rules (the domain's deciders do) or know the event store.
//! Requests carry raw values (strings, integers): the service parses them into domain values so
//! that a bad one is a 422 naming its field.

pub mod delivery;
pub mod inventory;
pub mod order;
pub mod order_status;
pub mod payment;
pub mod saga;
pub mod schema;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use servicekit::{Actor, CallError, Cause, ProblemKind, Reply, Upstream};
use utoipa::ToSchema;

pub use servicekit::Written;

/// What a service answered a call, as its caller reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered<T> {
    /// 2xx: `created` when this call changed something (201), not when it was already so (200).
    Done { created: bool, answer: T },
    /// A 4xx problem, or an answer that does not fit the contract (`kind` then `None`).
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub kind: Option<ProblemKind>,
    pub detail: String,
}

impl<T: DeserializeOwned> Answered<T> {
    fn of(reply: Reply) -> Answered<T> {
        let detail = || {
            reply
                .body
                .get("detail")
                .and_then(|d| d.as_str())
                .unwrap_or("")
                .to_string()
        };
        if !reply.is_success() {
            return Answered::Refused(Refusal {
                status: reply.status,
                kind: reply.problem(),
                detail: detail(),
            });
        }
        match serde_json::from_value(reply.body.clone()) {
            Ok(answer) => Answered::Done {
                created: reply.status == 201,
                answer,
            },
            Err(e) => Answered::Refused(Refusal {
                status: reply.status,
                kind: None,
                detail: format!("the answer does not fit the contract: {e}"),
            }),
        }
    }
}

/// A typed call: POSTs `body` to `path` and reads the answer as `T`.
async fn post<T: DeserializeOwned>(
    upstream: &Upstream,
    path: &str,
    body: &impl Serialize,
    actor: &Actor,
    cause: Cause,
) -> Result<Answered<T>, CallError> {
    Ok(Answered::of(upstream.post(path, body, actor, cause).await?))
}

/// A command that needs no body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}
