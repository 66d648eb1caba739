//! The order-status read model: a projection worker follows the store and keeps,
//! in SQLite, every order's status, details and timeline, per customer and for the seller's
//! queues; a query API serves it, and can wait for a command's position (read-your-writes).
//!
//! It owns its database only; the checkpoint is stored in the same transaction as the rows it
//! changed. `view` is the pure rule; `store` the database; this module the worker and the API.
//!
//! It must not: write to the event store, call the command services, or join across services at
//! query time — everything it answers comes from its own tables.

pub mod store;
pub mod view;

use servicekit::ProblemKind;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use domain::{OrderId, OrderStatus};
use eventlog::{ActorKind, EventLog, Followed, LogPosition, Seen};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use servicekit::{ApiError, Caller, Problem, Query, Readiness, Running, StartError, Stopping};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::store::{OrderDetail, OrderSummary, Store, StoreError};
use crate::view::OrderRow;

/// The stream families the read model is made of.
pub const FOLLOWED_PREFIXES: [&str; 4] = ["order-", "payment-", "product-", "delivery-"];
/// Events written to the database in one transaction at most.
const BATCH_EVENTS_MAX: usize = 512;
/// Events read ahead of the database.
const FOLLOW_QUEUE_MAX: usize = 4_096;
/// Longest a query waits for the position it asked for, in milliseconds.
pub const READ_WAIT_MS_MAX: u64 = 2_000;
/// Pause before writing again after the database failed, in milliseconds.
const RETRY_MS: u64 = 500;
/// Changed orders kept for live listeners that are behind; one further behind is told to
/// reload.
const LIVE_CHANGES_MAX: usize = 1_024;
/// Seconds between keep-alive comments on a live stream.
const LIVE_KEEP_ALIVE_S: u64 = 15;
/// How soon a listener told to reconnect should, in milliseconds (the SSE `retry` field).
const LIVE_RECONNECT_MS: u64 = 500;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    pub store_url: String,
    /// The SQLite file of the read model.
    pub database: PathBuf,
    /// Verifies callers' signed identities (the secret the gateway and services share).
    pub identity: servicekit::IdentityKey,
}

struct Shared {
    log: EventLog,
    database: PathBuf,
    /// The database queries read and the projector writes; replaced by a rebuild.
    store: RwLock<Arc<Store>>,
    /// The position of the last event applied.
    applied: watch::Sender<Option<LogPosition>>,
    caught_up: AtomicBool,
    /// The last write to the database succeeded.
    writing: AtomicBool,
    /// Orders as they change, for live screens.
    changes: broadcast::Sender<Arc<OrderRow>>,
    /// The running or last rebuild.
    rebuild: Mutex<Option<RebuildProgress>>,
    swaps: mpsc::Sender<Swap>,
}

impl Shared {
    fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store.read().unwrap_or_else(|e| e.into_inner()))
    }
}

pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let event_store = log.clone();
    let database = |e: StoreError| StartError::Database(e.to_string());
    let store = Arc::new(Store::open(&settings.database).map_err(database)?);
    let checkpoint = store.checkpoint().map_err(database)?;
    let (swaps, swapped) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        log,
        database: settings.database,
        store: RwLock::new(store),
        applied: watch::Sender::new(checkpoint),
        caught_up: AtomicBool::new(false),
        writing: AtomicBool::new(true),
        changes: broadcast::Sender::new(LIVE_CHANGES_MAX),
        rebuild: Mutex::new(None),
        swaps,
    });
    let projector = tokio::spawn(project(Arc::clone(&shared), checkpoint, swapped));
    let readiness = Readiness::when({
        let shared = Arc::clone(&shared);
        move || shared.caught_up.load(Ordering::Acquire) && shared.writing.load(Ordering::Acquire)
    });
    let routes = Router::new()
        .route("/orders/:order_id", get(order))
        .route("/orders/:order_id/live", get(order_live))
        .route("/customers/:customer_id/orders", get(customer_orders))
        .route("/customers/:customer_id/live", get(customer_live))
        .route("/seller/orders", get(seller_orders))
        .route("/admin/rebuild", post(start_rebuild).get(rebuild_progress))
        .route("/status", get(status))
        .with_state(shared);
    Ok(servicekit::serve(
        "order-status",
        settings.listen,
        routes,
        readiness,
        Some(settings.identity.clone()),
        openapi(),
    )
    .await?
    .needing_store(&event_store)
    .with_worker(projector))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    order,
    customer_orders,
    seller_orders,
    order_live,
    customer_live,
    start_rebuild,
    rebuild_progress,
    status
))]
struct ApiDoc;

