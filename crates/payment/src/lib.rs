//! The payment service: opens a bank-transfer payment for an order (deposit reference, amount,
//! account to pay into, due date), lets the seller confirm the deposit, and cancels — with a
//! refund when money was received.
//!
//! It owns the `payment-{orderId}` streams and is the single authority on "deposit confirmed":
//! a customer's cancel and the seller's confirmation are decided on the same stream at its
//! expected revision, so exactly one wins.
//!
//! It must not: call other services; it learns nothing but what it is asked.

use servicekit::ProblemKind;
use std::time::Duration;

use api::payment::{CancelPayment, OpenPayment, PaymentStatus, PaymentView};
use api::Written;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use domain::payment::{Payment, PaymentCommand, PaymentError, PaymentState};
use domain::{CancelReason, Money, OrderId};
use eventlog::{ActorKind, EventLog};
use servicekit::{ApiError, Caller, Json, Problem, Readiness, Running, StartError};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    pub store_url: String,
    /// The shop's bank account customers pay into.
    pub account: String,
    /// Time a customer has to pay after ordering.
    pub due_period: Duration,
    /// Verifies callers' signed identities (the secret the gateway and services share).
    pub identity: servicekit::IdentityKey,
}

#[derive(Clone)]
struct AppState {
    log: EventLog,
    account: String,
    due_period: chrono::Duration,
}

pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let store = log.clone();
    let due_period = chrono::Duration::from_std(settings.due_period)
        .unwrap_or_else(|_| chrono::Duration::days(7));
    let routes = Router::new()
        .route("/payments/:order_id", post(open).get(one))
        .route("/payments/:order_id/deposit", post(confirm_deposit))
        .route("/payments/:order_id/cancel", post(cancel))
        .with_state(AppState {
            log,
            account: settings.account,
            due_period,
        });
    Ok(servicekit::serve(
        "payment",
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
#[openapi(paths(open, one, confirm_deposit, cancel))]
struct ApiDoc;

/// The payment service's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "payment", true)
}

fn stream(order_id: OrderId) -> String {
    format!("payment-{order_id}")
}

/// The payment's refusals as answers.
fn refusal(e: PaymentError) -> Problem {
    let detail = e.to_string();
    match e {
        PaymentError::NotOpened => Problem::not_found(detail),
        PaymentError::AlreadyOpenedDifferently => Problem::of(ProblemKind::AlreadyOpened, detail),
        PaymentError::DepositAlreadyConfirmed => Problem::of(ProblemKind::DepositConfirmed, detail),
        PaymentError::Cancelled => Problem::of(ProblemKind::PaymentCancelled, detail),
        PaymentError::NotDueYet => Problem::of(ProblemKind::NotDueYet, detail),
    }
}

fn order_id(text: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(text).map_err(|e| Problem::not_found(e.to_string()).into())
}

fn view(order_id: OrderId, state: &PaymentState, revision: Option<u64>) -> PaymentView {
    let opened = state.opened();
    let (status, refund) = match state {
        PaymentState::NotOpened => (PaymentStatus::NotOpened, false),
        PaymentState::AwaitingDeposit(_) => (PaymentStatus::AwaitingDeposit, false),
        PaymentState::DepositConfirmed(_) => (PaymentStatus::DepositConfirmed, false),
        PaymentState::Cancelled { refund, .. } => (PaymentStatus::Cancelled, *refund),
    };
    PaymentView {
        order_id,
        status,
        amount: opened.map(|o| o.amount.as_cents()),
        deposit_reference: opened.map(|o| o.deposit_reference.clone()),
        account: opened.map(|o| o.account.clone()),
        due_at: opened.map(|o| o.due_at),
        refund,
        revision,
    }
}

/// Executes a command and answers with the payment as it stands after it.
async fn run(
    app: &AppState,
    order_id: OrderId,
    command: PaymentCommand,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let stream = stream(order_id);
    let executed = app
        .log
        .execute::<Payment>(&stream, command, &caller.metadata(order_id.as_uuid()))
        .await
        .map_err(|e| ApiError::from_execute(e, refusal))?;
    let body = view(order_id, &executed.state, executed.revision);
    Ok(servicekit::answer(&executed, body))
}

#[utoipa::path(post, path = "/payments/{order_id}", tag = "payment", params(("order_id" = String, Path, description = "the order's id (a UUID)")), request_body = OpenPayment,
    description = "The saga opens the order's payment: what to pay, to which account, with which reference, by when.",
    responses(
        (status = 201, description = "opened", body = Written<PaymentView>),
        (status = 200, description = "already opened so", body = Written<PaymentView>),
        (status = 409, description = "already-opened (another amount), payment-cancelled"),
    ))]
async fn open(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    caller: Caller,
    Json(request): Json<OpenPayment>,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "open payments")?;
    let order_id = self::order_id(&order_id)?;
    let now = Utc::now();
    let command = PaymentCommand::Open {
        order_id,
        amount: servicekit::field("amount", Money::cents(request.amount))?,
        deposit_reference: domain::payment::deposit_reference(order_id),
        account: app.account.clone(),
        due_at: now + app.due_period,
        at: now,
    };
    run(&app, order_id, command, &caller).await
}

#[utoipa::path(get, path = "/payments/{order_id}", tag = "payment", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    responses((status = 200, description = "the payment", body = PaymentView)))]
async fn one(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<PaymentView>, ApiError> {
    let order_id = self::order_id(&order_id)?;
    let loaded = app.log.load::<Payment>(&stream(order_id)).await?;
    if loaded.state == PaymentState::NotOpened {
        return Err(refusal(PaymentError::NotOpened).into());
    }
    Ok(axum::Json(view(order_id, &loaded.state, loaded.revision)))
}

#[utoipa::path(post, path = "/payments/{order_id}/deposit", tag = "payment", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    description = "The seller confirms the deposit arrived.",
    responses(
        (status = 201, description = "confirmed", body = Written<PaymentView>),
        (status = 200, description = "already confirmed", body = Written<PaymentView>),
        (status = 409, description = "payment-cancelled"),
    ))]
async fn confirm_deposit(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::Seller], "confirm deposits")?;
    let order_id = self::order_id(&order_id)?;
    let command = PaymentCommand::ConfirmDeposit { at: Utc::now() };
    run(&app, order_id, command, &caller).await
}

#[utoipa::path(post, path = "/payments/{order_id}/cancel", tag = "payment", params(("order_id" = String, Path, description = "the order's id (a UUID)")), request_body = CancelPayment,
    description = "Cancels the payment (a refund when money was received); DepositOverdue expires it once due.",
    responses(
        (status = 201, description = "cancelled", body = Written<PaymentView>),
        (status = 200, description = "already cancelled", body = Written<PaymentView>),
        (status = 409, description = "deposit-confirmed (a customer's cancel after the deposit), not-due-yet"),
    ))]
async fn cancel(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    caller: Caller,
    Json(request): Json<CancelPayment>,
) -> Result<Response, ApiError> {
    // The customer cancels through the order service, which asks here on their behalf.
    caller.must_be(&[ActorKind::System], "cancel payments")?;
    let order_id = self::order_id(&order_id)?;
    let at = Utc::now();
    let command = match CancelReason::from(request.reason) {
        CancelReason::CustomerRequest => PaymentCommand::CancelByCustomer { order_id, at },
        CancelReason::DepositOverdue => PaymentCommand::Expire { now: at },
        reason @ (CancelReason::OutOfStock | CancelReason::DeliveryFailed) => {
            PaymentCommand::CancelForOrder {
                order_id,
                reason,
                at,
            }
        }
    };
    run(&app, order_id, command, &caller).await
}
