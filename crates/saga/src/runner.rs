//! The saga's moving parts: the leases (which partitions of the orders this instance works,
//! see `leases`), one reader following the store, a worker per partition handling its orders'
//! triggers in order, deposit timers, and the bookkeeping writer.
//!
//! A trigger whose step needs an unavailable service is parked with its order's later triggers
//! and retried, so a service that is down holds up only the orders that need it.
//! Each partition has its own checkpoint: it only passes an event once it is fully handled and
//! the deposit timer it armed or ended is recorded with it (`checkpoint`), so whoever takes the
//! partition next re-arms its timers from there and reads on from its checkpoint. The reader
//! reads from the oldest checkpoint of the partitions held, and again from an older one when a
//! partition is taken; each partition skips what it has already seen. Replayed events find the
//! saga's state moved on and cause nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use domain::saga::{react, Action, Saga, Trigger};
use domain::{Decider, OrderId};
use eventlog::{
    Actor, ActorKind, Appended, EventLog, Followed, LogPosition, Metadata, CONFLICT_RETRIES_MAX,
};
use servicekit::{Cause, Readiness, Running, TraceParent, Upstream};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::checkpoint::{Bookkeeping, Books, Record, CHECKPOINTS_KEPT, CHECKPOINT_STREAM};
use crate::leases::{
    checkpoint_stream, partition_of, plan, Assign, Heartbeats, Leases, FENCE_MS, LEASES_KEPT,
    LEASE_STREAM, PARTITIONS, RENEW_MS,
};
use crate::observe::{observe, FOLLOWED_PREFIXES};
use crate::perform::{Answer, Services, Unavailable};
use crate::{Settings, StartError};

/// Triggers waiting per partition's worker.
const SHARD_QUEUE_MAX: usize = 256;
/// Triggers a partition's worker holds back because a service they need is unavailable; beyond this the
/// worker takes no new work (the reader then waits) until some went through.
const PARKED_WORKS_MAX: usize = 10_000;
/// Reactions chained from one trigger (a call's answer is a trigger too).
const CHAINED_REACTIONS_MAX: usize = 4;
/// A deposit timer that fired but found the deposit not yet due (clocks differ) fires again
/// after this long, in milliseconds.
const DEADLINE_RETRY_MS: i64 = 2_000;
/// How often deposit timers are checked, in milliseconds.
const DEADLINE_TICK_MS: u64 = 200;

/// What a partition's worker is handed.
enum Job {
    Work(Work),
    /// Drop what is parked (the partition is being let go) and answer once done: whatever was
    /// handed before has been handled or dropped.
    Drop(tokio::sync::oneshot::Sender<()>),
    /// Try the order's parked triggers again now; answers whether it had any.
    RetryNow(OrderId, tokio::sync::oneshot::Sender<bool>),
}

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
    /// The checkpoint the partition was taken at: its events up to there were handled.
    started_after: Option<LogPosition>,
    /// The last event of the log this partition has seen (it skips those up to here when the
    /// reader reads again from an older checkpoint).
    read_up_to: Option<LogPosition>,
    /// The reading (the reader's count of followers started) this partition takes events
    /// from; 0 until one starts with it: a partition taken while the reader is further on
    /// waits for the reader to read again from its checkpoint, so it skips nothing.
    reading: u64,
    pending: BTreeMap<LogPosition, bool>,
    /// Entries of `pending` not done yet.
    unfinished: usize,
    committed: Option<LogPosition>,
    /// Deposit timers armed (`Some(due)`) or ended (`None`) and not yet recorded: the
    /// checkpoint is stored with them, so it never passes an event whose timer is unrecorded.
    unrecorded: BTreeMap<OrderId, Option<DateTime<Utc>>>,
}

impl Tracker {
    fn starting_after(checkpoint: Option<LogPosition>) -> Tracker {
        Tracker {
            started_after: checkpoint,
            read_up_to: checkpoint,
            committed: checkpoint,
            ..Tracker::default()
        }
    }

