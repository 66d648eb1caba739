//! The delivery service: starts the delivery of an order's parcel (idempotent per order), tells
//! where it stands, and records its delivery.
//!
//! It owns the `delivery-{orderId}` streams.
//!
//! It must not: call other services; the saga starts deliveries once stock was taken.

use api::delivery::{DeliveryStatus, DeliveryView, StartDelivery};
use api::Written;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use domain::delivery::{Delivery, DeliveryCommand, DeliveryError, DeliveryState};
use domain::{CustomerId, OrderId, ProductId, Quantity};
use eventlog::{ActorKind, EventLog};
use servicekit::ProblemKind;
use servicekit::{field, ApiError, Caller, Json, Problem, Readiness, Running, StartError};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    pub store_url: String,
    /// Verifies callers' signed identities (the secret the gateway and services share).
    pub identity: servicekit::IdentityKey,
}

pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let store = log.clone();
    let routes = Router::new()
        .route("/deliveries", post(start))
        .route("/deliveries/:order_id", axum::routing::get(one))
        .route("/deliveries/:order_id/delivered", post(delivered))
        .with_state(log);
    Ok(servicekit::serve(
        "delivery",
        settings.listen,
        routes,
        Readiness::always(),
        Some(settings.identity),
        openapi(),
    )
    .await?
    .needing_store(&store))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(start, one, delivered))]
struct ApiDoc;

/// The delivery service's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "delivery", true)
}

fn stream(order_id: OrderId) -> String {
    format!("delivery-{order_id}")
}

/// The delivery's refusals as answers.
fn refusal(e: DeliveryError) -> Problem {
    let detail = e.to_string();
    match e {
        DeliveryError::NotStarted => Problem::not_found(detail),
        DeliveryError::OtherOrder => Problem::of(ProblemKind::OtherOrder, detail),
    }
}

fn view(order_id: OrderId, state: DeliveryState, revision: Option<u64>) -> DeliveryView {
    let status = match state {
        DeliveryState::NotStarted => DeliveryStatus::NotStarted,
        DeliveryState::Underway { .. } => DeliveryStatus::Underway,
        DeliveryState::Delivered { .. } => DeliveryStatus::Delivered,
    };
    DeliveryView {
        order_id,
        status,
        revision,
    }
}

async fn run(
    log: &EventLog,
    order_id: OrderId,
    command: DeliveryCommand,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let stream = stream(order_id);
    let executed = log
        .execute::<Delivery>(&stream, command, &caller.metadata(order_id.as_uuid()))
        .await
        .map_err(|e| ApiError::from_execute(e, refusal))?;
    let body = view(order_id, executed.state, executed.revision);
    Ok(servicekit::answer(&executed, body))
}

#[utoipa::path(post, path = "/deliveries", tag = "delivery", request_body = StartDelivery,
    description = "The saga starts an order's delivery once its stock was taken.",
    responses(
        (status = 201, description = "started", body = Written<DeliveryView>),
        (status = 200, description = "already started", body = Written<DeliveryView>),
        (status = 409, description = "other-order"),
    ))]
async fn start(
    State(log): State<EventLog>,
    caller: Caller,
    Json(request): Json<StartDelivery>,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "start deliveries")?;
    let order_id = field("orderId", OrderId::parse(&request.order_id))?;
    let command = DeliveryCommand::Start {
        order_id,
        customer_id: field("customerId", CustomerId::parse(&request.customer_id))?,
        product_id: field("productId", ProductId::parse(&request.product_id))?,
        quantity: field("quantity", Quantity::parse(request.quantity))?,
        at: Utc::now(),
    };
    run(&log, order_id, command, &caller).await
}

fn order_id(text: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(text).map_err(|e| Problem::not_found(e.to_string()).into())
}

#[utoipa::path(get, path = "/deliveries/{order_id}", tag = "delivery", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    responses((status = 200, description = "the delivery", body = DeliveryView)))]
async fn one(
    State(log): State<EventLog>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<DeliveryView>, ApiError> {
    let order_id = self::order_id(&order_id)?;
    let loaded = log.load::<Delivery>(&stream(order_id)).await?;
    if loaded.state == DeliveryState::NotStarted {
        return Err(refusal(DeliveryError::NotStarted).into());
    }
    Ok(axum::Json(view(order_id, loaded.state, loaded.revision)))
}

#[utoipa::path(post, path = "/deliveries/{order_id}/delivered", tag = "delivery", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    description = "The saga marks the parcel delivered once the customer confirmed receipt.",
    responses(
        (status = 201, description = "delivered", body = Written<DeliveryView>),
        (status = 200, description = "already delivered", body = Written<DeliveryView>),
    ))]
async fn delivered(
    State(log): State<EventLog>,
    Path(order_id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "mark parcels delivered")?;
    let order_id = self::order_id(&order_id)?;
    let command = DeliveryCommand::MarkDelivered { at: Utc::now() };
    run(&log, order_id, command, &caller).await
}
