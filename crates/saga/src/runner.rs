//! The saga's moving parts: one reader following the store, shard workers handling each order's
//! triggers in order, deposit timers, and the checkpoint writer.
//!
//! A trigger whose step needs an unavailable service is parked with its order's later triggers
//! and retried, so a service that is down holds up only the orders that need it.
//! The checkpoint only passes an event once it is fully handled and the deposit timer it armed
//! or ended is recorded with it (`checkpoint`): a restart re-arms the timers from there and
//! reads on from the checkpoint. Replayed events find the saga's state moved on and cause
//! nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use domain::saga::{react, Action, Saga, Trigger};
use domain::{Decider, OrderId};
use eventlog::{
    Actor, ActorKind, Appended, EventLog, Followed, LogPosition, Metadata, CONFLICT_RETRIES_MAX,
};
use serde::Serialize;
use servicekit::{Cause, Readiness, Running, TraceParent, Upstream};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::checkpoint::{Bookkeeping, Books, Record, CHECKPOINTS_KEPT, CHECKPOINT_STREAM};
use crate::observe::{observe, FOLLOWED_PREFIXES};
use crate::perform::{Answer, Services, Unavailable};
use crate::{Settings, StartError};

/// Workers; each handles the orders that hash to it, one trigger at a time.
const SHARDS: usize = 16;
/// Triggers waiting per shard.
const SHARD_QUEUE_MAX: usize = 256;
/// Triggers a shard holds back because a service they need is unavailable; beyond this the
/// shard takes no new work (the reader then waits) until some went through.
const PARKED_WORKS_MAX: usize = 10_000;
/// Reactions chained from one trigger (a call's answer is a trigger too).
const CHAINED_REACTIONS_MAX: usize = 4;
/// A deposit timer that fired but found the deposit not yet due (clocks differ) fires again
/// after this long, in milliseconds.
const DEADLINE_RETRY_MS: i64 = 2_000;
/// How often deposit timers are checked, in milliseconds.
const DEADLINE_TICK_MS: u64 = 200;

struct Work {
    order_id: OrderId,
    trigger: Trigger,
    /// The event (or timer firing) that caused it, and the trace it continues.
    cause: Cause,
    position: Option<LogPosition>,
}

/// Events handed to workers since the checkpoint, and which are done. A run of done events is
/// kept as its last one only, so memory follows the unfinished events (in flight, or pinned by
/// a deposit timer), not the length of the log since the oldest of them.
#[derive(Default)]
struct Tracker {
    pending: BTreeMap<LogPosition, bool>,
    /// Entries of `pending` not done yet.
    unfinished: usize,
    committed: Option<LogPosition>,
    /// Deposit timers armed (`Some(due)`) or ended (`None`) and not yet recorded: the
    /// checkpoint is stored with them, so it never passes an event whose timer is unrecorded.
    unrecorded: BTreeMap<OrderId, Option<DateTime<Utc>>>,
}

impl Tracker {
    fn dispatch(&mut self, position: LogPosition) {
        self.pending.insert(position, false);
        self.unfinished += 1;
    }

    fn finish(&mut self, position: LogPosition) {
        match self.pending.get_mut(&position) {
            Some(done @ false) => *done = true,
            _ => return,
        }
        self.unfinished -= 1;
        // Collapse the run: a done predecessor is represented by this entry from now on, and
        // this one by a done successor.
        let before = self
            .pending
            .range(..position)
            .next_back()
            .map(|(p, d)| (*p, *d));
        if let Some((before, true)) = before {
            self.pending.remove(&before);
        }
        let after = self.pending.range(position..).nth(1).map(|(_, d)| *d);
        if after == Some(true) {
            self.pending.remove(&position);
        }
        while let Some((&position, &true)) = self.pending.first_key_value() {
            self.committed = Some(position);
            self.pending.remove(&position);
        }
    }
}

struct Deadline {
    fire_at: DateTime<Utc>,
}

struct Shared {
    log: EventLog,
    services: Services,
    retry_pause: Duration,
    tracker: Mutex<Tracker>,
    deadlines: Mutex<HashMap<OrderId, Deadline>>,
    caught_up: AtomicBool,
    /// The checkpoint this run started from (set once the reader has read it).
    started_after: Mutex<Option<Option<LogPosition>>>,
    shards: Vec<mpsc::Sender<Work>>,
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(status))]
struct ApiDoc;