    /// An event that is not this partition's: the checkpoint may pass it.
    fn pass(&mut self, position: LogPosition) {
        if self.pending.is_empty() {
            self.committed = Some(position);
        } else {
            self.dispatch(position);
            self.finish(position);
        }
    }

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
    /// This instance, in the lease table (new at every start).
    instance: Uuid,
    /// Whether this instance works each partition now (its worker drops work of one it does not).
    held: Vec<AtomicBool>,
    /// Each held partition's tracker.
    trackers: Mutex<Vec<Option<Tracker>>>,
    /// Each held partition's bookkeeping as stored.
    books: tokio::sync::Mutex<Vec<Option<eventlog::Loaded<Books>>>>,
    deadlines: Mutex<HashMap<OrderId, Deadline>>,
    /// The parked triggers as the status shows them, by order.
    parked: Mutex<BTreeMap<OrderId, api::saga::ParkedTrigger>>,
    /// The reader has caught up with the store since it last began reading (or holds nothing).
    caught_up: AtomicBool,
    /// The lease table was renewed once and the partitions it gave were taken.
    leased: AtomicBool,
    /// When this instance started, and when (ms after) the last renewal that was written began.
    born: std::time::Instant,
    renewed_ms: std::sync::atomic::AtomicU64,
    /// No renewal was written for `FENCE_MS`: nothing is worked until every partition is let
    /// go and taken again (set by the fence watch, even while a renewal hangs).
    fenced: AtomicBool,
    /// A partition was taken: the reader reads again from the oldest checkpoint.
    reread: tokio::sync::Notify,
    workers: Vec<mpsc::Sender<Job>>,
}

impl Shared {
    /// Whether this instance may work the partition now: taken, and not fenced.
    fn holds(&self, partition: usize) -> bool {
        self.taken(partition) && !self.fenced.load(Ordering::Acquire)
    }

    /// Whether the partition is taken up (its tracker and bookkeeping loaded), fenced or not.
    fn taken(&self, partition: usize) -> bool {
        self.held[partition].load(Ordering::Acquire)
    }

    fn held_partitions(&self) -> Vec<usize> {
        (0..PARTITIONS).filter(|p| self.taken(*p)).collect()
    }

    /// Milliseconds since the last renewal that was written began.
    fn since_renewed_ms(&self) -> u64 {
        let now = self.born.elapsed().as_millis() as u64;
        now.saturating_sub(self.renewed_ms.load(Ordering::Acquire))
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(status, retry_parked))]
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
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..PARTITIONS)
        .map(|_| mpsc::channel::<Job>(SHARD_QUEUE_MAX))
        .unzip();
    let shared = Arc::new(Shared {
        log,
        services,
        retry_pause: settings.retry_pause,
        instance: Uuid::new_v4(),
        held: (0..PARTITIONS).map(|_| AtomicBool::new(false)).collect(),
        trackers: Mutex::new((0..PARTITIONS).map(|_| None).collect()),
        books: tokio::sync::Mutex::new((0..PARTITIONS).map(|_| None).collect()),
        deadlines: Mutex::default(),
        parked: Mutex::default(),
        caught_up: AtomicBool::new(true),
        leased: AtomicBool::new(false),
        born: std::time::Instant::now(),
        renewed_ms: std::sync::atomic::AtomicU64::new(0),
        fenced: AtomicBool::new(false),
        reread: tokio::sync::Notify::new(),
        workers: senders,
    });
    let readiness = Readiness::when({
        let shared = Arc::clone(&shared);
        move || shared.leased.load(Ordering::Acquire) && shared.caught_up.load(Ordering::Acquire)
    });
    let routes = Router::new()
        .route("/saga/status", get(status))
        .route(
            "/saga/parked/:order_id/retry",
            axum::routing::post(retry_parked),
        )
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
    for (partition, receiver) in receivers.into_iter().enumerate() {
        running = running.with_worker(tokio::spawn(work(Arc::clone(&shared), partition, receiver)));
    }
    let store = shared.log.clone();
    let stopping = running.stopping();
    Ok(running
        .needing_store(&store)
        .with_worker(tokio::spawn(read(Arc::clone(&shared))))
        .with_worker(tokio::spawn(deadlines(Arc::clone(&shared))))
        .with_worker(tokio::spawn(store_checkpoints(
            Arc::clone(&shared),
            settings.checkpoint_interval,
        )))
        .with_worker(tokio::spawn(watch_fence(Arc::clone(&shared))))
        .with_finishing_worker(tokio::spawn(hold_leases(shared, stopping))))
}