#[utoipa::path(get, path = "/status", tag = "order-status",
    description = "Where this replica stands: caught up, writing, the last event applied, its follower's lag.",
    responses((status = 200, description = "its status", body = api::order_status::ReadModelStatus)))]
async fn status(
    State(shared): State<Arc<Shared>>,
) -> axum::Json<api::order_status::ReadModelStatus> {
    let applied = *shared.applied.borrow();
    axum::Json(api::order_status::ReadModelStatus {
        caught_up: shared.caught_up.load(Ordering::Acquire),
        writing: shared.writing.load(Ordering::Acquire),
        applied: applied.map(|p| api::saga::Position {
            commit: p.commit,
            prepare: p.prepare,
        }),
        follower_lag_s: eventlog::seconds_stalled("order-status"),
        events_behind: eventlog::events_behind("order-status"),
    })
}

/// The read model's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "order-status", true)
}

/// The store's events for the read model, read ahead by a task that stops with the feed.
struct Feed {
    events: mpsc::Receiver<Followed>,
    /// Held only so that dropping the feed stops its follower.
    _follower: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Feed {
    fn start(log: &EventLog, after: Option<LogPosition>) -> Feed {
        let (sender, events) = mpsc::channel(FOLLOW_QUEUE_MAX);
        let mut follower = log.follow("order-status", &FOLLOWED_PREFIXES, after);
        let task = tokio::spawn(async move {
            loop {
                if sender.send(follower.next().await).await.is_err() {
                    return;
                }
            }
        });
        Feed {
            events,
            _follower: AbortOnDrop(task),
        }
    }

    /// The next batch: what is there after waiting for the first (at most `BATCH_EVENTS_MAX`),
    /// and whether the follower said it caught up. `None` if the feed ended.
    async fn next_batch(&mut self) -> Option<(Vec<Seen>, bool)> {
        let mut next = Some(self.events.recv().await?);
        let mut batch = Vec::new();
        let mut caught_up = false;
        while let Some(followed) = next.take() {
            match followed {
                Followed::Event(seen) => batch.push(*seen),
                Followed::CaughtUp => caught_up = true,
            }
            if batch.len() < BATCH_EVENTS_MAX {
                next = self.events.try_recv().ok();
            }
        }
        Some((batch, caught_up))
    }
}

/// Writes a batch with its checkpoint; the changed rows. While the database fails (a full
/// disk) it retries — an event may not be skipped — and `healthy` says so, which makes the
/// service report "not ready" until a write succeeds again.
async fn write(store: &Arc<Store>, batch: Vec<Seen>, healthy: &AtomicBool) -> Vec<OrderRow> {
    let batch = Arc::new(batch);
    loop {
        let (store, events) = (Arc::clone(store), Arc::clone(&batch));
        match tokio::task::spawn_blocking(move || store.apply(&events)).await {
            Ok(Ok(changed)) => {
                healthy.store(true, Ordering::Release);
                return changed;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the read model; retrying"),
            Err(e) => tracing::error!(error = %e, "the read model's writer failed; retrying"),
        }
        healthy.store(false, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
    }
}

/// A rebuilt database, caught up, and the feed that continues where it stopped.
struct Swap {
    sealed: PathBuf,
    checkpoint: Option<LogPosition>,
    feed: Feed,
}

/// The projector: applies the feed to the current database; swaps in a rebuilt one.
async fn project(shared: Arc<Shared>, after: Option<LogPosition>, mut swaps: mpsc::Receiver<Swap>) {
    let mut feed = Feed::start(&shared.log, after);
    loop {
        tokio::select! {
            batch = feed.next_batch() => {
                let Some((batch, caught_up)) = batch else { return };
                if let Some(last) = batch.last().map(|s| s.position) {
                    for row in write(&shared.store(), batch, &shared.writing).await {
                        // Nobody listening is fine.
                        let _ = shared.changes.send(Arc::new(row));
                    }
                    shared.applied.send_replace(Some(last));
                }
                if caught_up {
                    shared.caught_up.store(true, Ordering::Release);
                }
            }
            Some(swap) = swaps.recv() => {
                match swap_in(&shared, &swap.sealed).await {
                    Ok(()) => {
                        feed = swap.feed;
                        shared.applied.send_replace(swap.checkpoint);
                        finish_rebuild(&shared, None);
                        tracing::info!("read model rebuilt and swapped in");
                    }
                    Err(e) => finish_rebuild(&shared, Some(e.to_string())),
                }
            }
        }
    }
}

/// Replaces the live database file by the sealed rebuilt one, atomically (a rename), once the
/// queries in flight on the old one finished; queries wait on the swap for that long at most.
async fn swap_in(shared: &Shared, sealed: &std::path::Path) -> Result<(), StoreError> {
    let old = shared.store();
    // Queries hold the store for a moment each; wait for them to let go (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(READ_WAIT_MS_MAX);
    while Arc::strong_count(&old) > 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut current = shared.store.write().unwrap_or_else(|e| e.into_inner());
    std::fs::rename(sealed, &shared.database).map_err(|e| {
        StoreError::Corrupt(format!("cannot move {} into place: {e}", sealed.display()))
    })?;
    for suffix in ["-wal", "-shm"] {
        let mut stale = shared.database.clone().into_os_string();
        stale.push(suffix);
        let _ = std::fs::remove_file(stale);
    }
    *current = Arc::new(Store::open(&shared.database)?);
    drop(old);
    Ok(())
}

/// How a rebuild goes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RebuildProgress {
    started_at: chrono::DateTime<chrono::Utc>,
    /// The log's last position when the rebuild started: 100% is reaching it.
    target: Option<u64>,
    /// The position the rebuilt database has reached.
    reached: Option<u64>,
    events: u64,
    done: bool,
    error: Option<String>,
}

fn finish_rebuild(shared: &Shared, error: Option<String>) {
    if let Some(progress) = shared
        .rebuild
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        progress.done = true;
        progress.error = error;
    }
}

/// Starts rebuilding the read model from the whole log into a fresh database; queries keep
/// being served from the current one until the swap. 202 with the progress; 409 if one runs.
#[utoipa::path(post, path = "/admin/rebuild", tag = "admin",
    description = "Starts rebuilding the read model from the whole log; queries go on being answered meanwhile (system callers only).",
    responses(
        (status = 202, description = "started", body = RebuildProgress),
        (status = 409, description = "rebuild-running"),
    ))]