/// The saga's OpenAPI document.
pub fn openapi() -> serde_json::Value {
    servicekit::openapi::document(<ApiDoc as utoipa::OpenApi>::openapi(), "saga", true)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let log = EventLog::connect(&settings.store_url)?;
    let identity = settings.identity.clone();
    let upstream = |name, calls: &servicekit::UpstreamSettings| {
        Upstream::new(name, calls.clone(), identity.clone())
    };
    let services = Services {
        order: api::order::OrderClient(upstream("order", &settings.order)),
        payment: api::payment::PaymentClient(upstream("payment", &settings.payment)),
        inventory: api::inventory::InventoryClient(upstream("inventory", &settings.inventory)),
        delivery: api::delivery::DeliveryClient(upstream("delivery", &settings.delivery)),
    };
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..SHARDS)
        .map(|_| mpsc::channel::<Work>(SHARD_QUEUE_MAX))
        .unzip();
    let shared = Arc::new(Shared {
        log,
        services,
        retry_pause: settings.retry_pause,
        tracker: Mutex::default(),
        deadlines: Mutex::default(),
        caught_up: AtomicBool::new(false),
        started_after: Mutex::new(None),
        shards: senders,
    });
    let readiness = Readiness::when({
        let shared = Arc::clone(&shared);
        move || shared.caught_up.load(Ordering::Acquire)
    });
    let routes = Router::new()
        .route("/saga/status", get(status))
        .with_state(Arc::clone(&shared));
    let mut running = servicekit::serve(
        "saga",
        settings.listen,
        routes,
        readiness,
        Some(settings.identity.clone()),
        openapi(),
    )
    .await?;
    for (shard, receiver) in receivers.into_iter().enumerate() {
        running = running.with_worker(tokio::spawn(work(Arc::clone(&shared), shard, receiver)));
    }
    let store = shared.log.clone();
    Ok(running
        .needing_store(&store)
        .with_worker(tokio::spawn(read(Arc::clone(&shared))))
        .with_worker(tokio::spawn(deadlines(Arc::clone(&shared))))
        .with_worker(tokio::spawn(store_checkpoints(
            shared,
            settings.checkpoint_interval,
        ))))
}

/// Follows the store from the stored checkpoint and hands each trigger to its order's shard.
async fn read(shared: Arc<Shared>) {
    let books = load_books(&shared).await.state;
    let after = books.checkpoint;
    tracing::info!(
        ?after,
        timers = books.timers.len(),
        "saga following the store"
    );
    lock(&shared.deadlines).extend(
        books
            .timers
            .into_iter()
            .map(|(order_id, fire_at)| (order_id, Deadline { fire_at })),
    );
    *lock(&shared.started_after) = Some(after);
    let mut follower = shared.log.follow("saga", &FOLLOWED_PREFIXES, after);
    loop {
        let seen = match follower.next().await {
            Followed::CaughtUp => {
                shared.caught_up.store(true, Ordering::Release);
                continue;
            }
            Followed::Event(seen) => seen,
        };
        let observed = observe(&seen);
        {
            let mut tracker = lock(&shared.tracker);
            tracker.dispatch(seen.position);
            if observed.is_none() {
                tracker.finish(seen.position);
            }
        }
        let Some((order_id, trigger)) = observed else {
            continue;
        };
        let work = Work {
            order_id,
            trigger,
            cause: Cause {
                id: seen.id,
                // The trace of whoever appended the event goes on in the step it causes.
                trace: seen
                    .metadata
                    .as_ref()
                    .and_then(|m| m.trace_parent.as_deref())
                    .and_then(TraceParent::parse),
            },
            position: Some(seen.position),
        };
        if shared.shards[shard_of(order_id)].send(work).await.is_err() {
            return;
        }
    }
}

fn shard_of(order_id: OrderId) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    order_id.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