/// Follows the store from the oldest checkpoint of the partitions held, and hands each trigger
/// of a held partition to its worker; reads again from the oldest once a partition is taken.
async fn read(shared: Arc<Shared>) {
    let mut reading = 0;
    loop {
        reading += 1;
        let oldest = {
            let mut trackers = lock(&shared.trackers);
            for tracker in trackers.iter_mut().flatten() {
                tracker.reading = reading;
            }
            trackers.iter().flatten().map(|t| t.read_up_to).min()
        };
        let Some(after) = oldest else {
            shared.caught_up.store(true, Ordering::Release);
            shared.reread.notified().await;
            continue;
        };
        shared.caught_up.store(false, Ordering::Release);
        tracing::info!(?after, partitions = ?shared.held_partitions(), "saga following the store");
        let mut follower = shared.log.follow("saga", &FOLLOWED_PREFIXES, after);
        loop {
            let followed = tokio::select! {
                followed = follower.next() => followed,
                _ = shared.reread.notified() => break,
            };
            let seen = match followed {
                Followed::CaughtUp => {
                    shared.caught_up.store(true, Ordering::Release);
                    continue;
                }
                Followed::Event(seen) => seen,
            };
            if let Some(work) = dispatch(&shared, &seen, reading) {
                let worker = &shared.workers[partition_of(work.order_id)];
                if worker.send(Job::Work(work)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Notes the event in every held partition of this `reading` that has not seen it; the work it
/// is for its own partition, if that is one of them.
fn dispatch(shared: &Shared, seen: &eventlog::Seen, reading: u64) -> Option<Work> {
    let observed = observe(seen);
    let own = observed
        .as_ref()
        .map(|(order_id, _)| partition_of(*order_id));
    let mut handed = false;
    for (partition, tracker) in lock(&shared.trackers).iter_mut().enumerate() {
        let Some(tracker) = tracker else { continue };
        let seen_before = tracker.read_up_to.is_some_and(|read| seen.position <= read);
        if tracker.reading != reading || seen_before {
            continue;
        }
        tracker.read_up_to = Some(seen.position);
        if own == Some(partition) {
            tracker.dispatch(seen.position);
            handed = true;
        } else {
            tracker.pass(seen.position);
        }
    }
    let (order_id, trigger) = observed.filter(|_| handed)?;
    Some(Work {
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
    })
}

/// A partition's worker: handles its orders' triggers one at a time, in order, while the
/// partition is held (dropping them otherwise: whoever holds it reads them again from its
/// checkpoint). A trigger whose step needs an unavailable service is parked, with every later
/// trigger of the same order behind it, and tried again every `retry_pause`; the worker
/// meanwhile goes on with other orders.
async fn work(shared: Arc<Shared>, partition: usize, mut queue: mpsc::Receiver<Job>) {
    let mut parked = Parked::default();
    let mut retry = tokio::time::interval(shared.retry_pause);
    let parked_gauge =
        metrics::gauge!("minimall_saga_parked_triggers", "partition" => partition.to_string());
    loop {
        parked_gauge.set(parked.count as f64);
        tokio::select! {
            job = queue.recv(), if parked.count < PARKED_WORKS_MAX => {
                let work = match job {
                    None => return,
                    Some(Job::Drop(done)) => {
                        parked.clear(&shared);
                        let _ = done.send(());
                        continue;
                    }
                    Some(Job::RetryNow(order_id, answer)) => {
                        let found = parked.orders.contains_key(&order_id);
                        if found && shared.holds(partition) {
                            parked.retry(&shared, order_id).await;
                        }
                        let _ = answer.send(found);
                        continue;
                    }
                    Some(Job::Work(_)) if !shared.holds(partition) => continue,
                    Some(Job::Work(work)) => work,
                };
                if parked.orders.contains_key(&work.order_id) {
                    parked.queue_behind(&shared, work);
                    continue;
                }
                if let Some((work, reason)) = run(&shared, work).await {
                    parked.park(&shared, work, reason);
                }
            }
            _ = retry.tick(), if !parked.orders.is_empty() => {
                if !shared.holds(partition) {
                    continue;
                }
                let orders: Vec<OrderId> = parked.orders.keys().copied().collect();
                for order_id in orders {
                    parked.retry(&shared, order_id).await;
                }
            }
        }
    }
}

/// A worker's parked triggers, by order (the first one waits, the others are behind it), and
/// what the status shows of them.
#[derive(Default)]
struct Parked {
    orders: HashMap<OrderId, VecDeque<Work>>,
    count: usize,
}

impl Parked {
    /// Parks a trigger that could not be handled, at the head of its order's queue.
    fn park(&mut self, shared: &Shared, work: Work, reason: String) {
        let order_id = work.order_id;
        let trigger = work.trigger.name().to_string();
        let waiting = self.orders.entry(order_id).or_default();
        waiting.push_front(work);
        self.count += 1;
        let behind = waiting.len() - 1;
        let mut shown = lock(&shared.parked);
        let view = shown
            .entry(order_id)
            .or_insert_with(|| api::saga::ParkedTrigger {
                order_id: order_id.to_string(),
                trigger: trigger.clone(),
                reason: reason.clone(),
                since: Utc::now(),
                attempts: 0,
                behind,
            });
        if view.trigger != trigger {
            view.since = Utc::now();
            view.attempts = 0;
        }
        view.trigger = trigger;
        view.reason = reason;
        view.attempts += 1;
        view.behind = behind;
    }

    /// A later trigger of an order that has one parked waits behind it.
    fn queue_behind(&mut self, shared: &Shared, work: Work) {
        let Some(waiting) = self.orders.get_mut(&work.order_id) else {
            return;
        };
        // One pending deposit-due check is enough (they carry no position).
        let repeated_timer = work.trigger == Trigger::DepositDue
            && waiting.iter().any(|w| w.trigger == Trigger::DepositDue);
        if repeated_timer {
            return;
        }
        let order_id = work.order_id;
        waiting.push_back(work);
        self.count += 1;
        if let Some(view) = lock(&shared.parked).get_mut(&order_id) {
            view.behind = waiting.len() - 1;
        }
    }

    /// Tries the order's parked triggers again, in order, until one must wait again. The
    /// status goes on showing the order parked while it is tried: it is parked until its
    /// triggers have all been handled.
    async fn retry(&mut self, shared: &Shared, order_id: OrderId) {
        let Some(mut waiting) = self.orders.remove(&order_id) else {
            return;
        };
        self.count -= waiting.len();
        while let Some(work) = waiting.pop_front() {
            if let Some((work, reason)) = run(shared, work).await {
                self.count += waiting.len();
                self.orders.insert(order_id, waiting);
                self.park(shared, work, reason);
                return;
            }
        }
        lock(&shared.parked).remove(&order_id);
    }

    fn clear(&mut self, shared: &Shared) {
        let mut shown = lock(&shared.parked);
        for order_id in self.orders.keys() {
            shown.remove(order_id);
        }
        self.orders.clear();
        self.count = 0;
    }
}

/// Handles one trigger; gives it back, with why, if a service it needs (or the store) is
/// unavailable.
async fn run(shared: &Shared, work: Work) -> Option<(Work, String)> {
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
        Handled::Parked(_) => "parked",
        Handled::Done { .. } => "done",
    };
    metrics::histogram!(
        "minimall_saga_step_duration_seconds",
        "trigger" => work.trigger.name(),
        "outcome" => outcome
    )
    .record(started.elapsed().as_secs_f64());
    let due_at = match handled {
        Handled::Parked(reason) => return Some((work, reason)),
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
    let mut trackers = lock(&shared.trackers);
    if let Some(tracker) = &mut trackers[partition_of(work.order_id)] {
        if let Some(timer) = timer {
            tracker.unrecorded.insert(work.order_id, timer);
        }
        if let Some(position) = work.position {
            tracker.finish(position);
        }
    }
    None
}

enum Handled {
    /// Handled; the saga now waits for a deposit due then, if it does.
    Done { due_at: Option<DateTime<Utc>> },
    /// A service the step needs, or the store, is unavailable (why): nothing was recorded; try
    /// again later.
    Parked(String),
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
    // with the worker's other waiting work.
    for _ in 0..=CONFLICT_RETRIES_MAX {
        let loaded = match shared.log.load::<Saga>(&stream).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, %stream, "cannot load the saga; parked");
                return Handled::Parked(format!("the store did not give the saga's stream: {e}"));
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
                    Err(Unavailable(reason)) => return Handled::Parked(reason),
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
                return Handled::Parked(format!("the store did not record the step: {e}"));
            }
        }
    }
    tracing::warn!(%stream, "the saga's stream kept changing; parked");
    Handled::Parked("the saga's stream kept changing under it".to_string())
}

/// Fires deposit timers: the order's worker gets a `DepositDue` trigger.
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
            // A full worker gets the check on a later tick (the timer fires again): the timer
            // task never waits on a worker.
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                shared.workers[partition_of(order_id)].try_send(Job::Work(work))
            {
                return;
            }
        }
    }
}

