//! The order service: customers place orders, cancel them while allowed, and confirm receipt;
//! the saga marks them shipped or cancels them.
//!
//! It owns the `order-{orderId}` streams. Placing an order needs no other service: the product
//! and its price come from the service's own catalogue view, kept current from product events
//! (orders are accepted while the others are down). A customer's cancel is first decided by the
//! payment service — the single authority on "deposit confirmed" — and only then recorded on
//! the order.
//!
//! It must not: touch another service's streams, or cancel an order whose payment did not agree.

use api::order::{CancelOrder, OrderView, PlaceOrder};
use api::payment::{CancelPayment, PaymentClient};
use api::{Answered, Written};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use domain::order::{Order, OrderCommand, OrderError, OrderState};
use domain::product::{Product, ProductState};
use domain::{CancelReason, CustomerId, Money, OrderId, OrderStatus, ProductId, Quantity};
use eventlog::catalogue::CatalogueView;
use eventlog::{ActorKind, EventLog};
use servicekit::ProblemKind;
use servicekit::{
    Actor, ApiError, CallError, Caller, Json, OptionalJson, Problem, Readiness, Running,
    StartError, Upstream, UpstreamSettings,
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    pub store_url: String,
    /// The payment service, asked whether a customer's cancel may go ahead.
    pub payment: UpstreamSettings,
    /// Verifies callers' signed identities (the secret the gateway and services share).
    pub identity: servicekit::IdentityKey,
}

#[derive(Clone)]
struct AppState {
    log: EventLog,
    catalogue: CatalogueView,
    payment: PaymentClient,
}

pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let store = log.clone();
    let (catalogue, follower) = CatalogueView::follow(&log);
    let readiness = Readiness::when({
        let catalogue = catalogue.clone();
        move || catalogue.caught_up()
    });
    let routes = Router::new()
        .route("/orders", post(place))
        .route("/orders/:order_id", get(one))
        .route("/orders/:order_id/cancel", post(cancel))
        .route("/orders/:order_id/shipment", post(shipped))
        .route("/orders/:order_id/receipt", post(receipt))
        .with_state(AppState {
            log,
            catalogue,
            payment: PaymentClient(Upstream::new(
                "payment",
                settings.payment,
                settings.identity.clone(),
            )),
        });
    Ok(servicekit::serve(
        "order",
        settings.listen,
        routes,
        readiness,
        Some(settings.identity.clone()),
        openapi(),
    )
    .await?
    .needing_store(&store)
    .with_worker(follower))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(place, one, cancel, shipped, receipt))]
struct ApiDoc;

/// The order service's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "order", true)
}

fn stream(order_id: OrderId) -> String {
    format!("order-{order_id}")
}

/// The order's refusals as answers.
fn refusal(e: OrderError) -> Problem {
    let detail = e.to_string();
    match e {
        // Another customer's order is answered as if it did not exist.
        OrderError::NotPlaced | OrderError::NotYourOrder => Problem::not_found("no such order"),
        OrderError::AlreadyPlacedDifferently => Problem::of(ProblemKind::AlreadyPlaced, detail),
        OrderError::AmountTooLarge => Problem::invalid("quantity", detail),
        OrderError::Cancelled => Problem::of(ProblemKind::OrderCancelled, detail),
        OrderError::Closed => Problem::of(ProblemKind::OrderClosed, detail),
        OrderError::AlreadyShipped => Problem::of(ProblemKind::AlreadyShipped, detail),
        OrderError::NotShippedYet => Problem::of(ProblemKind::NotShippedYet, detail),
    }
}

fn order_id(text: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(text).map_err(|_| Problem::not_found("no such order").into())
}

fn customer(caller: &Caller, action: &str) -> Result<CustomerId, ApiError> {
    caller.must_be(&[ActorKind::Customer], action)?;
    Ok(servicekit::field(
        "x-actor",
        CustomerId::parse(&caller.actor.id),
    )?)
}

