//! The inventory service: registers products, adds stock, lists the catalogue, and takes or
//! gives back stock for an order (the saga's synchronous stock call).
//!
//! It owns the `product-{productId}` and `reservation-{orderId}` streams. Stock decisions are
//! the Product aggregate's: a decrease is appended at the stream's expected revision, so racing
//! orders never oversell; what each order holds is its reservation's (`stock`), so a take or a
//! give-back is done once per order however long the product's history.
//!
//! It must not: know about orders beyond their ids, or call other services.

use api::inventory::{AddStock, ProductView, RegisterProduct, StockForOrder, StockView};
use api::Written;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use domain::catalogue::CatalogueEntry;
use domain::product::{Product, ProductCommand, ProductError, ProductEvent, ProductState};
use domain::{Money, OrderId, ProductId, ProductName, Quantity, ValueError};
use eventlog::catalogue::CatalogueView;
use eventlog::{ActorKind, EventLog, Executed};
use servicekit::ProblemKind;
use servicekit::{field, ApiError, Caller, Json, Problem, Readiness, Running, StartError};
use std::sync::Arc;
use stock::{Busy, ProductTurns, Refusal, Requested};

mod stock;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    /// The event store's connection string.
    pub store_url: String,
    /// Verifies callers' signed identities (the secret the gateway and services share).
    pub identity: servicekit::IdentityKey,
}

#[derive(Clone)]
struct AppState {
    log: EventLog,
    catalogue: CatalogueView,
    turns: Arc<ProductTurns>,
}

/// Starts the service.
pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let store = log.clone();
    let (catalogue, follower) = CatalogueView::follow(&log);
    let readiness = Readiness::when({
        let catalogue = catalogue.clone();
        move || catalogue.caught_up()
    });
    let routes = Router::new()
        .route("/products", post(register).get(list))
        .route("/products/:product_id", get(one))
        .route("/products/:product_id/stock", post(add_stock))
        .route("/products/:product_id/decrease", post(decrease))
        .route("/products/:product_id/increase", post(increase))
        .with_state(AppState {
            log,
            catalogue,
            turns: Arc::default(),
        });
    Ok(servicekit::serve(
        "inventory",
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
#[openapi(paths(register, list, one, add_stock, decrease, increase))]
struct ApiDoc;

/// The inventory service's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "inventory", true)
}

use stock::product_stream as stream;

/// The product's refusals as answers.
fn refusal(e: ProductError) -> Problem {
    let detail = e.to_string();
    match e {
        ProductError::NotRegistered => Problem::not_found(detail),
        ProductError::AlreadyRegisteredDifferently => {
            Problem::of(ProblemKind::AlreadyRegistered, detail)
        }
        ProductError::OutOfStock { .. } => Problem::of(ProblemKind::OutOfStock, detail),
        ProductError::StockFull => Problem::invalid("quantity", detail),
        ProductError::AlreadyGivenBack => Problem::of(ProblemKind::AlreadyGivenBack, detail),
    }
}

/// A stock move's refusals as answers.
fn move_refusal(e: Refusal) -> Problem {
    match e {
        Refusal::Product(e) => refusal(e),
        Refusal::Reservation(e) => Problem::invalid("orderId", e),
    }
}

fn product_id(text: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(text).map_err(|e| Problem::not_found(e.to_string()).into())
}

fn product_view(e: &CatalogueEntry) -> ProductView {
    ProductView {
        product_id: e.product_id,
        name: e.name.as_str().to_string(),
        price: e.price.as_cents(),
        stock: e.stock,
    }
}

#[utoipa::path(post, path = "/products", tag = "inventory", request_body = RegisterProduct,
    description = "The seller registers a product, with its initial stock.",
    responses(
        (status = 201, description = "registered", body = Written<StockView>),
        (status = 200, description = "already registered so", body = Written<StockView>),
        (status = 409, description = "already-registered with other details"),
    ))]
async fn register(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<RegisterProduct>,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::Seller], "register products")?;
    let product_id = match &request.product_id {
        Some(text) => field("productId", ProductId::parse(text))?,
        None => ProductId::new(),
    };
    let command = ProductCommand::Register {
        product_id,
        name: field("name", ProductName::parse(&request.name))?,
        price: field("price", Money::cents(request.price))?,
        initial_stock: field("stock", Quantity::parse_initial_stock(request.stock))?,
        at: Utc::now(),
    };
    let executed = app
        .log
        .execute::<Product>(
            &stream(product_id),
            command,
            &caller.metadata(product_id.as_uuid()),
        )
        .await
        .map_err(|e| ApiError::from_execute(e, refusal))?;
    // The stock as it stands: a repeated registration adds none.
    Ok(stock_answer(product_id, &executed))
}

#[utoipa::path(get, path = "/products", tag = "inventory",
    responses((status = 200, description = "the catalogue", body = Vec<ProductView>)))]
async fn list(State(app): State<AppState>) -> axum::Json<Vec<ProductView>> {
    axum::Json(
        app.catalogue
            .read(|c| c.products().map(product_view).collect()),
    )
}

#[utoipa::path(get, path = "/products/{product_id}", tag = "inventory", params(("product_id" = String, Path, description = "the product's id (a UUID)")),
    responses((status = 200, description = "the product", body = ProductView)))]