/// A shard: handles its orders' triggers one at a time, in order. A trigger whose step needs an
/// unavailable service is parked, with every later trigger of the same order behind it, and
/// tried again every `retry_pause`; the shard meanwhile goes on with other orders.
async fn work(shared: Arc<Shared>, shard: usize, mut queue: mpsc::Receiver<Work>) {
    let mut parked: HashMap<OrderId, VecDeque<Work>> = HashMap::new();
    let mut parked_count = 0usize;
    let mut retry = tokio::time::interval(shared.retry_pause);
    let parked_gauge =
        metrics::gauge!("minimall_saga_parked_triggers", "shard" => shard.to_string());
    loop {
        parked_gauge.set(parked_count as f64);
        tokio::select! {
            work = queue.recv(), if parked_count < PARKED_WORKS_MAX => {
                let Some(work) = work else { return };
                if let Some(waiting) = parked.get_mut(&work.order_id) {
                    // One pending deposit-due check is enough (they carry no position).
                    let repeated_timer = work.trigger == Trigger::DepositDue
                        && waiting.iter().any(|w| w.trigger == Trigger::DepositDue);
                    if !repeated_timer {
                        waiting.push_back(work);
                        parked_count += 1;
                    }
                    continue;
                }
                if let Some(work) = run(&shared, work).await {
                    parked.entry(work.order_id).or_default().push_back(work);
                    parked_count += 1;
                }
            }
            _ = retry.tick(), if !parked.is_empty() => {
                let orders: Vec<OrderId> = parked.keys().copied().collect();
                for order_id in orders {
                    let Some(waiting) = parked.get_mut(&order_id) else { continue };
                    while let Some(work) = waiting.pop_front() {
                        parked_count -= 1;
                        if let Some(work) = run(&shared, work).await {
                            waiting.push_front(work);
                            parked_count += 1;
                            break;
                        }
                    }
                    if waiting.is_empty() {
                        parked.remove(&order_id);
                    }
                }
            }
        }
    }
}

/// Handles one trigger; gives it back if a service it needs (or the store) is unavailable.
async fn run(shared: &Shared, work: Work) -> Option<Work> {
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "saga_step",
        order_id = %work.order_id,
        correlation_id = %work.order_id,
        causation_id = %work.cause.id,
        trigger = work.trigger.name(),
        trace_id = tracing::field::Empty,
    );
    // The step is a span of the event's trace (a new trace for a timer); its calls and the
    // saga's events carry the step's own span context.
    let trace = servicekit::otel::continue_trace(&span, work.cause.trace);
    span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
    let work = Work {
        cause: Cause {
            trace: Some(trace),
            ..work.cause
        },
        ..work
    };
    let handled = handle(shared, &work).instrument(span).await;
    let outcome = match handled {
        Handled::Parked => "parked",
        Handled::Done { .. } => "done",
    };
    metrics::histogram!(
        "minimall_saga_step_duration_seconds",
        "trigger" => work.trigger.name(),
        "outcome" => outcome
    )
    .record(started.elapsed().as_secs_f64());
    let due_at = match handled {
        Handled::Parked => return Some(work),
        Handled::Done { due_at } => due_at,
    };
    let timer = {
        let mut deadlines = lock(&shared.deadlines);
        match (due_at, deadlines.contains_key(&work.order_id)) {
            (Some(fire_at), false) => {
                deadlines.insert(work.order_id, Deadline { fire_at });
                Some(due_at)
            }
            (None, true) => {
                deadlines.remove(&work.order_id);
                Some(None)
            }
            _ => None,
        }
    };
    // The timer's change and the event's end together: the checkpoint passes the event only
    // with its timer recorded.
    let mut tracker = lock(&shared.tracker);
    if let Some(timer) = timer {
        tracker.unrecorded.insert(work.order_id, timer);
    }
    if let Some(position) = work.position {
        tracker.finish(position);
    }
    None
}

enum Handled {
    /// Handled; the saga now waits for a deposit due then, if it does.
    Done { due_at: Option<DateTime<Utc>> },
    /// A service the step needs, or the store, is unavailable: nothing was recorded; try
    /// again later.
    Parked,
}