async fn start_rebuild(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.must_be(&[ActorKind::System], "rebuild the read model")?;
    let target = shared.log.last_position().await?;
    {
        let mut rebuild = shared.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        if rebuild.as_ref().is_some_and(|r| !r.done) {
            return Err(Problem::of(
                ProblemKind::RebuildRunning,
                "wait for it to finish (GET /admin/rebuild)",
            )
            .into());
        }
        *rebuild = Some(RebuildProgress {
            started_at: chrono::Utc::now(),
            target: target.map(|p| p.commit),
            reached: None,
            events: 0,
            done: false,
            error: None,
        });
    }
    tokio::spawn(rebuild(Arc::clone(&shared)));
    Ok((StatusCode::ACCEPTED, axum::Json(progress_of(&shared))).into_response())
}

#[utoipa::path(get, path = "/admin/rebuild", tag = "admin",
    responses((status = 200, description = "how the running or last rebuild goes", body = RebuildProgress)))]
async fn rebuild_progress(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    match progress_of(&shared) {
        Some(progress) => Ok(axum::Json(progress).into_response()),
        None => Err(Problem::not_found("no rebuild has run").into()),
    }
}

fn progress_of(shared: &Shared) -> Option<RebuildProgress> {
    shared
        .rebuild
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Replays the whole log into `<database>.rebuild` until caught up, then hands it to the
/// projector to swap in.
async fn rebuild(shared: Arc<Shared>) {
    let mut path = shared.database.clone().into_os_string();
    path.push(".rebuild");
    let path = PathBuf::from(path);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut stale = path.clone().into_os_string();
        stale.push(suffix);
        let _ = std::fs::remove_file(stale);
    }
    let store = match Store::open(&path) {
        Ok(store) => Arc::new(store),
        Err(e) => return finish_rebuild(&shared, Some(e.to_string())),
    };
    let mut feed = Feed::start(&shared.log, None);
    let mut checkpoint = None;
    loop {
        let Some((batch, caught_up)) = feed.next_batch().await else {
            return finish_rebuild(&shared, Some("the store's feed ended".to_string()));
        };
        let count = batch.len() as u64;
        if let Some(last) = batch.last().map(|s| s.position) {
            // The rebuild's own failures say nothing of the live database's health.
            write(&store, batch, &AtomicBool::new(true)).await;
            checkpoint = Some(last);
        }
        if let Some(progress) = shared
            .rebuild
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            progress.events += count;
            progress.reached = checkpoint.map(|p| p.commit);
        }
        if caught_up {
            break;
        }
    }
    let sealed = match Arc::into_inner(store).map(Store::seal) {
        Some(Ok(sealed)) => sealed,
        Some(Err(e)) => return finish_rebuild(&shared, Some(e.to_string())),
        None => {
            return finish_rebuild(
                &shared,
                Some("the rebuilt database is still in use".to_string()),
            )
        }
    };
    let swap = Swap {
        sealed,
        checkpoint,
        feed,
    };
    if shared.swaps.send(swap).await.is_err() {
        finish_rebuild(&shared, Some("the projector stopped".to_string()));
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    /// A log position a command returned: the answer reflects at least that event.
    at_least: Option<u64>,
}

