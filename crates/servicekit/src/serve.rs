//! Serving a service's routes with what every service has: `/health/live`, `/health/ready`,
//! `/metrics` (Prometheus text), problem+json for unknown routes and methods, a body limit, and
//! a graceful stop: readiness goes 503 first and the service keeps serving for a drain notice
//! (so a gateway or a kubelet takes it out of rotation), long-lived answers are told to end,
//! then requests in flight finish within a bound.

use crate::ProblemKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use axum::extract::{rejection::RawPathParamsRejection, RawPathParams};
use axum::http::HeaderValue;
use tracing::Instrument;

use crate::{
    IdentityKey, Listen, Problem, TraceParent, ACTOR_HEADER, PROOF_HEADER, REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
};

/// The answer's header naming the request's trace id (32 hex digits), to find its spans and log
/// lines by.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Largest request body any service accepts, in bytes: commands are a few fields.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// Longest request target (path and query) any service accepts, in bytes; longer is 414.
pub const URI_BYTES_MAX: usize = 8 * 1024;
/// Most request headers any service accepts; more is 431. Below the HTTP layer's own limit of
/// 100 headers (and its 64 KiB target and 400 KiB head), past which it closes the request with
/// an empty 414 or 431 before any service code runs.
pub const HEADERS_MAX: usize = 64;
/// Largest sum of the request headers' names and values, in bytes; more is 431.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Longest wait for requests in flight when stopping, in milliseconds.
const DRAIN_MS_MAX: u64 = 5_000;
/// Longest drain notice a service may be given, in milliseconds.
pub const DRAIN_NOTICE_MS_MAX: u64 = 60_000;
/// How long the event store may not answer before a service that needs it says it is wedged
/// (liveness 503), in seconds: long enough to ride out a store's restart or failover, short
/// enough that a connection that never comes back is replaced by a restart.
pub const STORE_GONE_S_MAX: u64 = 60;
/// How long a follower of the process may be catching up without handing out anything before
/// the service says it is wedged, in seconds.
pub const FOLLOWER_STALL_S_MAX: u64 = 60;

/// Whether the service is stopping. Every handler can extract it (`Extension<Stopping>`); one
/// that holds a long-lived answer (server-sent events) ends it when the service starts stopping,
/// so the client reconnects, to another replica.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the service starts stopping (at once if it has).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Whether a service can do its work yet (e.g. its view caught up with the store).
#[derive(Clone)]
pub struct Readiness(Arc<dyn Fn() -> bool + Send + Sync>);

impl Readiness {
    pub fn always() -> Readiness {
        Readiness(Arc::new(|| true))
    }

    pub fn when(check: impl Fn() -> bool + Send + Sync + 'static) -> Readiness {
        Readiness(Arc::new(check))
    }

    pub fn is_ready(&self) -> bool {
        (self.0)()
    }
}