/// Reacts to one trigger and to the news its calls bring, making every call first and then
/// recording all the saga's events in one append at the expected revision. A crash or an
/// unavailable service before the append records nothing, so the whole reaction is made again
/// later — harmless, as every call is idempotent — and the answers that were news are never
/// lost between two appends.
async fn handle(shared: &Shared, work: &Work) -> Handled {
    let stream = format!("saga-{}", work.order_id);
    // Lost races for the saga's stream (another instance, an operator) are retried a bounded
    // number of times; past that, or while the store fails, the trigger is parked and retried
    // with the shard's other waiting work.
    for _ in 0..=CONFLICT_RETRIES_MAX {
        let loaded = match shared.log.load::<Saga>(&stream).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, %stream, "cannot load the saga; parked");
                return Handled::Parked;
            }
        };
        let mut state = loaded.state.clone();
        let mut events = Vec::new();
        let mut trigger = work.trigger.clone();
        for _ in 0..CHAINED_REACTIONS_MAX {
            let reaction = react(&state, trigger);
            let mut news = None;
            let mut payment_kept = false;
            for action in &reaction.actions {
                if payment_kept && matches!(action, Action::CancelOrder { .. }) {
                    tracing::error!(
                        ?action,
                        "the payment kept its confirmed deposit; the order is not cancelled"
                    );
                    continue;
                }
                match shared.services.perform(action, work.cause).await {
                    Err(Unavailable) => return Handled::Parked,
                    Ok(Answer::News(trigger)) => news = Some(trigger),
                    Ok(Answer::PaymentKept) => payment_kept = true,
                    Ok(Answer::Done) => {}
                }
            }
            state = reaction.events.iter().fold(state, Saga::evolve);
            events.extend(reaction.events);
            match news {
                Some(next) => trigger = next,
                None => break,
            }
        }
        if events.is_empty() {
            return Handled::Done {
                due_at: state.deposit_due_at(),
            };
        }
        let metadata = Metadata {
            correlation_id: work.order_id.as_uuid(),
            causation_id: work.cause.id,
            actor: Actor {
                kind: ActorKind::System,
                id: "saga".to_string(),
            },
            at: Utc::now(),
            request_id: None,
            trace_parent: work.cause.trace.map(|trace| trace.to_string()),
        };
        match shared
            .log
            .append(&stream, loaded.revision, &events, &metadata)
            .await
        {
            Ok(Appended::Written { .. }) => {
                return Handled::Done {
                    due_at: state.deposit_due_at(),
                }
            }
            Ok(Appended::Conflict) => continue,
            Err(e) => {
                tracing::warn!(error = %e, %stream, "cannot record the saga's step; parked");
                return Handled::Parked;
            }
        }
    }
    tracing::warn!(%stream, "the saga's stream kept changing; parked");
    Handled::Parked
}

/// Fires deposit timers: the order's shard gets a `DepositDue` trigger.
async fn deadlines(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(DEADLINE_TICK_MS));
    loop {
        tick.tick().await;
        let now = Utc::now();
        let due: Vec<OrderId> = {
            let mut deadlines = lock(&shared.deadlines);
            deadlines
                .iter_mut()
                .filter(|(_, d)| d.fire_at <= now)
                .map(|(order_id, d)| {
                    d.fire_at = now + chrono::Duration::milliseconds(DEADLINE_RETRY_MS);
                    *order_id
                })
                .collect()
        };
        for order_id in due {
            let work = Work {
                order_id,
                trigger: Trigger::DepositDue,
                cause: Cause {
                    id: Uuid::new_v4(),
                    trace: None,
                },
                position: None,
            };
            // A full shard gets the check on a later tick (the timer fires again): the timer
            // task never waits on a shard.
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                shared.shards[shard_of(order_id)].try_send(work)
            {
                return;
            }
        }
    }
}

/// The bookkeeping as stored, read until the store answers.
async fn load_books(shared: &Shared) -> eventlog::Loaded<Books> {
    loop {
        match shared.log.load::<Bookkeeping>(CHECKPOINT_STREAM).await {
            Ok(books) => return books,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the saga's bookkeeping; retrying");
                tokio::time::sleep(shared.retry_pause).await;
            }
        }
    }
}

/// Stores the checkpoint and the timers' changes whenever there are any, at most once per
/// `interval`, in one append. The stream keeps only the latest `CHECKPOINTS_KEPT` (set on the
/// first tick that can).
async fn store_checkpoints(shared: Arc<Shared>, interval: Duration) {
    let mut bounded = false;
    let mut books = load_books(&shared).await;
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if !bounded {
            match shared
                .log
                .keep_latest(CHECKPOINT_STREAM, CHECKPOINTS_KEPT)
                .await
            {
                Ok(()) => bounded = true,
                Err(e) => tracing::warn!(error = %e, "cannot bound the saga checkpoint stream yet"),
            }
        }
        let record = {
            let tracker = lock(&shared.tracker);
            Record {
                timers: tracker.unrecorded.clone(),
                checkpoint: tracker.committed,
            }
        };
        let recorded = record.timers.clone();
        let events = match Bookkeeping::decide(&books.state, record) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(error = %e, "the saga's bookkeeping is not stored");
                continue;
            }
        };
        if !events.is_empty() && !store_books(&shared, &mut books, &events).await {
            continue;
        }
        let mut tracker = lock(&shared.tracker);
        for (order_id, timer) in recorded {
            // Unless it changed again meanwhile.
            if tracker.unrecorded.get(&order_id) == Some(&timer) {
                tracker.unrecorded.remove(&order_id);
            }
        }
    }
}

