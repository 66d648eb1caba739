//! The order-status read model (SPEC §4.5, F6): a projection worker follows the store and keeps,
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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use domain::{OrderId, OrderStatus};
use eventlog::{EventLog, Followed, LogPosition, Seen};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use servicekit::{ApiError, Problem, Readiness, Running, StartError};
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

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store_url: String,
    /// The SQLite file of the read model.
    pub database: PathBuf,
}

struct Shared {
    store: Arc<Store>,
    /// The position of the last event applied.
    applied: watch::Sender<Option<LogPosition>>,
    caught_up: AtomicBool,
    /// Orders as they change, for live screens.
    changes: broadcast::Sender<Arc<OrderRow>>,
}

pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let database = |e: StoreError| StartError::Database(e.to_string());
    let store = Arc::new(Store::open(&settings.database).map_err(database)?);
    let checkpoint = store.checkpoint().map_err(database)?;
    let shared = Arc::new(Shared {
        store,
        applied: watch::Sender::new(checkpoint),
        caught_up: AtomicBool::new(false),
        changes: broadcast::Sender::new(LIVE_CHANGES_MAX),
    });
    let (events, queue) = mpsc::channel(FOLLOW_QUEUE_MAX);
    let mut follower = log.follow(&FOLLOWED_PREFIXES, checkpoint);
    let follow = tokio::spawn(async move {
        loop {
            if events.send(follower.next().await).await.is_err() {
                return;
            }
        }
    });
    let apply = tokio::spawn(apply(Arc::clone(&shared), queue));
    let readiness = Readiness::when({
        let shared = Arc::clone(&shared);
        move || shared.caught_up.load(Ordering::Acquire)
    });
    let routes = Router::new()
        .route("/orders/:order_id", get(order))
        .route("/orders/:order_id/live", get(order_live))
        .route("/customers/:customer_id/orders", get(customer_orders))
        .route("/customers/:customer_id/live", get(customer_live))
        .route("/seller/orders", get(seller_orders))
        .with_state(shared);
    Ok(
        servicekit::serve("order-status", settings.listen, routes, readiness)
            .await?
            .with_worker(follow)
            .with_worker(apply),
    )
}

/// Writes what the follower read, in batches, each with its checkpoint.
async fn apply(shared: Arc<Shared>, mut queue: mpsc::Receiver<Followed>) {
    while let Some(first) = queue.recv().await {
        let mut batch: Vec<Seen> = Vec::new();
        let mut caught_up = false;
        let mut next = Some(first);
        while let Some(followed) = next.take() {
            match followed {
                Followed::Event(seen) => batch.push(*seen),
                Followed::CaughtUp => caught_up = true,
            }
            if batch.len() < BATCH_EVENTS_MAX {
                next = queue.try_recv().ok();
            }
        }
        let Some(last) = batch.last().map(|s| s.position) else {
            if caught_up {
                shared.caught_up.store(true, Ordering::Release);
            }
            continue;
        };
        let batch = Arc::new(batch);
        loop {
            let (store, events) = (Arc::clone(&shared.store), Arc::clone(&batch));
            match tokio::task::spawn_blocking(move || store.apply(&events)).await {
                Ok(Ok(changed)) => {
                    for row in changed {
                        // Nobody listening is fine.
                        let _ = shared.changes.send(Arc::new(row));
                    }
                    break;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "cannot write the read model; retrying"),
                Err(e) => tracing::error!(error = %e, "the read model's writer failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
        }
        shared.applied.send_replace(Some(last));
        if caught_up {
            shared.caught_up.store(true, Ordering::Release);
        }
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
    let store = Arc::clone(&shared.store);
    tokio::task::spawn_blocking(move || query(&store))
        .await
        .map_err(|e| ApiError::from(Problem::internal(&e)))?
        .map_err(|e| Problem::internal(&e).into())
}

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

async fn seller_orders(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<QueueQuery>,
) -> Result<axum::Json<Vec<OrderSummary>>, ApiError> {
    caught_up_to(&shared, query.at_least).await?;
    read(&shared, move |store| store.orders_in(query.status))
        .await
        .map(axum::Json)
}

/// Live updates of one order: an `order` event with the row each time it changes.
async fn order_live(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let order_id = OrderId::parse(&order_id).map_err(|_| Problem::not_found("no such order"))?;
    Ok(live(&shared, move |row| row.order_id == order_id))
}

/// Live updates of all of a customer's orders.
async fn customer_live(
    State(shared): State<Arc<Shared>>,
    Path(customer_id): Path<String>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    live(&shared, move |row| row.customer_id == customer_id)
}

/// Server-sent events of the changed rows `wanted` keeps. A listener that fell more than
/// `LIVE_CHANGES_MAX` changes behind gets a `reload` event: it should query again.
fn live(
    shared: &Shared,
    wanted: impl Fn(&OrderRow) -> bool + Send + 'static,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let changes = BroadcastStream::new(shared.changes.subscribe()).filter_map(move |change| {
        let event = match change {
            Ok(row) if wanted(&row) => SseEvent::default().event("order").json_data(&*row).ok(),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                Some(SseEvent::default().event("reload").data("{}"))
            }
        };
        std::future::ready(event.map(Ok))
    });
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(LIVE_KEEP_ALIVE_S)))
}