/// A partition's bookkeeping as stored. A partition never stored yet starts from the
/// bookkeeping one saga kept for all orders (`saga-checkpoint`, written before partitions
/// existed): its checkpoint and the timers of the partition's orders.
async fn load_books(
    log: &EventLog,
    partition: usize,
) -> Result<eventlog::Loaded<Books>, eventlog::LogError> {
    let books = log
        .load::<Bookkeeping>(&checkpoint_stream(partition))
        .await?;
    if books.revision.is_some() {
        return Ok(books);
    }
    let legacy = log.load::<Bookkeeping>(CHECKPOINT_STREAM).await?.state;
    Ok(eventlog::Loaded {
        state: Books {
            checkpoint: legacy.checkpoint,
            timers: legacy
                .timers
                .into_iter()
                .filter(|(order_id, _)| partition_of(*order_id) == partition)
                .collect(),
        },
        ..books
    })
}

/// Takes up a partition the lease table gave this instance: its bookkeeping loaded, its
/// timers armed, its tracker started at its checkpoint; the reader reads again from there.
async fn take(shared: &Shared, partition: usize) -> Result<(), eventlog::LogError> {
    let stream = checkpoint_stream(partition);
    shared.log.keep_latest(&stream, CHECKPOINTS_KEPT).await?;
    let books = load_books(&shared.log, partition).await?;
    tracing::info!(
        partition,
        checkpoint = ?books.state.checkpoint,
        timers = books.state.timers.len(),
        "saga partition taken"
    );
    lock(&shared.deadlines).extend(
        books
            .state
            .timers
            .iter()
            .map(|(order_id, fire_at)| (*order_id, Deadline { fire_at: *fire_at })),
    );
    let tracker = Tracker::starting_after(books.state.checkpoint);
    shared.books.lock().await[partition] = Some(books);
    // Held before it has a tracker: the reader hands out its work only once it has one.
    shared.held[partition].store(true, Ordering::Release);
    lock(&shared.trackers)[partition] = Some(tracker);
    shared.caught_up.store(false, Ordering::Release);
    shared.reread.notify_one();
    Ok(())
}