/// Appends the bookkeeping's events (with a count when one is due) and reads it back; false if
/// it was not stored.
async fn store_books(
    shared: &Shared,
    books: &mut eventlog::Loaded<Books>,
    events: &[crate::checkpoint::BookkeepingEvent],
) -> bool {
    let metadata = Metadata {
        correlation_id: Uuid::nil(),
        causation_id: Uuid::nil(),
        actor: Actor {
            kind: ActorKind::System,
            id: "saga".to_string(),
        },
        at: Utc::now(),
        request_id: None,
        trace_parent: None,
    };
    if books.revision.is_some() && books.since_snapshot.is_none() {
        // Checkpoints only, written before timers were kept: count now.
        books.since_snapshot = Some(eventlog::SNAPSHOT_EVERY_EVENTS);
    }
    let appended = shared
        .log
        .append_decided::<Bookkeeping>(CHECKPOINT_STREAM, books, events, &metadata)
        .await;
    let stored = match appended {
        Ok(Appended::Written { .. }) => true,
        // Someone else wrote (an operator rewinding the saga): read theirs, write ours next.
        Ok(Appended::Conflict) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the saga checkpoint");
            return false;
        }
    };
    match shared.log.load::<Bookkeeping>(CHECKPOINT_STREAM).await {
        Ok(loaded) => *books = loaded,
        Err(e) => tracing::warn!(error = %e, "cannot read the saga's bookkeeping back"),
    }
    stored
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Status {
    caught_up: bool,
    /// Whether this run has read its stored checkpoint yet…
    checkpoint_read: bool,
    /// …and where it started reading after (`null`: from the start of the log).
    #[schema(value_type = Option<Object>)]
    started_after: Option<LogPosition>,
    #[schema(value_type = Option<Object>)]
    checkpoint: Option<LogPosition>,
    /// Entries the checkpoint tracker holds (unfinished events and runs of finished ones).
    pending_events: usize,
    /// Events being handled (handed to a shard, not finished).
    unfinished_events: usize,
    deposit_timers: usize,
    /// Services whose circuit breaker is open: the saga waits for them.
    breakers_open: Vec<&'static str>,
}

#[utoipa::path(get, path = "/saga/status", tag = "saga",
    description = "Where the process manager stands: caught up, its checkpoint, the events it is handling, its timers, open breakers.",
    responses((status = 200, description = "its status", body = Status)))]
async fn status(State(shared): State<Arc<Shared>>) -> axum::Json<Status> {
    // Read once: two guards in one struct expression would both live to its end.
    let started_after = *lock(&shared.started_after);
    let (checkpoint, pending_events, unfinished_events) = {
        let tracker = lock(&shared.tracker);
        (tracker.committed, tracker.pending.len(), tracker.unfinished)
    };
    let services = &shared.services;
    let breakers_open = [
        &services.order.0,
        &services.payment.0,
        &services.inventory.0,
        &services.delivery.0,
    ]
    .into_iter()
    .filter(|u| !u.is_call_permitted())
    .map(|u| u.service())
    .collect();
    axum::Json(Status {
        caught_up: shared.caught_up.load(Ordering::Acquire),
        checkpoint_read: started_after.is_some(),
        started_after: started_after.flatten(),
        checkpoint,
        pending_events,
        unfinished_events,
        deposit_timers: lock(&shared.deadlines).len(),
        breakers_open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::at;

    #[test]
    fn the_checkpoint_stops_before_the_oldest_unfinished_event_and_runs_collapse() {
        let mut tracker = Tracker::default();
        for p in 1..=100 {
            tracker.dispatch(at(p));
        }
        // Event 3 stays unfinished (a deposit timer pins it); all others finish, out of order.
        for p in (1..=100).rev().filter(|p| *p != 3) {
            tracker.finish(at(p));
        }
        assert_eq!(tracker.committed, Some(at(2)));
        assert_eq!(tracker.unfinished, 1);
        assert!(tracker.pending.len() <= 2, "{:?}", tracker.pending);
        tracker.finish(at(3));
        assert_eq!(tracker.committed, Some(at(100)));
        assert!(tracker.pending.is_empty());
        // Finishing twice, or something never dispatched, changes nothing.
        tracker.finish(at(3));
        tracker.finish(at(7));
        assert_eq!(tracker.unfinished, 0);
    }
}
