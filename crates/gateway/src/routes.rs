//! The gateway's routes: who may call each, and where it goes.

use servicekit::ProblemKind;
use std::net::SocketAddr;
use std::sync::Arc;

use api::inventory::{AddStock, ProductView, RegisterProduct, StockView};
use api::order::{OrderView, PlaceOrder};
use api::order_status::{OrderDetail, OrderSummary};
use api::payment::PaymentView;
use api::schema::OrderStatusName;
use api::Written;
use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use servicekit::{Problem, Stopping};
use tower::ServiceBuilder;
use uuid::Uuid;

mod operator;

use crate::accounts::{Claims, Role};
use crate::pool::{Failure, Pool};
use crate::Gateway;

type Shared = Arc<Gateway>;

const REQUEST_ID: &str = "x-request-id";
/// Longest request id taken from a client, in bytes; longer ones are replaced.
const REQUEST_ID_BYTES_MAX: usize = 128;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    login,
    me,
    products,
    register_product,
    add_stock,
    place,
    order,
    cancel,
    receipt,
    my_orders,
    confirm_deposit,
    seller_orders,
    order_live,
    my_live,
    status,
    operator::view,
    operator::retry
))]
struct ApiDoc;

/// The gateway's OpenAPI document: the shop's public API.
pub(crate) fn openapi() -> serde_json::Value {
    let mut doc =
        servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "gateway", false);
    doc["components"]["securitySchemes"] = serde_json::json!({
        "bearer": {"type": "http", "scheme": "bearer", "description": "a token from POST /api/login"}
    });
    servicekit::openapi::add_statuses(&mut doc, &[401, 403, 429, 502, 504]);
    doc
}

pub fn router(gateway: Shared, concurrent_requests_max: usize) -> Router {
    let retry_after_s = gateway.retry_after_s;
    // Past the limit a request is refused at once (load shed), never queued until it times out.
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(
            move |_: tower::BoxError| async move {
                Problem::unavailable("the shop is busy; retry shortly", retry_after_s)
            },
        ))
        .load_shed()
        .concurrency_limit(concurrent_requests_max.max(1));
    let api = Router::new()
        .route("/api/login", post(login))
        .route("/api/me", get(me))
        .route("/api/products", get(products).post(register_product))
        .route("/api/products/:id/stock", post(add_stock))
        .route("/api/orders", post(place))
        .route("/api/orders/:id", get(order))
        .route("/api/orders/:id/cancel", post(cancel))
        .route("/api/orders/:id/receipt", post(receipt))
        .route("/api/my/orders", get(my_orders))
        .route("/api/payments/:id/deposit", post(confirm_deposit))
        .route("/api/seller/orders", get(seller_orders))
        .route("/api/operator", get(operator::view))
        .route("/api/operator/orders/:id/retry", post(operator::retry))
        .route("/gateway/status", get(status))
        .layer(shed);
    // Live streams stay open: they have their own limit instead of taking request slots.
    let live = Router::new()
        .route("/api/orders/:id/live", get(order_live))
        .route("/api/my/orders/live", get(my_live));
    api.merge(live)
        .merge(web())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&gateway),
            rate_limit,
        ))
        .layer(middleware::from_fn(request_id))
        .with_state(gateway)
}

/// The web UI and the API's page and document: files built into the binary (no build step, no files to find at
/// run time).
fn web() -> Router<Shared> {
    let file = |content_type: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
        })
    };
    Router::new()
        .route(
            "/",
            file(
                "text/html; charset=utf-8",
                include_str!("../web/index.html"),
            ),
        )
        .route(
            "/app.js",
            file(
                "text/javascript; charset=utf-8",
                include_str!("../web/app.js"),
            ),
        )
        .route(
            "/style.css",
            file("text/css; charset=utf-8", include_str!("../web/style.css")),
        )
        .route(
            "/api/docs",
            file("text/html; charset=utf-8", include_str!("../web/api.html")),
        )
        .route("/api/openapi.json", {
            let doc = openapi();
            get(move || std::future::ready(axum::Json(doc)))
        })
}

/// Gives every request an id (the client's, if sane) and echoes it in the answer.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| {
            v.len() <= REQUEST_ID_BYTES_MAX
                && v.to_str()
                    .is_ok_and(|s| s.chars().all(|c| c.is_ascii_graphic()))
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("unknown"))
        });
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// Each client (its account, or its address when anonymous) gets a rate; past it, 429 at once.
/// What the request's token says, checked once per request: `Ok(None)` without a token,
/// `Err` for a token that is not valid.
#[derive(Clone)]
struct Checked(Result<Option<Claims>, ()>);