/// Lets a partition go: its worker stops and drops what it parked, its timers are disarmed,
/// and, when `store`, its bookkeeping is stored for whoever takes it next (a partition taken
/// from this instance because it seemed gone is not: the new holder's is authoritative).
async fn let_go(shared: &Shared, partition: usize, store: bool) {
    shared.held[partition].store(false, Ordering::Release);
    let (done, dropped) = tokio::sync::oneshot::channel();
    if shared.workers[partition]
        .send(Job::Drop(done))
        .await
        .is_ok()
    {
        let _ = dropped.await;
    }
    lock(&shared.deadlines).retain(|order_id, _| partition_of(*order_id) != partition);
    let tracker = lock(&shared.trackers)[partition].take();
    let books = shared.books.lock().await[partition].take();
    tracing::info!(partition, store, "saga partition let go");
    if let (true, Some(tracker), Some(mut books)) = (store, tracker, books) {
        let record = Record {
            timers: tracker.unrecorded,
            checkpoint: tracker.committed,
        };
        store_record(shared, partition, &mut books, record).await;
    }
}

/// Renews this instance's lease every `RENEW_MS` and works the partitions the table gives it:
/// takes the new ones after the table naming it is written, lets go of the ones it gives away
/// before. Stops working them all if it could not renew for `FENCE_MS`. When the service stops,
/// lets every partition go with its bookkeeping stored and leaves the table, so the others
/// take them at once.
async fn hold_leases(shared: Arc<Shared>, stopping: servicekit::Stopping) {
    let mut heartbeats = Heartbeats::default();
    let mut bounded = false;
    let mut tick = tokio::time::interval(Duration::from_millis(RENEW_MS));
    let stop = stopping.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        if !bounded {
            bounded = shared
                .log
                .keep_latest(LEASE_STREAM, LEASES_KEPT)
                .await
                .is_ok();
        }
        if shared.fenced.load(Ordering::Acquire) || shared.since_renewed_ms() > FENCE_MS {
            for partition in shared.held_partitions() {
                tracing::warn!(
                    partition,
                    "the saga's lease was not renewed: it stops working the partition"
                );
                let_go(&shared, partition, false).await;
            }
            shared.fenced.store(false, Ordering::Release);
        }
        renew(&shared, &mut heartbeats, false).await;
    }
    for partition in shared.held_partitions() {
        let_go(&shared, partition, true).await;
    }
    renew(&shared, &mut heartbeats, true).await;
}