fn view(state: &OrderState, revision: Option<u64>) -> Option<OrderView> {
    let placed = state.placed()?;
    let (status, cancel_reason) = match state {
        OrderState::NotPlaced | OrderState::Placed(_) => (OrderStatus::OrderPlaced, None),
        OrderState::Shipped(_) => (OrderStatus::Shipping, None),
        OrderState::Closed(_) => (OrderStatus::Closed, None),
        OrderState::Cancelled(_, reason) => (OrderStatus::Cancelled, Some(*reason)),
    };
    Some(OrderView {
        order_id: placed.order_id,
        status: status.into(),
        customer_id: placed.customer_id.as_str().to_string(),
        product_id: placed.product_id,
        quantity: placed.quantity.units(),
        unit_price: placed.unit_price.as_cents(),
        amount: placed.amount.as_cents(),
        cancel_reason: cancel_reason.map(Into::into),
        revision,
    })
}

/// Executes a command and answers with the order after it: 201 if it changed, 200 if it was
/// already so.
async fn run(
    app: &AppState,
    order_id: OrderId,
    command: OrderCommand,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let stream = stream(order_id);
    let executed = app
        .log
        .execute::<Order>(&stream, command, &caller.metadata(order_id.as_uuid()))
        .await
        .map_err(|e| ApiError::from_execute(e, refusal))?;
    let body =
        view(&executed.state, executed.revision).ok_or_else(|| refusal(OrderError::NotPlaced))?;
    Ok(servicekit::answer(&executed, body))
}

#[utoipa::path(post, path = "/orders", tag = "order", request_body = PlaceOrder,
    description = "A customer places an order: accepted at once, whatever the other services do.",
    responses(
        (status = 201, description = "placed", body = Written<OrderView>),
        (status = 200, description = "already placed so (a repeated placement)", body = Written<OrderView>),
        (status = 409, description = "already-placed: the id was used for another order"),
    ))]
async fn place(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<PlaceOrder>,
) -> Result<Response, ApiError> {
    let customer_id = customer(&caller, "place orders")?;
    let order_id = match &request.order_id {
        Some(text) => servicekit::field("orderId", OrderId::parse(text))?,
        None => OrderId::new(),
    };
    // The request's span names the order from here on (its path names none yet).
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let product_id = servicekit::field("productId", ProductId::parse(&request.product_id))?;
    let quantity = servicekit::field("quantity", Quantity::parse(request.quantity))?;
    let unit_price = price(&app, product_id).await?.ok_or_else(|| {
        Problem::invalid(
            "productId",
            format!("product {product_id} is not in the catalogue"),
        )
    })?;
    let command = OrderCommand::Place {
        order_id,
        customer_id,
        product_id,
        quantity,
        unit_price,
        at: Utc::now(),
    };
    run(&app, order_id, command, &caller).await
}

/// The product's price from the catalogue view; a product the view has not seen yet (just
/// registered) is read from its stream — product events, not the inventory service.
async fn price(app: &AppState, product_id: ProductId) -> Result<Option<Money>, ApiError> {
    if let Some(price) = app.catalogue.read(|c| c.get(product_id).map(|p| p.price)) {
        return Ok(Some(price));
    }
    let loaded = app
        .log
        .load::<Product>(&format!("product-{product_id}"))
        .await?;
    Ok(match loaded.state {
        ProductState::Registered(r) => Some(r.price),
        ProductState::NotRegistered => None,
    })
}

#[utoipa::path(get, path = "/orders/{order_id}", tag = "order", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    responses((status = 200, description = "the order", body = OrderView)))]
async fn one(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order_id = self::order_id(&order_id)?;
    let loaded = app.log.load::<Order>(&stream(order_id)).await?;
    Ok(axum::Json(
        view(&loaded.state, loaded.revision).ok_or_else(|| refusal(OrderError::NotPlaced))?,
    ))
}

#[utoipa::path(post, path = "/orders/{order_id}/cancel", tag = "order", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    request_body(content = Option<CancelOrder>, description = "the saga's reason; a customer sends none"),
    description = "Customer: asks the payment first (the single authority on a confirmed deposit). System: cancels with a reason.",
    responses(
        (status = 201, description = "cancelled", body = Written<OrderView>),
        (status = 200, description = "already cancelled", body = Written<OrderView>),
        (status = 409, description = "deposit-confirmed, already-shipped, order-closed, cancel-refused"),
    ))]