async fn rate_limit(State(gateway): State<Shared>, mut request: Request, next: Next) -> Response {
    let checked = match bearer(request.headers()) {
        _ if !request.headers().contains_key(header::AUTHORIZATION) => Ok(None),
        Some(token) => gateway.accounts.check(token).map(Some).ok_or(()),
        None => Err(()),
    };
    let account = checked
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(|claims| claims.actor().to_string());
    request.extensions_mut().insert(Checked(checked));
    let key = account.unwrap_or_else(|| client_address(&request, gateway.trusted_proxies));
    if gateway.rate.check_key(&key).is_err() {
        let mut problem = Problem::of(
            ProblemKind::RateLimited,
            "this client is over its request rate; retry shortly",
        );
        problem.retry_after_s = Some(gateway.retry_after_s);
        return problem.into_response();
    }
    next.run(request).await
}

/// The anonymous client's address: the peer's, or behind `trusted_proxies` proxies (an
/// Ingress, a load balancer) the address the outermost of them saw, which is that many entries
/// from the end of `X-Forwarded-For` (entries before it are the client's own say, not trusted).
fn client_address(request: &Request, trusted_proxies: usize) -> String {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_string(), |c| c.0.ip().to_string());
    if trusted_proxies == 0 {
        return peer;
    }
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(trusted_proxies)
        .and_then(|at| forwarded[at].parse::<std::net::IpAddr>().ok())
        .map_or(peer, |address| address.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Who calls: `None` when anonymous. A token that is present but not valid is refused.
struct Caller(Option<Claims>);

#[axum::async_trait]
impl FromRequestParts<Shared> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _gateway: &Shared) -> Result<Self, Problem> {
        // The rate limiter, in front of every route, checked the token already.
        match parts.extensions.get::<Checked>() {
            Some(Checked(Ok(claims))) => Ok(Caller(claims.clone())),
            _ => Err(unauthorized(
                "the token is not valid (malformed, expired or not ours); log in again",
            )),
        }
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::of(ProblemKind::Unauthorized, detail)
}

impl Caller {
    fn any(&self) -> Result<&Claims, Problem> {
        self.0
            .as_ref()
            .ok_or_else(|| unauthorized("this needs a token: POST /api/login"))
    }

    fn must_be(&self, role: Role) -> Result<&Claims, Problem> {
        let claims = self.any()?;
        if claims.role == role {
            Ok(claims)
        } else {
            Err(Problem::forbidden(match role {
                Role::Seller => "only the seller may do this",
                Role::Customer => "only a customer may do this",
            }))
        }
    }
}

/// What a forwarded request carries of the one that came in: its request id, and this
/// gateway's span of its trace (`traceparent`, as `servicekit::serve` set it).
struct Hop {
    request_id: HeaderValue,
    trace: Option<HeaderValue>,
}

impl Hop {
    fn of(headers: &HeaderMap) -> Hop {
        Hop {
            request_id: headers
                .get(REQUEST_ID)
                .cloned()
                .unwrap_or(HeaderValue::from_static("unknown")),
            trace: headers.get(servicekit::TRACEPARENT_HEADER).cloned(),
        }
    }
}

/// An id in a path: a UUID, or the thing does not exist (nothing is forwarded).
fn id(text: &str, what: &'static str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text).map_err(|_| Problem::not_found(format!("no such {what}")))
}

/// A command's body: nothing, or JSON that parses (anything else is refused here, not
/// forwarded).
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<Bytes>, Problem> {
    let body = body.map_err(servicekit::body_rejected)?;
    if body.is_empty() {
        return Ok(None);
    }
    servicekit::parse_json::<serde_json::Value>(servicekit::declares_json(headers), &body)?;
    Ok(Some(body))
}

/// One request to forward.
struct Forward<'a> {
    pool: &'a Pool,
    method: Method,
    path: String,
    caller: Option<&'a Claims>,
    body: Option<Bytes>,
    hop: Hop,
}