/// How often the fence is checked, in milliseconds.
const FENCE_CHECK_MS: u64 = 100;

/// Fences this instance once no renewal was written for `FENCE_MS`, even while a renewal is
/// still waiting for the store: its workers then drop their work (taken again, from the stored
/// checkpoints, once the leases are renewed), so it has stopped before the others, at
/// `LEASE_MS`, take its partitions.
async fn watch_fence(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(FENCE_CHECK_MS));
    loop {
        tick.tick().await;
        let holding = !shared.held_partitions().is_empty();
        if holding
            && shared.since_renewed_ms() > FENCE_MS
            && !shared.fenced.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(
                since_renewed_ms = shared.since_renewed_ms(),
                "the saga's leases were not renewed: it stops working"
            );
        }
    }
}

/// Writes this instance's next table (`leaving`: without it) at the table's expected revision,
/// again on a conflict, and works what it says; whether it was written.
async fn renew(shared: &Shared, heartbeats: &mut Heartbeats, leaving: bool) -> bool {
    let me = shared.instance;
    let attempt = shared.born.elapsed().as_millis() as u64;
    for _ in 0..=CONFLICT_RETRIES_MAX {
        let table = match shared.log.load::<Leases>(LEASE_STREAM).await {
            Ok(table) => table,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the saga's lease table");
                return false;
            }
        };
        let gone = heartbeats.gone(&table.state, me, std::time::Instant::now());
        let next = plan(&table.state, me, &gone, leaving);
        let (had, mine) = (table.state.partitions_of(me), next.partitions_of(me));
        for partition in shared.held_partitions() {
            if !mine.contains(&partition) {
                let_go(shared, partition, had.contains(&partition)).await;
            }
        }
        let events = match Leases::decide(&table.state, Assign(next)) {
            Ok(events) => events,
            Err(never) => match never {},
        };
        match shared
            .log
            .append(LEASE_STREAM, table.revision, &events, &system_metadata())
            .await
        {
            // Renewed as of when this attempt began (taking partitions does not count).
            Ok(Appended::Written { .. }) => shared.renewed_ms.store(attempt, Ordering::Release),
            Ok(Appended::Conflict) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the saga's lease");
                return false;
            }
        }
        // Taking partitions holds up the next renewal: past half the fence, the rest are taken
        // after it (the table keeps them this instance's), so a slow store never fences an
        // instance for taking up its own partitions.
        let mut all_taken = true;
        for partition in mine.into_iter().filter(|p| !shared.taken(*p)) {
            if shared.since_renewed_ms() > FENCE_MS / 2 {
                all_taken = false;
                break;
            }
            if let Err(e) = take(shared, partition).await {
                tracing::warn!(error = %e, partition, "cannot take the partition yet");
                all_taken = false;
            }
        }
        if all_taken {
            shared.leased.store(true, Ordering::Release);
        }
        return true;
    }
    false
}