/// Waits (at most `READ_WAIT_MS_MAX`) until the read model has applied `at_least`.
async fn caught_up_to(shared: &Shared, at_least: Option<u64>) -> Result<(), ApiError> {
    let Some(wanted) = at_least else {
        return Ok(());
    };
    let mut applied = shared.applied.subscribe();
    let reached = tokio::time::timeout(
        Duration::from_millis(READ_WAIT_MS_MAX),
        applied.wait_for(|p| p.is_some_and(|p| p.commit >= wanted)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    match reached {
        true => Ok(()),
        false => Err(Problem::unavailable(
            format!(
                "the read model has not reached position {wanted} within {READ_WAIT_MS_MAX} ms; retry"
            ),
            1,
        )
        .into()),
    }
}

/// Runs a database read off the async threads.
async fn read<T: Send + 'static>(
    shared: &Shared,
    query: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = shared.store();
    tokio::task::spawn_blocking(move || query(&store))
        .await
        .map_err(|e| ApiError::from(Problem::internal(&e)))?
        .map_err(|e| Problem::internal(&e).into())
}

#[utoipa::path(get, path = "/orders/{order_id}", tag = "order-status", params(("order_id" = String, Path, description = "the order's id (a UUID)"), ("atLeast" = Option<u64>, Query, description = "a log position a command returned: the answer reflects at least that event (waits up to 2 s, then 503 + Retry-After)")),
    responses((status = 200, description = "the order with its timeline", body = OrderDetail)))]
async fn order(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<axum::Json<OrderDetail>, ApiError> {
    let order_id = OrderId::parse(&order_id).map_err(|_| Problem::not_found("no such order"))?;
    caught_up_to(&shared, consistency.at_least).await?;
    read(&shared, move |store| store.order(order_id))
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found("no such order").into())
}

#[utoipa::path(get, path = "/customers/{customer_id}/orders", tag = "order-status", params(("customer_id" = String, Path, description = "the customer's account name"), ("atLeast" = Option<u64>, Query, description = "a log position a command returned: the answer reflects at least that event (waits up to 2 s, then 503 + Retry-After)")),
    responses((status = 200, description = "the customer's orders, newest first (at most 500)", body = Vec<OrderSummary>)))]
async fn customer_orders(
    State(shared): State<Arc<Shared>>,
    Path(customer_id): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<axum::Json<Vec<OrderSummary>>, ApiError> {
    caught_up_to(&shared, consistency.at_least).await?;
    read(&shared, move |store| store.customer_orders(&customer_id))
        .await
        .map(axum::Json)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueQuery {
    status: OrderStatus,
    at_least: Option<u64>,
}

#[utoipa::path(get, path = "/seller/orders", tag = "order-status",
    params(("status" = api::schema::OrderStatusName, Query, description = "the queue"), ("atLeast" = Option<u64>, Query, description = "a log position a command returned: the answer reflects at least that event (waits up to 2 s, then 503 + Retry-After)")),
    responses((status = 200, description = "orders in that status (at most 500)", body = Vec<OrderSummary>)))]
async fn seller_orders(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<QueueQuery>,
) -> Result<axum::Json<Vec<OrderSummary>>, ApiError> {
    caught_up_to(&shared, query.at_least).await?;
    read(&shared, move |store| store.orders_in(query.status))
        .await
        .map(axum::Json)
}