impl Forward<'_> {
    async fn send(self, gateway: &Gateway, live: bool) -> Result<reqwest::Response, Problem> {
        let retry_safe = retry_safe(&self.method, &self.path, self.body.as_deref());
        let pool = self.pool;
        pool.send(self.outgoing(gateway, live), retry_safe)
            .await
            .map_err(|failure| refused(gateway, failure))
    }

    /// The request sent to every replica of the pool: each replica's base URL and answer.
    async fn send_to_each(
        self,
        gateway: &Gateway,
    ) -> Vec<(String, Result<reqwest::Response, Problem>)> {
        let pool = self.pool;
        let answers = pool.send_to_each(self.outgoing(gateway, false)).await;
        answers
            .into_iter()
            .map(|(replica, answer)| (replica, answer.map_err(|failure| refused(gateway, failure))))
            .collect()
    }

    /// The request as it goes upstream: the caller's identity signed, the hop's ids passed on.
    fn outgoing(self, gateway: &Gateway, live: bool) -> crate::pool::Outgoing {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(REQUEST_ID, self.hop.request_id);
        if let Some(trace) = self.hop.trace {
            headers.insert(servicekit::TRACEPARENT_HEADER, trace);
        }
        // Anonymous reads go as the gateway itself: services answer only signed identities.
        let actor = self
            .caller
            .map_or(servicekit::Actor::system("gateway"), |caller| {
                caller.actor()
            })
            .to_string();
        let proof = gateway.identity.prove(&actor);
        if let (Ok(actor), Ok(proof)) =
            (HeaderValue::from_str(&actor), HeaderValue::from_str(&proof))
        {
            headers.insert(servicekit::ACTOR_HEADER, actor);
            headers.insert(servicekit::PROOF_HEADER, proof);
        }
        if self.body.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        crate::pool::Outgoing {
            method: self.method,
            path_and_query: self.path,
            headers,
            body: self.body,
            live,
        }
    }

    /// Forwards and hands the answer back as it is.
    async fn relay(self, gateway: &Gateway) -> Result<Response, Problem> {
        Ok(pass_on(self.send(gateway, false).await?))
    }
}

/// Whether a request may be sent twice: a read, a command on one order (cancel, receipt,
/// deposit: a repeat answers as things stand), or a command carrying its idempotency key (an
/// order's or product's id, a stock change's id).
fn retry_safe(method: &Method, path: &str, body: Option<&[u8]>) -> bool {
    if method == Method::GET {
        return true;
    }
    if ["/cancel", "/receipt", "/deposit"]
        .iter()
        .any(|command| path.ends_with(command))
    {
        return true;
    }
    let key = match path {
        "/orders" => "orderId",
        "/products" => "productId",
        _ if path.ends_with("/stock") => "changeId",
        _ => return false,
    };
    body.and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
        .is_some_and(|body| !body[key].is_null())
}

/// Forwards a request as `caller` and hands the answer back as it is.
async fn relay(
    gateway: &Gateway,
    pool: &Pool,
    (method, path): (Method, String),
    caller: Option<&Claims>,
    body: Option<Bytes>,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    Forward {
        pool,
        method,
        path,
        caller,
        body,
        hop: Hop::of(headers),
    }
    .relay(gateway)
    .await
}

fn refused(gateway: &Gateway, failure: Failure) -> Problem {
    match failure {
        Failure::BreakerOpen(_) | Failure::NoReplica(_) => {
            Problem::unavailable(failure.to_string(), gateway.retry_after_s)
        }
        Failure::Timeout(_) => Problem::of(ProblemKind::UpstreamTimeout, failure.to_string()),
        Failure::Failed(..) => {
            tracing::warn!(%failure, "upstream failed");
            Problem::of(
                ProblemKind::UpstreamFailed,
                "a service failed; it is safe to retry",
            )
        }
    }
}

/// The upstream's answer, streamed through, with the headers a client needs.
fn pass_on(upstream: reqwest::Response) -> Response {
    let (status, headers) = head_of(&upstream);
    let body = Body::from_stream(upstream.bytes_stream());
    (status, headers, body).into_response()
}

/// The upstream answer's status and the headers a client needs from it.
fn head_of(upstream: &reqwest::Response) -> (StatusCode, HeaderMap) {
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in [
        header::CONTENT_TYPE,
        header::RETRY_AFTER,
        header::CACHE_CONTROL,
    ] {
        if let Some(value) = upstream.headers().get(name.as_str()) {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.insert(name, value);
            }
        }
    }
    (status, headers)
}

/// Who the token is for.
#[derive(Serialize, utoipa::ToSchema)]
struct Me {
    name: String,
    role: Role,
}

/// A login's answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    /// For `Authorization: Bearer`.
    token: String,
    name: String,
    role: Role,
    /// Seconds since the epoch.
    expires_at: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct GatewayStatus {
    breakers_open: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

#[utoipa::path(post, path = "/api/login", tag = "account", request_body = Login,
    description = "Anyone logs in with a name and password; the token goes in `Authorization: Bearer`.",
    security(()),
    responses((status = 200, description = "a token for the account", body = LoginAnswer), (status = 401, description = "unauthorized: wrong name or password")))]