fn system_metadata() -> Metadata {
    Metadata {
        correlation_id: Uuid::nil(),
        causation_id: Uuid::nil(),
        actor: Actor {
            kind: ActorKind::System,
            id: "saga".to_string(),
        },
        at: Utc::now(),
        request_id: None,
        trace_parent: None,
    }
}

/// Stores each held partition's checkpoint and timer changes whenever there are any, at most
/// once per `interval`, one append per partition. Each stream keeps only the latest
/// `CHECKPOINTS_KEPT`.
async fn store_checkpoints(shared: Arc<Shared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let mut books = shared.books.lock().await;
        for (partition, books) in books.iter_mut().enumerate() {
            let Some(books) = books else { continue };
            let record = match &lock(&shared.trackers)[partition] {
                Some(tracker) => Record {
                    timers: tracker.unrecorded.clone(),
                    checkpoint: tracker.committed,
                },
                None => continue,
            };
            let recorded = record.timers.clone();
            if !store_record(&shared, partition, books, record).await {
                continue;
            }
            let mut trackers = lock(&shared.trackers);
            let Some(tracker) = &mut trackers[partition] else {
                continue;
            };
            for (order_id, timer) in recorded {
                // Unless it changed again meanwhile.
                if tracker.unrecorded.get(&order_id) == Some(&timer) {
                    tracker.unrecorded.remove(&order_id);
                }
            }
        }
    }
}

/// Stores what `record` changes in the partition's bookkeeping (with a count when one is due),
/// keeping `books` as stored without reading it back (the count holds every timer: with
/// thousands of orders awaiting their deposit, reading it back each second for each partition
/// was what slowed every order every second); false if it was not stored.
async fn store_record(
    shared: &Shared,
    partition: usize,
    books: &mut eventlog::Loaded<Books>,
    record: Record,
) -> bool {
    let events = match Bookkeeping::decide(&books.state, record) {
        Ok(events) if events.is_empty() => return true,
        Ok(events) => events,
        Err(e) => {
            tracing::error!(error = %e, partition, "the saga's bookkeeping is not stored");
            return false;
        }
    };
    let stream = checkpoint_stream(partition);
    if books.revision.is_some() && books.since_snapshot.is_none() {
        // Checkpoints only, written before timers were kept: count now.
        books.since_snapshot = Some(eventlog::SNAPSHOT_EVERY_EVENTS);
    }
    let appended = shared
        .log
        .append_decided_in_place::<Bookkeeping>(&stream, books, &events, &system_metadata())
        .await;
    match appended {
        Ok(Appended::Written { .. }) => return true,
        // Someone else wrote (an operator rewinding the saga): read theirs, write ours next.
        Ok(Appended::Conflict) => {}
        Err(e) => {
            tracing::warn!(error = %e, partition, "cannot store the saga checkpoint");
            return false;
        }
    }
    match shared.log.load::<Bookkeeping>(&stream).await {
        Ok(loaded) => *books = loaded,
        Err(e) => tracing::warn!(error = %e, partition, "cannot read the saga's bookkeeping back"),
    }
    false
}

fn position(p: LogPosition) -> api::saga::Position {
    api::saga::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

#[utoipa::path(get, path = "/saga/status", tag = "saga",
    description = "Where this process manager instance stands: its partitions, caught up, their oldest checkpoint, the events it is handling, its timers, open breakers, parked triggers.",
    responses((status = 200, description = "its status", body = api::saga::SagaStatus)))]