async fn cancel(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    caller: Caller,
    OptionalJson(request): OptionalJson<CancelOrder>,
) -> Result<Response, ApiError> {
    let order_id = self::order_id(&order_id)?;
    let request = request.unwrap_or_default();
    let (reason, cancelled_now) = if caller.is(ActorKind::System) {
        let reason = request
            .reason
            .ok_or_else(|| Problem::invalid("reason", "a reason is required"))?
            .into();
        (reason, false)
    } else {
        let customer_id = customer(&caller, "cancel orders")?;
        customer_may_cancel(&app, order_id, &customer_id).await?;
        let cancelled_now = ask_payment_to_cancel(&app, order_id, &caller).await?;
        (CancelReason::CustomerRequest, cancelled_now)
    };
    let command = OrderCommand::Cancel {
        reason,
        at: Utc::now(),
    };
    let mut response = run(&app, order_id, command, &caller).await?;
    // This request's cancel took effect even if the saga, seeing the payment cancelled,
    // recorded it on the order a moment before this handler could.
    if cancelled_now {
        *response.status_mut() = StatusCode::CREATED;
    }
    Ok(response)
}

/// The customer's own order, not yet shipped or closed.
async fn customer_may_cancel(
    app: &AppState,
    order_id: OrderId,
    customer_id: &CustomerId,
) -> Result<(), ApiError> {
    let state = app.log.load::<Order>(&stream(order_id)).await?.state;
    let placed = state
        .placed()
        .ok_or_else(|| refusal(OrderError::NotPlaced))?;
    if &placed.customer_id != customer_id {
        return Err(refusal(OrderError::NotYourOrder).into());
    }
    match state {
        OrderState::Shipped(_) => Err(refusal(OrderError::AlreadyShipped).into()),
        OrderState::Closed(_) => Err(refusal(OrderError::Closed).into()),
        _ => Ok(()),
    }
}

/// The payment decides whether the deposit was confirmed first; only if it agrees is the
/// order cancelled. True if this call cancelled the payment (false: it already was).
async fn ask_payment_to_cancel(
    app: &AppState,
    order_id: OrderId,
    caller: &Caller,
) -> Result<bool, ApiError> {
    let request = CancelPayment {
        reason: CancelReason::CustomerRequest.into(),
    };
    let answered = app
        .payment
        .cancel(order_id, &request, &Actor::system("order"), caller.cause())
        .await
        .map_err(|e| match e {
            CallError::BreakerOpen { .. } | CallError::Unreachable { .. } => Problem::unavailable(
                "the payment service cannot confirm the cancel right now; retry shortly",
                5,
            ),
        })?;
    let refusal = match answered {
        Answered::Done { created, .. } => return Ok(created),
        Answered::Refused(refusal) => refusal,
    };
    Err(match refusal.kind {
        Some(ProblemKind::DepositConfirmed) => Problem::of(
            ProblemKind::DepositConfirmed,
            "the seller confirmed your deposit: the order can no longer be cancelled",
        ),
        _ => Problem::of(ProblemKind::CancelRefused, refusal.detail),
    }
    .into())
}

#[utoipa::path(post, path = "/orders/{order_id}/shipment", tag = "order", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    description = "The saga marks the order shipped once its delivery started.",
    responses(
        (status = 201, description = "shipped", body = Written<OrderView>),
        (status = 200, description = "already shipped", body = Written<OrderView>),
        (status = 409, description = "order-cancelled"),
    ))]
async fn shipped(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "mark orders shipped")?;
    let order_id = self::order_id(&order_id)?;
    let command = OrderCommand::MarkShipped { at: Utc::now() };
    run(&app, order_id, command, &caller).await
}

#[utoipa::path(post, path = "/orders/{order_id}/receipt", tag = "order", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    description = "The customer confirms receipt: the order is closed.",
    responses(
        (status = 201, description = "closed", body = Written<OrderView>),
        (status = 200, description = "already closed", body = Written<OrderView>),
        (status = 409, description = "not-shipped-yet, order-cancelled"),
    ))]
async fn receipt(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let customer_id = customer(&caller, "confirm receipt")?;
    let order_id = self::order_id(&order_id)?;
    let command = OrderCommand::ConfirmReceipt {
        customer_id,
        at: Utc::now(),
    };
    run(&app, order_id, command, &caller).await
}