/// Live updates of one order: an `order` event with its row as it stands, then each time its
/// status changes.
#[utoipa::path(get, path = "/orders/{order_id}/live", tag = "order-status", params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    description = "The order as it stands, then each status it enters, once.",
    responses((status = 200, description = "server-sent events: `order` (data: the order's row), `reload`, `reconnect`", content_type = "text/event-stream", body = String)))]
async fn order_live(
    State(shared): State<Arc<Shared>>,
    Extension(stopping): Extension<Stopping>,
    Path(order_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let order_id = OrderId::parse(&order_id).map_err(|_| Problem::not_found("no such order"))?;
    let changes = shared.changes.subscribe();
    let now = read(&shared, move |store| store.order(order_id)).await?;
    let now = now.map(|detail| detail.row).into_iter().collect();
    Ok(live(changes, now, stopping, move |row| {
        row.order_id == order_id
    }))
}

/// Live updates of all of a customer's orders: each as it stands (the newest
/// `store::LIST_ROWS_MAX`), then each change of status.
#[utoipa::path(get, path = "/customers/{customer_id}/live", tag = "order-status", params(("customer_id" = String, Path, description = "the customer's account name")),
    description = "The customer's orders as they stand, then each status one enters, once.",
    responses((status = 200, description = "server-sent events: `order` (data: the order's row), `reload`, `reconnect`", content_type = "text/event-stream", body = String)))]
async fn customer_live(
    State(shared): State<Arc<Shared>>,
    Extension(stopping): Extension<Stopping>,
    Path(customer_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let changes = shared.changes.subscribe();
    let whose = customer_id.clone();
    let now = read(&shared, move |store| store.customer_orders(&whose)).await?;
    let now = now.into_iter().map(|summary| summary.row).collect();
    Ok(live(changes, now, stopping, move |row| {
        row.customer_id == customer_id
    }))
}

/// Orders whose last sent status a live stream remembers; past it, it forgets them all (and may
/// send a status again).
const LIVE_ORDERS_TRACKED_MAX: usize = 10_000;

/// What a live stream has told its listener: each order's last status sent.
#[derive(Default)]
struct Told(std::collections::HashMap<OrderId, OrderStatus>);

impl Told {
    /// Whether `row` is news: a status of its order not sent last.
    fn news(&mut self, row: &OrderRow) -> bool {
        if self.0.len() >= LIVE_ORDERS_TRACKED_MAX && !self.0.contains_key(&row.order_id) {
            self.0.clear();
        }
        self.0.insert(row.order_id, row.status) != Some(row.status)
    }
}

fn order_event(row: &OrderRow) -> Option<SseEvent> {
    SseEvent::default().event("order").json_data(row).ok()
}

/// Server-sent events: `now`, the rows as they stand (read after subscribing to `changes`, so
/// nothing falls between), then the changed rows `wanted` keeps whose status is news — one event
/// per status an order enters. A listener that fell more than `LIVE_CHANGES_MAX` changes behind
/// gets a `reload` event: it should query again. When the service starts stopping, a
/// `reconnect` event ends the stream: the listener connects again (to another replica) and
/// queries what it missed.
fn live(
    changes: broadcast::Receiver<Arc<OrderRow>>,
    now: Vec<OrderRow>,
    stopping: Stopping,
    wanted: impl Fn(&OrderRow) -> bool + Send + 'static,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut told = Told::default();
    let now: Vec<_> = now
        .iter()
        .filter(|row| told.news(row))
        .filter_map(order_event)
        .map(Ok)
        .collect();
    let changes = BroadcastStream::new(changes).filter_map(move |change| {
        let event = match change {
            Ok(row) if wanted(&row) && told.news(&row) => order_event(&row),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                Some(SseEvent::default().event("reload").data("{}"))
            }
        };
        std::future::ready(event.map(Ok))
    });
    let changes = futures::stream::iter(now).chain(changes);
    let reconnect = futures::stream::once(async {
        Ok(SseEvent::default()
            .event("reconnect")
            .retry(Duration::from_millis(LIVE_RECONNECT_MS))
            .data("{}"))
    });
    let changes = changes.take_until(stopping.wait()).chain(reconnect);
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(LIVE_KEEP_ALIVE_S)))
}