async fn login(
    State(gateway): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = json_body(&headers, body)?
        .ok_or_else(|| Problem::invalid("name", "name and password are required"))?;
    let login: Login = servicekit::parse_json(true, &body)?;
    // Hash checks are deliberately slow and large: a bounded number at once, off the async
    // threads.
    let permit = tokio::time::timeout(
        gateway.password_check_wait,
        Arc::clone(&gateway.password_checks).acquire_owned(),
    )
    .await;
    let Ok(Ok(permit)) = permit else {
        return Err(Problem::unavailable(
            "too many logins at once; retry shortly",
            gateway.retry_after_s,
        ));
    };
    let checked = {
        let gateway = Arc::clone(&gateway);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let account = gateway
                .accounts
                .verify(&login.name, &login.password)?
                .clone();
            let issued = gateway.accounts.issue(&account);
            Some((account, issued))
        })
        .await
        .map_err(|e| Problem::internal(&e))?
    };
    let Some((account, issued)) = checked else {
        return Err(unauthorized("wrong name or password"));
    };
    let (token, expires) = issued.map_err(|e| Problem::internal(&e))?;
    let answer = LoginAnswer {
        token,
        name: account.name,
        role: account.role,
        expires_at: expires,
    };
    Ok(axum::Json(answer).into_response())
}

/// Which upstreams' breakers are open (the gateway fails fast for them).
#[utoipa::path(get, path = "/gateway/status", tag = "operations",
    security(()),
    responses((status = 200, description = "which upstreams' breakers are open", body = GatewayStatus)))]
async fn status(State(gateway): State<Shared>) -> Response {
    let open: Vec<&str> = [
        &gateway.order,
        &gateway.payment,
        &gateway.inventory,
        &gateway.order_status,
    ]
    .into_iter()
    .filter(|pool| !pool.is_call_permitted())
    .map(|pool| pool.name)
    .collect();
    axum::Json(GatewayStatus {
        breakers_open: open.into_iter().map(str::to_string).collect(),
    })
    .into_response()
}

#[utoipa::path(get, path = "/api/me", tag = "account",
    security(("bearer" = [])),
    responses((status = 200, description = "who the token is for", body = Me)))]
async fn me(caller: Caller) -> Result<Response, Problem> {
    let claims = caller.any()?;
    let me = Me {
        name: claims.sub.clone(),
        role: claims.role,
    };
    Ok(axum::Json(me).into_response())
}

#[utoipa::path(get, path = "/api/products", tag = "catalogue",
    description = "Anyone sees the catalogue.",
    security(()),
    responses((status = 200, description = "the catalogue", body = Vec<ProductView>)))]
async fn products(
    State(gateway): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    relay(
        &gateway,
        &gateway.inventory,
        (Method::GET, "/products".to_string()),
        caller.0.as_ref(),
        None,
        &headers,
    )
    .await
}

#[utoipa::path(post, path = "/api/products", tag = "catalogue", request_body = RegisterProduct,
    description = "Seller.",
    security(("bearer" = [])),
    responses((status = 201, description = "registered", body = Written<StockView>), (status = 200, description = "already registered so", body = Written<StockView>), (status = 409, description = "already-registered")))]
async fn register_product(
    State(gateway): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let seller = caller.must_be(Role::Seller)?;
    relay(
        &gateway,
        &gateway.inventory,
        (Method::POST, "/products".to_string()),
        Some(seller),
        json_body(&headers, body)?,
        &headers,
    )
    .await
}

#[utoipa::path(post, path = "/api/products/{id}/stock", tag = "catalogue", params(("id" = String, Path, description = "the product's id (a UUID)")), request_body = AddStock,
    description = "Seller.",
    security(("bearer" = [])),
    responses((status = 201, description = "added", body = Written<StockView>), (status = 200, description = "this change id was applied already", body = Written<StockView>)))]
async fn add_stock(
    State(gateway): State<Shared>,
    caller: Caller,
    Path(product): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let seller = caller.must_be(Role::Seller)?;
    let product = id(&product, "product")?;
    relay(
        &gateway,
        &gateway.inventory,
        (Method::POST, format!("/products/{product}/stock")),
        Some(seller),
        json_body(&headers, body)?,
        &headers,
    )
    .await
}

