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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Router;
use domain::{OrderId, OrderStatus};
use eventlog::{EventLog, Followed, LogPosition, Seen};
use serde::Deserialize;
use servicekit::{ApiError, Problem, Readiness, Running, StartError};
use tokio::sync::{mpsc, watch};

use crate::store::{OrderDetail, OrderSummary, Store, StoreError};

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
        .route("/customers/:customer_id/orders", get(customer_orders))
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
                Ok(Ok(_changed)) => break,
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