/// Lets through only requests whose `x-actor` carries a valid proof.
async fn identified(State(key): State<Arc<IdentityKey>>, request: Request, next: Next) -> Response {
    // In a block: a borrow of the request (its body is not Sync) must not live across the await.
    let proven = {
        let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
        match (header(ACTOR_HEADER), header(PROOF_HEADER)) {
            (Some(actor), Some(proof)) => key.verify(actor, proof),
            _ => false,
        }
    };
    if !proven {
        return Problem::of(
            ProblemKind::Unidentified,
            format!(
                "services answer only requests with a signed identity ({ACTOR_HEADER} and \
                 {PROOF_HEADER}), as the gateway sends them"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Refuses a request whose target or headers pass the limits, with a problem+json answer.
async fn within_limits(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > URI_BYTES_MAX {
        return Problem::of(
            ProblemKind::UriTooLong,
            format!("path and query are limited to {URI_BYTES_MAX} bytes, got {target}"),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > HEADERS_MAX || bytes > HEADER_BYTES_MAX {
        return Problem::of(ProblemKind::HeadersTooLarge, format!(
                "at most {HEADERS_MAX} headers of {HEADER_BYTES_MAX} bytes in all, got {} of {bytes}",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Runs every request in a span (service, method, route, request id, trace id, the order's id
/// when the path names one) as a span of the caller's trace (`traceparent`, or a new trace),
/// whose context replaces the header so handlers pass this span on; answers with the trace id
/// (`x-trace-id`); counts and times every answer by service, route and status.
async fn observe(
    State(service): State<&'static str>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Response {
    // The matched route, not the raw path: ids in paths would make the label set unbounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // In a block: a borrow of the request (its body is not Sync) must not live across the await.
    let (parent, request_id) = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let parent = header(TRACEPARENT_HEADER).and_then(TraceParent::parse);
        (parent, header(REQUEST_ID_HEADER).unwrap_or("").to_string())
    };
    let order_id = params
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "order_id")
                .map(|(_, value)| value.to_string())
        })
        .unwrap_or_default();
    // Health checks and scrapes arrive every second from every poller: counted, not traced.
    let routine = route.starts_with("/health/") || route == "/metrics";
    let span = if routine {
        tracing::Span::none()
    } else {
        tracing::info_span!(
        "request",
        service,
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        order_id = %order_id,
        )
    };
    let trace = crate::otel::continue_trace(&span, parent);
    span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
    if let Ok(value) = HeaderValue::from_str(&trace.to_string()) {
        request.headers_mut().insert(TRACEPARENT_HEADER, value);
    }
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&trace.trace_id_hex()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    let labels = [
        ("service", service.to_string()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("minimall_http_requests_total", &labels).increment(1);
    metrics::histogram!("minimall_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Once the service is stopping, every answer says `Connection: close`: clients leave their
/// kept-alive connections to it after their next request instead of finding them closed under
/// a request when it stops.
async fn close_when_stopping(
    Extension(stopping): Extension<Stopping>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if stopping.is_stopping() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    response
}

/// A service being served.
pub struct Running {
    name: &'static str,
    addr: SocketAddr,
    stopping: watch::Sender<bool>,
    drain_notice: Duration,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    workers: Vec<tokio::task::AbortHandle>,
    readiness: Readiness,
    /// Whether the store answers, for a service that needs it.
    store: Arc<std::sync::OnceLock<eventlog::StoreReach>>,
    /// The first worker that ended while it should have run on: liveness fails with its name.
    ended_worker: Arc<Mutex<Option<String>>>,
    /// Workers that finish their work themselves once the stop begins: waited for (at most
    /// `DRAIN_MS_MAX`) before the others are stopped.
    finishing: Vec<oneshot::Receiver<()>>,
}

impl Running {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What `/health/ready` says: able to work and not stopping.
    pub fn is_ready(&self) -> bool {
        !*self.stopping.borrow() && unready(&self.readiness, &self.store).is_none()
    }

    /// The service needs the store: a probe asks it every second; while it does not answer,
    /// readiness is 503, and once it has not answered for `STORE_GONE_S_MAX` liveness is too.
    pub fn needing_store(self, log: &eventlog::EventLog) -> Running {
        let (reach, probing) = log.probe();
        let _ = self.store.set(reach);
        self.with_worker(tokio::spawn(probing))
    }

    /// A background task of the service (a view follower, a saga worker), which runs as long
    /// as the service does: stopped with it. If it ends before (it returned or panicked), the
    /// service is wedged: `/health/live` answers 503 from then on, so whoever supervises it
    /// starts it again.
    pub fn with_worker(self, worker: JoinHandle<()>) -> Running {
        self.watched(worker, None)
    }

    /// A worker that watches `stopping()` and, once the stop begins, finishes what it holds
    /// (hands work over, stores its bookkeeping) and returns: `stop` waits for it, at most
    /// `DRAIN_MS_MAX`, before it stops the other workers.
    pub fn with_finishing_worker(mut self, worker: JoinHandle<()>) -> Running {
        let (finished, waited) = oneshot::channel();
        self.finishing.push(waited);
        self.watched(worker, Some(finished))
    }

    /// Resolves once the service begins to stop.
    pub fn stopping(&self) -> Stopping {
        Stopping(self.stopping.subscribe())
    }

    fn watched(mut self, worker: JoinHandle<()>, finished: Option<oneshot::Sender<()>>) -> Running {
        self.workers.push(worker.abort_handle());
        let ended = Arc::clone(&self.ended_worker);
        let service = self.name;
        let worker_number = self.workers.len();
        let stopping = self.stopping.subscribe();
        tokio::spawn(async move {
            let outcome = worker.await;
            if let Some(finished) = finished {
                let _ = finished.send(());
            }
            if outcome.as_ref().is_err_and(|e| e.is_cancelled()) || *stopping.borrow() {
                return;
            }
            let how = if outcome.is_err() {
                "panicked"
            } else {
                "returned"
            };
            tracing::error!(
                service,
                worker = worker_number,
                how,
                "a worker ended: liveness fails"
            );
            ended
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(format!("worker {worker_number} {how}"));
        });
        self
    }

    /// How long `stop` keeps serving after readiness went 503 (at most `DRAIN_NOTICE_MS_MAX`):
    /// long enough for whoever routes to it to notice. None by default.
    pub fn with_drain_notice(mut self, notice: Duration) -> Running {
        self.drain_notice = notice.min(Duration::from_millis(DRAIN_NOTICE_MS_MAX));
        self
    }

    /// Stops gracefully: readiness answers 503 and long-lived answers are told to end; the
    /// service keeps serving for the drain notice; then it stops taking requests, lets those in
    /// flight finish (at most `DRAIN_MS_MAX`), and stops the workers.
    pub async fn stop(mut self) {
        self.stopping.send_replace(true);
        tracing::info!(
            service = self.name,
            notice_ms = self.drain_notice.as_millis() as u64,
            "stopping: readiness is 503, draining"
        );
        tokio::time::sleep(self.drain_notice).await;
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let drain = Duration::from_millis(DRAIN_MS_MAX);
        if tokio::time::timeout(drain, &mut self.server).await.is_err() {
            tracing::warn!(
                service = self.name,
                "requests still in flight after the drain; cut"
            );
            self.server.abort();
        }
        for finishing in std::mem::take(&mut self.finishing) {
            if tokio::time::timeout(drain, finishing).await.is_err() {
                tracing::warn!(
                    service = self.name,
                    "a worker did not finish within the drain"
                );
            }
        }
        for worker in &self.workers {
            worker.abort();
        }
    }
}

/// Serves `routes` (plus health, readiness, metrics and its OpenAPI `document` at
/// `/openapi.json`, see [`crate::openapi::document`]) on `listen` (an address, where port 0
/// picks a free port, or a socket the service was handed).
/// With an `identity` key, every route but health and metrics needs a signed identity
/// (`x-actor` + `x-actor-proof`): what the gateway and the shop's services send.
pub async fn serve(
    name: &'static str,
    listen: Listen,
    routes: Router,
    readiness: Readiness,
    identity: Option<IdentityKey>,
    document: serde_json::Value,
) -> std::io::Result<Running> {
    let routes = match identity {
        Some(key) => routes.layer(middleware::from_fn_with_state(Arc::new(key), identified)),
        None => routes,
    };
    let (stopping, _) = watch::channel(false);
    crate::metered::recorder();
    let ended_worker: Arc<Mutex<Option<String>>> = Arc::default();
    let store: Arc<std::sync::OnceLock<eventlog::StoreReach>> = Arc::default();
    let app = routes
        .route(
            "/health/live",
            get({
                let ended = Arc::clone(&ended_worker);
                let store = Arc::clone(&store);
                move || async move {
                    let ended = ended.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    match ended
                        .or_else(|| store_gone(&store))
                        .or_else(follower_stalled)
                    {
                        None => (StatusCode::OK, "live").into_response(),
                        Some(worker) => Problem::of(
                            ProblemKind::Wedged,
                            format!("{worker}: restart the service"),
                        )
                        .into_response(),
                    }
                }
            }),
        )
        .route(
            "/health/ready",
            get({
                let readiness = readiness.clone();
                let store = Arc::clone(&store);
                move |Extension(stopping): Extension<Stopping>| async move {
                    if stopping.is_stopping() {
                        return Problem::unavailable("stopping", 1).into_response();
                    }
                    match unready(&readiness, &store) {
                        None => (StatusCode::OK, "ready").into_response(),
                        Some(why) => Problem::unavailable(why, 1).into_response(),
                    }
                }
            }),
        )
        .route("/metrics", get(|| async { crate::metered::render() }))
        .route(
            "/openapi.json",
            get(move || std::future::ready(axum::Json(document))),
        )
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::of(
                ProblemKind::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn(close_when_stopping))
        .layer(middleware::from_fn_with_state(name, observe))
        .layer(Extension(Stopping(stopping.subscribe())))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn(within_limits));
    let listener = listen.listener().await?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // The peer's address is known to handlers (the gateway's rate limit keys on it).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(service = name, error = %e, "server failed");
        }
    });
    tracing::info!(service = name, %addr, "listening");
    Ok(Running {
        name,
        addr,
        stopping,
        drain_notice: Duration::ZERO,
        shutdown: Some(shutdown),
        server,
        workers: Vec::new(),
        readiness,
        store,
        ended_worker,
        finishing: Vec::new(),
    })
}

/// Why the service cannot work yet, if it cannot.
fn unready(
    readiness: &Readiness,
    store: &std::sync::OnceLock<eventlog::StoreReach>,
) -> Option<&'static str> {
    if store.get().is_some_and(|store| !store.is_reachable()) {
        Some("the event store does not answer")
    } else if !readiness.is_ready() {
        Some("still catching up with the event store")
    } else {
        None
    }
}

/// Why the service is wedged on a follower, if one of the process's followers has been catching
/// up without progress too long.
fn follower_stalled() -> Option<String> {
    let limit = Duration::from_secs(FOLLOWER_STALL_S_MAX);
    let (name, still) = eventlog::stalled_followers(limit).into_iter().next()?;
    Some(format!(
        "follower {name} has made no progress catching up for {} s",
        still.as_secs()
    ))
}

/// Why the service is wedged on the store, if the store has been away too long.
fn store_gone(store: &std::sync::OnceLock<eventlog::StoreReach>) -> Option<String> {
    let away = store.get()?.unreachable_for()?;
    (away >= Duration::from_secs(STORE_GONE_S_MAX))
        .then(|| format!("the event store has not answered for {} s", away.as_secs()))
}