#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = PlaceOrder,
    description = "Customer.",
    security(("bearer" = [])),
    responses((status = 201, description = "placed", body = Written<OrderView>), (status = 200, description = "already placed so", body = Written<OrderView>), (status = 409, description = "already-placed")))]
async fn place(
    State(gateway): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let customer = caller.must_be(Role::Customer)?;
    relay(
        &gateway,
        &gateway.order,
        (Method::POST, "/orders".to_string()),
        Some(customer),
        json_body(&headers, body)?,
        &headers,
    )
    .await
}

/// A customer's command on their order: the order service answers 404 for another's.
async fn order_command(
    gateway: &Gateway,
    caller: &Caller,
    order: &str,
    command: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let customer = caller.must_be(Role::Customer)?;
    let order = id(order, "order")?;
    Forward {
        pool: &gateway.order,
        method: Method::POST,
        path: format!("/orders/{order}/{command}"),
        caller: Some(customer),
        body: json_body(headers, body)?,
        hop: Hop::of(headers),
    }
    .relay(gateway)
    .await
}

#[utoipa::path(post, path = "/api/orders/{id}/cancel", tag = "orders", params(("id" = String, Path, description = "the order's id (a UUID)")),
    description = "The order's customer, until the seller confirmed the deposit.",
    security(("bearer" = [])),
    responses((status = 201, description = "cancelled", body = Written<OrderView>), (status = 200, description = "already cancelled", body = Written<OrderView>), (status = 409, description = "deposit-confirmed, already-shipped, order-closed, cancel-refused")))]
async fn cancel(
    State(gateway): State<Shared>,
    caller: Caller,
    Path(order): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    order_command(&gateway, &caller, &order, "cancel", &headers, body).await
}

#[utoipa::path(post, path = "/api/orders/{id}/receipt", tag = "orders", params(("id" = String, Path, description = "the order's id (a UUID)")),
    description = "The order's customer, once it is Shipping.",
    security(("bearer" = [])),
    responses((status = 201, description = "closed", body = Written<OrderView>), (status = 200, description = "already closed", body = Written<OrderView>), (status = 409, description = "not-shipped-yet, order-cancelled")))]
async fn receipt(
    State(gateway): State<Shared>,
    caller: Caller,
    Path(order): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    order_command(&gateway, &caller, &order, "receipt", &headers, body).await
}

/// The order from the read model, if the caller may see it: the seller sees every order, a
/// customer only theirs (another's is answered as unknown).
async fn visible_order(
    gateway: &Gateway,
    caller: &Caller,
    order: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let claims = caller.any()?;
    let order = id(order, "order")?;
    let path = match query {
        Some(q) => format!("/orders/{order}?{q}"),
        None => format!("/orders/{order}"),
    };
    let upstream = Forward {
        pool: &gateway.order_status,
        method: Method::GET,
        path,
        caller: Some(claims),
        body: None,
        hop: Hop::of(headers),
    }
    .send(gateway, false)
    .await?;
    let (status, headers) = head_of(&upstream);
    let body = upstream
        .bytes()
        .await
        .map_err(|e| refused(gateway, Failure::Failed("order-status", e.to_string())))?;
    if status == StatusCode::OK && claims.role == Role::Customer {
        let order: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if order["customerId"] != claims.sub.as_str() {
            return Err(Problem::not_found("no such order"));
        }
    }
    Ok((status, headers, body).into_response())
}

#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders", params(("id" = String, Path, description = "the order's id (a UUID)"), ("atLeast" = Option<u64>, Query, description = "a command's position: waits until the read model shows it (at most 2 s, then 503 + Retry-After)")),
    description = "The order's customer, or the seller.",
    security(("bearer" = [])),
    responses((status = 200, description = "the order with its timeline", body = OrderDetail)))]
async fn order(
    State(gateway): State<Shared>,
    caller: Caller,
    Path(order): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    visible_order(&gateway, &caller, &order, uri.query(), &headers).await
}

#[utoipa::path(get, path = "/api/my/orders", tag = "orders", params(("atLeast" = Option<u64>, Query, description = "a command's position: waits until the read model shows it (at most 2 s, then 503 + Retry-After)")),
    description = "Customer.",
    security(("bearer" = [])),
    responses((status = 200, description = "the customer's orders, newest first (at most 500)", body = Vec<OrderSummary>)))]