async fn one(
    State(app): State<AppState>,
    Path(product_id): Path<String>,
) -> Result<axum::Json<ProductView>, ApiError> {
    let product_id = self::product_id(&product_id)?;
    let loaded = app.log.load::<Product>(&stream(product_id)).await?;
    match loaded.state {
        ProductState::NotRegistered => Err(refusal(ProductError::NotRegistered).into()),
        ProductState::Registered(r) => Ok(axum::Json(ProductView {
            product_id,
            name: r.name.as_str().to_string(),
            price: r.price.as_cents(),
            stock: r.stock,
        })),
    }
}

#[utoipa::path(post, path = "/products/{product_id}/stock", tag = "inventory", params(("product_id" = String, Path, description = "the product's id (a UUID)")), request_body = AddStock,
    responses(
        (status = 201, description = "added", body = Written<StockView>),
        (status = 200, description = "this change id was applied already", body = Written<StockView>),
    ))]
async fn add_stock(
    State(app): State<AppState>,
    Path(product_id): Path<String>,
    caller: Caller,
    Json(request): Json<AddStock>,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::Seller], "add stock")?;
    let product_id = self::product_id(&product_id)?;
    let change_id = match &request.change_id {
        Some(text) => Some(
            uuid::Uuid::parse_str(text)
                .map_err(|_| Problem::invalid_field("changeId", &ValueError::Id(text.clone())))?,
        ),
        None => None,
    };
    let command = ProductCommand::AddStock {
        quantity: field("quantity", Quantity::parse_stock(request.quantity))?,
        change_id,
        at: Utc::now(),
    };
    change(&app, product_id, command, &caller, product_id.as_uuid()).await
}

#[utoipa::path(post, path = "/products/{product_id}/decrease", tag = "inventory", params(("product_id" = String, Path, description = "the product's id (a UUID)")), request_body = StockForOrder,
    description = "The saga takes an order's stock: at most once per order, never below zero.",
    responses(
        (status = 201, description = "taken", body = Written<StockView>),
        (status = 200, description = "already taken for this order", body = Written<StockView>),
        (status = 409, description = "out-of-stock"),
    ))]
async fn decrease(
    State(app): State<AppState>,
    Path(product_id): Path<String>,
    caller: Caller,
    Json(request): Json<StockForOrder>,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "take stock for an order")?;
    let product_id = self::product_id(&product_id)?;
    let order_id = field("orderId", OrderId::parse(&request.order_id))?;
    let quantity = request
        .quantity
        .ok_or_else(|| Problem::invalid("quantity", "is required"))?;
    let requested = Requested::Take(field("quantity", Quantity::parse(quantity))?);
    move_for_order(&app, product_id, order_id, requested, &caller).await
}

#[utoipa::path(post, path = "/products/{product_id}/increase", tag = "inventory", params(("product_id" = String, Path, description = "the product's id (a UUID)")), request_body = StockForOrder,
    description = "The saga gives an order's stock back (a compensation): at most once.",
    responses(
        (status = 201, description = "given back", body = Written<StockView>),
        (status = 200, description = "nothing was taken for this order", body = Written<StockView>),
        (status = 409, description = "already-given-back"),
    ))]
async fn increase(
    State(app): State<AppState>,
    Path(product_id): Path<String>,
    caller: Caller,
    Json(request): Json<StockForOrder>,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "give stock back for an order")?;
    let product_id = self::product_id(&product_id)?;
    let order_id = field("orderId", OrderId::parse(&request.order_id))?;
    move_for_order(&app, product_id, order_id, Requested::GiveBack, &caller).await
}

/// Moves an order's stock and answers with the stock after it: 201 if it moved, 200 if it had
/// already.
async fn move_for_order(
    app: &AppState,
    product_id: ProductId,
    order_id: OrderId,
    requested: Requested,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let metadata = caller.metadata(order_id.as_uuid());
    let _turn = app.turns.take(product_id).await.map_err(busy)?;
    let executed = stock::move_for_order(&app.log, product_id, order_id, requested, &metadata)
        .await
        .map_err(|e| ApiError::from_execute(e, move_refusal))?;
    Ok(stock_answer(product_id, &executed))
}

/// Executes a stock command and answers with the stock after it: 201 if it changed, 200 if it
/// was already so.
async fn change(
    app: &AppState,
    product_id: ProductId,
    command: ProductCommand,
    caller: &Caller,
    correlation_id: uuid::Uuid,
) -> Result<Response, ApiError> {
    let stream = stream(product_id);
    let _turn = app.turns.take(product_id).await.map_err(busy)?;
    let executed = app
        .log
        .execute::<Product>(&stream, command, &caller.metadata(correlation_id))
        .await
        .map_err(|e| ApiError::from_execute(e, refusal))?;
    Ok(stock_answer(product_id, &executed))
}

fn busy(e: Busy) -> Problem {
    Problem::unavailable(e.to_string(), 1)
}

fn stock_answer(
    product_id: ProductId,
    executed: &Executed<ProductState, ProductEvent>,
) -> Response {
    let body = StockView {
        product_id,
        stock: stock_of(&executed.state),
        revision: executed.revision,
    };
    servicekit::answer(executed, body)
}

fn stock_of(state: &ProductState) -> u32 {
    match state {
        ProductState::Registered(r) => r.stock,
        ProductState::NotRegistered => 0,
    }
}
