//! The seller's on-call view: every saga instance's status (partitions, breakers, follower lag,
//! parked triggers with why), every read-model replica's (caught up, follower lag), the orders stuck on a step the shop works itself, the gateway's
//! own open breakers; and the one action on it, retrying a parked trigger (the saga records it
//! on the order's saga stream with who asked).

use api::order_status::OrderSummary;
use api::order_status::ReadModelStatus;
use api::saga::{OperatorView, ReadModelView, Retried, SagaInstanceView, SagaStatus, StuckOrder};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use servicekit::{Problem, ProblemKind};

use super::{id, pass_on, Caller, Forward, Hop, Shared};
use crate::accounts::Role;

/// An order on a step the shop works itself (not waiting for a customer or the seller) for
/// longer than this is stuck, in seconds.
pub const STUCK_AFTER_S: i64 = 30;
/// The statuses in which the shop, not a person, moves the order on.
const WORKED_STATUSES: [&str; 3] = ["OrderPlaced", "DepositConfirmed", "Preparing"];

#[utoipa::path(get, path = "/api/operator", tag = "operator",
    description = "Seller: what the person on call needs — each saga instance (partitions, breakers, follower lag, parked triggers and why), each read-model replica (caught up, follower lag), the orders stuck on a step the shop works itself, and the gateway's open breakers.",
    security(("bearer" = [])),
    responses((status = 200, description = "the view", body = OperatorView)))]
pub(super) async fn view(
    State(gateway): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<axum::Json<OperatorView>, Problem> {
    let seller = caller.must_be(Role::Seller)?;
    let forward = |pool, method, path: String| Forward {
        pool,
        method,
        path,
        caller: Some(seller),
        body: None,
        hop: Hop::of(&headers),
    };
    let sagas = ask_each::<SagaStatus>(
        forward(&gateway.saga, Method::GET, "/saga/status".into()),
        &gateway,
    )
    .await
    .into_iter()
    .map(|(url, answer)| match answer {
        Ok(status) => SagaInstanceView {
            url,
            status: Some(status),
            unreachable: None,
        },
        Err(why) => SagaInstanceView {
            url,
            status: None,
            unreachable: Some(why),
        },
    })
    .collect();
    let read_models = ask_each::<ReadModelStatus>(
        forward(&gateway.order_status, Method::GET, "/status".into()),
        &gateway,
    )
    .await
    .into_iter()
    .map(|(url, answer)| match answer {
        Ok(status) => ReadModelView {
            url,
            status: Some(status),
            unreachable: None,
        },
        Err(why) => ReadModelView {
            url,
            status: None,
            unreachable: Some(why),
        },
    })
    .collect();
    let now = chrono::Utc::now();
    let mut stuck = Vec::new();
    for status in WORKED_STATUSES {
        let path = format!("/seller/orders?status={status}");
        let answer = forward(&gateway.order_status, Method::GET, path)
            .send(&gateway, false)
            .await?;
        let orders: Vec<OrderSummary> = answer.json().await.map_err(|e| {
            Problem::of(
                ProblemKind::UpstreamFailed,
                format!("the read model's answer: {e}"),
            )
        })?;
        stuck.extend(orders.into_iter().filter_map(|order| {
            let for_s = (now - order.row.updated_at).num_seconds();
            (for_s > STUCK_AFTER_S).then(|| StuckOrder {
                order_id: order.row.order_id.to_string(),
                status: order.row.status,
                since: order.row.updated_at,
                for_s,
            })
        }));
    }
    stuck.sort_by_key(|order| order.since);
    let gateway_breakers_open = [
        &gateway.order,
        &gateway.payment,
        &gateway.inventory,
        &gateway.order_status,
        &gateway.saga,
    ]
    .into_iter()
    .filter_map(|pool| pool.breaker_open())
    .map(str::to_string)
    .collect();
    Ok(axum::Json(OperatorView {
        sagas,
        read_models,
        stuck,
        stuck_after_s: STUCK_AFTER_S,
        gateway_breakers_open,
        at: now,
    }))
}

/// The request sent to every process of the pool: each one's URL and its answer read as `T`,
/// or why there is none.
async fn ask_each<T: serde::de::DeserializeOwned>(
    forward: Forward<'_>,
    gateway: &crate::Gateway,
) -> Vec<(String, Result<T, String>)> {
    let mut answers = Vec::new();
    for (url, answer) in forward.send_to_each(gateway).await {
        let read = match answer {
            Ok(answer) => answer.json::<T>().await.map_err(|e| e.to_string()),
            Err(problem) => Err(problem.detail.clone()),
        };
        answers.push((url, read));
    }
    answers
}

#[utoipa::path(post, path = "/api/operator/orders/{id}/retry", tag = "operator",
    params(("id" = String, Path, description = "the order's id (a UUID)")),
    description = "Seller: the order's parked trigger is tried again now, by whichever saga instance holds it; recorded as `TriggerRetried` on the order's saga stream, with the seller as its actor.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "tried again", body = Retried),
        (status = 404, description = "nothing is parked for the order")))]
pub(super) async fn retry(
    State(gateway): State<Shared>,
    caller: Caller,
    Path(order): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let seller = caller.must_be(Role::Seller)?;
    let order = id(&order, "order")?;
    let forward = Forward {
        pool: &gateway.saga,
        method: Method::POST,
        path: format!("/saga/parked/{order}/retry"),
        caller: Some(seller),
        body: None,
        hop: Hop::of(&headers),
    };
    let mut unreachable = None;
    for (_, answer) in forward.send_to_each(&gateway).await {
        match answer {
            Ok(answer) if answer.status().is_success() => return Ok(pass_on(answer)),
            Ok(_) => {}
            Err(problem) => unreachable = Some(problem),
        }
    }
    // Every instance said nothing is parked for it, unless one could not be asked.
    Err(unreachable
        .unwrap_or_else(|| Problem::not_found(format!("nothing is parked for order {order}"))))
}