async fn my_orders(
    State(gateway): State<Shared>,
    caller: Caller,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let customer = caller.must_be(Role::Customer)?;
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    relay(
        &gateway,
        &gateway.order_status,
        (
            Method::GET,
            format!("/customers/{}/orders{query}", customer.sub),
        ),
        Some(customer),
        None,
        &headers,
    )
    .await
}

#[utoipa::path(post, path = "/api/payments/{id}/deposit", tag = "payments", params(("id" = String, Path, description = "the order's id (a UUID)")),
    description = "Seller.",
    security(("bearer" = [])),
    responses((status = 201, description = "confirmed", body = Written<PaymentView>), (status = 200, description = "already confirmed", body = Written<PaymentView>), (status = 409, description = "payment-cancelled")))]
async fn confirm_deposit(
    State(gateway): State<Shared>,
    caller: Caller,
    Path(order): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let seller = caller.must_be(Role::Seller)?;
    let order = id(&order, "order")?;
    relay(
        &gateway,
        &gateway.payment,
        (Method::POST, format!("/payments/{order}/deposit")),
        Some(seller),
        json_body(&headers, body)?,
        &headers,
    )
    .await
}

#[utoipa::path(get, path = "/api/seller/orders", tag = "orders", params(("status" = OrderStatusName, Query, description = "the queue"), ("atLeast" = Option<u64>, Query, description = "a command's position: waits until the read model shows it (at most 2 s, then 503 + Retry-After)")),
    description = "Seller.",
    security(("bearer" = [])),
    responses((status = 200, description = "orders in that status (at most 500)", body = Vec<OrderSummary>)))]
async fn seller_orders(
    State(gateway): State<Shared>,
    caller: Caller,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let seller = caller.must_be(Role::Seller)?;
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    relay(
        &gateway,
        &gateway.order_status,
        (Method::GET, format!("/seller/orders{query}")),
        Some(seller),
        None,
        &headers,
    )
    .await
}

/// Opens a live stream if a slot is free (503 at once otherwise); the slot is held as long as
/// the stream is. When the gateway starts stopping, a `reconnect` event ends it: the client
/// connects again, to another gateway replica.
async fn live_stream(
    gateway: &Gateway,
    stopping: Stopping,
    claims: &Claims,
    path: String,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let permit = Arc::clone(&gateway.live_streams)
        .try_acquire_owned()
        .map_err(|_| {
            Problem::unavailable(
                "too many live screens are open; retry shortly",
                gateway.retry_after_s,
            )
        })?;
    let upstream = Forward {
        pool: &gateway.order_status,
        method: Method::GET,
        path,
        caller: Some(claims),
        body: None,
        hop: Hop::of(headers),
    }
    .send(gateway, true)
    .await?;
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let reconnect = futures::stream::once(async {
        Ok::<_, reqwest::Error>(Bytes::from_static(
            b"event: reconnect\nretry: 500\ndata: {}\n\n",
        ))
    });
    let stream = upstream
        .bytes_stream()
        .take_until(stopping.wait())
        .chain(reconnect)
        .map(move |chunk| {
            let _held = &permit;
            chunk
        });
    let mut response = (status, Body::from_stream(stream)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[utoipa::path(get, path = "/api/orders/{id}/live", tag = "orders", params(("id" = String, Path, description = "the order's id (a UUID)")),
    description = "The order's customer, or the seller: the order as it stands, then each status it enters.",
    security(("bearer" = [])),
    responses((status = 200, description = "server-sent events: `order` (data: the order's row), `reload`, `reconnect`", content_type = "text/event-stream", body = String)))]
async fn order_live(
    State(gateway): State<Shared>,
    Extension(stopping): Extension<Stopping>,
    caller: Caller,
    Path(order): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let seen = visible_order(&gateway, &caller, &order, None, &headers).await?;
    if seen.status() != StatusCode::OK {
        return Err(Problem::not_found("no such order"));
    }
    let claims = caller.any()?;
    let path = format!("/orders/{order}/live");
    live_stream(&gateway, stopping, claims, path, &headers).await
}

#[utoipa::path(get, path = "/api/my/orders/live", tag = "orders",
    description = "Customer: their orders as they stand, then each status one enters.",
    security(("bearer" = [])),
    responses((status = 200, description = "server-sent events: `order` (data: the order's row), `reload`, `reconnect`", content_type = "text/event-stream", body = String)))]
async fn my_live(
    State(gateway): State<Shared>,
    Extension(stopping): Extension<Stopping>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let customer = caller.must_be(Role::Customer)?;
    let path = format!("/customers/{}/live", customer.sub);
    live_stream(&gateway, stopping, customer, path, &headers).await
}