async fn status(State(shared): State<Arc<Shared>>) -> axum::Json<api::saga::SagaStatus> {
    let (partitions, started_after, checkpoint, pending_events, unfinished_events) = {
        let trackers = lock(&shared.trackers);
        // Only what it works now: a partition being let go, or fenced, is not.
        let held: Vec<(usize, &Tracker)> = trackers
            .iter()
            .enumerate()
            .filter(|(p, _)| shared.holds(*p))
            .filter_map(|(p, t)| t.as_ref().map(|t| (p, t)))
            .collect();
        (
            held.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            held.iter().map(|(_, t)| t.started_after).min().flatten(),
            held.iter().map(|(_, t)| t.committed).min().flatten(),
            held.iter().map(|(_, t)| t.pending.len()).sum(),
            held.iter().map(|(_, t)| t.unfinished).sum(),
        )
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
    .map(|u| u.service().to_string())
    .collect();
    let (parked, parked_count) = {
        let shown = lock(&shared.parked);
        let mut parked: Vec<api::saga::ParkedTrigger> = shown.values().cloned().collect();
        parked.sort_by_key(|p| p.since);
        parked.truncate(api::saga::PARKED_SHOWN_MAX);
        (parked, shown.values().map(|p| p.behind + 1).sum())
    };
    axum::Json(api::saga::SagaStatus {
        instance: shared.instance.to_string(),
        checkpoint_read: shared.leased.load(Ordering::Acquire),
        partitions,
        caught_up: shared.caught_up.load(Ordering::Acquire),
        started_after: started_after.map(position),
        checkpoint: checkpoint.map(position),
        pending_events,
        unfinished_events,
        deposit_timers: lock(&shared.deadlines).len(),
        breakers_open,
        follower_lag_s: eventlog::seconds_stalled("saga"),
        events_behind: eventlog::events_behind("saga"),
        parked,
        parked_count,
    })
}

#[utoipa::path(post, path = "/saga/parked/{order_id}/retry", tag = "saga",
    params(("order_id" = String, Path, description = "the order's id (a UUID)")),
    description = "Seller or system: the order's parked trigger is tried again now, and the request recorded on its saga stream (`TriggerRetried`, with who asked).",
    responses(
        (status = 200, description = "tried again", body = api::saga::Retried),
        (status = 404, description = "nothing parked for the order on this instance")))]
async fn retry_parked(
    State(shared): State<Arc<Shared>>,
    caller: servicekit::Caller,
    Path(order_id): Path<String>,
) -> Result<axum::Json<api::saga::Retried>, servicekit::Problem> {
    use servicekit::Problem;
    caller.must_be(
        &[ActorKind::Seller, ActorKind::System],
        "retry a parked trigger",
    )?;
    let order_id = OrderId::parse(&order_id).map_err(|e| Problem::invalid_field("orderId", &e))?;
    let partition = partition_of(order_id);
    let trigger = match lock(&shared.parked).get(&order_id) {
        Some(parked) if shared.holds(partition) => parked.trigger.clone(),
        _ => {
            return Err(Problem::not_found(format!(
                "nothing is parked for order {order_id} on this saga instance"
            )))
        }
    };
    record_retry(&shared, &caller, order_id, &trigger).await?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job = Job::RetryNow(order_id, answer);
    if shared.workers[partition].send(job).await.is_err() || answered.await.is_err() {
        return Err(Problem::unavailable("the saga is stopping", 1));
    }
    Ok(axum::Json(api::saga::Retried {
        order_id: order_id.to_string(),
        trigger,
        still_parked: lock(&shared.parked).get(&order_id).cloned(),
    }))
}

/// Appends `TriggerRetried` to the order's saga stream at its expected revision.
async fn record_retry(
    shared: &Shared,
    caller: &servicekit::Caller,
    order_id: OrderId,
    trigger: &str,
) -> Result<(), servicekit::Problem> {
    let stream = format!("saga-{order_id}");
    let event = domain::saga::SagaEvent::TriggerRetried(domain::saga::TriggerRetried {
        order_id,
        trigger: trigger.to_string(),
        at: Utc::now(),
    });
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, %stream, "cannot record the retry");
        servicekit::Problem::unavailable("the event store cannot be reached", 1)
    };
    for _ in 0..=CONFLICT_RETRIES_MAX {
        let loaded = shared
            .log
            .load::<Saga>(&stream)
            .await
            .map_err(|e| unavailable(&e))?;
        let metadata = caller.metadata(order_id.as_uuid());
        match shared
            .log
            .append(
                &stream,
                loaded.revision,
                std::slice::from_ref(&event),
                &metadata,
            )
            .await
        {
            Ok(Appended::Written { .. }) => return Ok(()),
            Ok(Appended::Conflict) => continue,
            Err(e) => return Err(unavailable(&e)),
        }
    }
    Err(servicekit::Problem::unavailable(
        "the saga's stream kept changing; try again",
        1,
    ))
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
