//! One subscription group at work: a task that reads its source, hands events to its consumers
//! by the group's strategy, and keeps what is owed — in flight (with a timeout), to retry, to
//! park — until each event is acknowledged, skipped or parked.
//!
//! What it owes lives in memory; what must survive lives in the log: the checkpoint (the last
//! event before which everything was done; a restart delivers again what came after, so
//! delivery is at least once), and parked events (links on the group's parked stream).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;
use uuid::Uuid;

use super::config::{
    GroupConfig, Source, Strategy, CHECKPOINT_EVENT_TYPE, CONSUMERS_PER_GROUP_MAX,
    WINDOW_EVENTS_MAX,
};
use crate::filter::EventFilter;
use crate::storage::links::{link_data, LINK_EVENT_TYPE};
use crate::storage::metadata::metastream_of;
use crate::storage::{
    Direction, ExpectedRevision, NewEvent, RecordedEvent, Store, StreamPage, Text,
};

/// How often in-flight timeouts and checkpoints are looked at, in milliseconds.
const TICK_MS: u64 = 100;
/// Parked events one replay sends again at most (the rest stay parked for the next replay), so
/// a replay holds no more than a group's window.
const REPLAY_EVENTS_MAX: u64 = WINDOW_EVENTS_MAX as u64;
/// Source reads one turn of a group's loop makes at most.
const FILL_READS_PER_TURN: usize = 4;
/// Commands a group's queue holds before senders wait.
pub const COMMANDS_QUEUED_MAX: usize = 1_024;

/// An event handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: RecordedEvent,
    /// The link it came through, when the group resolves links.
    pub link: Option<RecordedEvent>,
    pub retry_count: u32,
}

impl Delivery {
    /// The id a consumer acknowledges: the link's when there is one (as on a node).
    pub fn id(&self) -> Uuid {
        self.link.as_ref().unwrap_or(&self.event).id
    }
}

/// What a consumer may do with what it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    Park,
    Retry,
    Skip,
    Stop,
}

pub type Outbox = mpsc::Sender<Result<Delivery, Status>>;

pub enum Command {
    Join {
        consumer: u64,
        name: String,
        buffer_size: usize,
        deliveries: Outbox,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    Leave {
        consumer: u64,
    },
    Ack {
        consumer: u64,
        ids: Vec<Uuid>,
    },
    Nack {
        consumer: u64,
        ids: Vec<Uuid>,
        action: NackAction,
        reason: String,
    },
    Info {
        reply: oneshot::Sender<Info>,
    },
    ReplayParked {
        stop_at: Option<u64>,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// The group is deleted, updated or the server stops: consumers are told `why`; `done` is
    /// answered once the task has ended (nothing of it writes after that).
    Stop {
        why: Status,
        done: oneshot::Sender<()>,
    },
}

/// What `GetInfo` shows of a running group.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub status: &'static str,
    pub connections: Vec<ConnectionInfo>,
    pub total_items: u64,
    pub last_checkpoint: Option<u64>,
    pub last_known: Option<u64>,
    pub read_buffer: usize,
    pub retry_buffer: usize,
    pub in_flight: usize,
    pub outstanding: usize,
    pub parked: u64,
}

#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub name: String,
    pub total_items: u64,
    pub available_slots: usize,
    pub in_flight: usize,
}

struct Message {
    /// Its place in the window (`None`: a replayed parked event, outside the checkpoint).
    seq: Option<u64>,
    delivery: Delivery,
}

/// A replay of parked events under way: the parked stream is truncated past `through` once
/// every replayed event is done, so a crash before that leaves them parked (replayed again
/// later), never lost.
struct Replay {
    /// The last parked revision replayed.
    through: u64,
    /// Replayed events not done yet.
    pending: usize,
    /// Parked events the replay takes off the parked count when it ends.
    count: u64,
}

struct InFlight {
    message: Message,
    consumer: u64,
    /// When it is sent again if not answered (`None`: never).
    due: Option<Instant>,
}

struct Consumer {
    id: u64,
    name: String,
    buffer_size: usize,
    in_flight: usize,
    total_items: u64,
    deliveries: Outbox,
}

/// One event read from the source and not yet behind the checkpoint.
struct Slot {
    cursor: u64,
    done: bool,
}

pub struct Group {
    config: GroupConfig,
    store: Store,
    filter: Option<EventFilter>,
    commands: mpsc::Receiver<Command>,
    consumers: Vec<Consumer>,
    round_robin_next: usize,
    /// The next revision (stream) or position ($all) to read.
    next_read: u64,
    /// Cursor of the last event read (filtered out or not).
    read_through: Option<u64>,
    /// Nothing new on the source since the last read came back empty.
    caught_up: bool,
    queue: VecDeque<Message>,
    retry: VecDeque<Message>,
    in_flight: HashMap<Uuid, InFlight>,
    window: VecDeque<Slot>,
    window_first_seq: u64,
    next_seq: u64,
    /// Cursor of the last event popped off the window's front, all done.
    done_through: Option<u64>,
    checkpoint: Option<u64>,
    done_since_checkpoint: u64,
    checkpointed_at: Instant,
    parked: u64,
    replay: Option<Replay>,
    total_items: u64,
}

impl Group {
    pub fn new(config: GroupConfig, store: Store, commands: mpsc::Receiver<Command>) -> Group {
        let filter = config.filter.as_ref().and_then(|f| f.filter().ok());
        Group {
            next_read: config.start_at,
            config,
            store,
            filter,
            commands,
            consumers: Vec::new(),
            round_robin_next: 0,
            read_through: None,
            caught_up: false,
            queue: VecDeque::new(),
            retry: VecDeque::new(),
            in_flight: HashMap::new(),
            window: VecDeque::new(),
            window_first_seq: 0,
            next_seq: 0,
            done_through: None,
            checkpoint: None,
            done_since_checkpoint: 0,
            checkpointed_at: Instant::now(),
            parked: 0,
            replay: None,
            total_items: 0,
        }
    }

    pub async fn run(mut self) {
        let mut live = self.store.live();
        self.resume().await;
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        loop {
            self.fill().await;
            self.dispatch();
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Stop { why, done }) => {
                        self.drop_consumers(why);
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.handle(command).await,
                    None => return self.drop_consumers(Status::unavailable("the event store is stopping")),
                },
                committed = live.recv() => match committed {
                    Ok(committed) => {
                        let links = match &self.config.source {
                            Source::Stream(name) => committed.links.iter().any(|l| l.stream == *name),
                            Source::All => false,
                        };
                        if committed.elided || links || committed.events.iter().any(|e| self.concerns(e)) {
                            self.caught_up = false;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                    Err(broadcast::error::RecvError::Closed) => {
                        return self.drop_consumers(Status::unavailable("the event store is stopping"))
                    }
                },
                _ = tick.tick() => {
                    self.expire().await;
                    self.checkpoint_if_due().await;
                    self.finish_replay().await;
                }
                // More to read: go round again (commands first) instead of waiting.
                () = std::future::ready(()), if self.wants_reading() => {}
            }
        }
    }

    /// Picks up from the stored checkpoint, and counts what is parked.
    async fn resume(&mut self) {
        let stream = self.config.checkpoint_stream();
        if let Ok(StreamPage::Events(events)) = self
            .store
            .read_stream(stream, u64::MAX, Direction::Backwards, 1)
            .await
        {
            let stored = events
                .first()
                .and_then(|e| checkpoint_value(&self.config.source, &e.data));
            if let Some(cursor) = stored {
                self.checkpoint = Some(cursor);
                self.next_read = cursor.saturating_add(1);
            }
        }
        self.parked = self.parked_count().await;
    }

    /// Parked events not replayed yet: from the parked stream's first visible revision to its
    /// last.
    async fn parked_count(&self) -> u64 {
        let edge = |from, direction| {
            let stream = self.config.parked_stream();
            async move {
                match self.store.read_stream(stream, from, direction, 1).await {
                    Ok(StreamPage::Events(events)) => events.first().map(|e| e.revision),
                    _ => None,
                }
            }
        };
        match (
            edge(0, Direction::Forwards).await,
            edge(u64::MAX, Direction::Backwards).await,
        ) {
            (Some(first), Some(last)) => last.saturating_sub(first).saturating_add(1),
            _ => 0,
        }
    }

    fn concerns(&self, event: &RecordedEvent) -> bool {
        match &self.config.source {
            Source::Stream(name) => event.stream.as_str() == name,
            Source::All => !is_bookkeeping(event.stream.as_str()),
        }
    }

    fn cursor_of(&self, event: &RecordedEvent) -> u64 {
        match self.config.source {
            Source::Stream(_) => event.revision,
            Source::All => event.position,
        }
    }

    fn wants_reading(&self) -> bool {
        !self.caught_up && self.window.len() < self.config.settings.window_events()
    }

    /// Reads from the source while the window has room and there may be more, a few pages at
    /// a time, so commands (acks, joins, info) are never kept waiting by a long history.
    async fn fill(&mut self) {
        let window_max = self.config.settings.window_events();
        for _ in 0..FILL_READS_PER_TURN {
            if !self.wants_reading() {
                return;
            }
            let want = (self.config.settings.read_batch_size as usize)
                .min(window_max - self.window.len())
                .max(1);
            let events = match &self.config.source {
                Source::Stream(name) => match self
                    .store
                    .read_stream(name.clone(), self.next_read, Direction::Forwards, want)
                    .await
                {
                    Ok(StreamPage::Events(events)) => events,
                    _ => Vec::new(),
                },
                Source::All => self
                    .store
                    .read_all(self.next_read, Direction::Forwards, want)
                    .await
                    .unwrap_or_default(),
            };
            if events.is_empty() {
                self.caught_up = true;
                return;
            }
            for event in events {
                let cursor = self.cursor_of(&event);
                self.next_read = cursor.saturating_add(1);
                self.read_through = Some(cursor);
                if self.concerns(&event) && self.filter.as_ref().is_none_or(|f| f.matches(&event)) {
                    let delivery = self.delivery_of(event).await;
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.window.push_back(Slot {
                        cursor,
                        done: false,
                    });
                    self.queue.push_back(Message {
                        seq: Some(seq),
                        delivery,
                    });
                }
            }
        }
    }

    async fn delivery_of(&self, event: RecordedEvent) -> Delivery {
        if self.config.settings.resolve_links && event.event_type.as_str() == LINK_EVENT_TYPE {
            if let Some(target) = self.store.link_target(&event).await {
                return Delivery {
                    event: target,
                    link: Some(event),
                    retry_count: 0,
                };
            }
        }
        Delivery {
            event,
            link: None,
            retry_count: 0,
        }
    }

    /// Hands out what is waiting (retries first), while a consumer has room.
    fn dispatch(&mut self) {
        loop {
            let from_retry = !self.retry.is_empty();
            let Some(next) = self.retry.front().or_else(|| self.queue.front()) else {
                return;
            };
            if self.in_flight.contains_key(&next.delivery.id()) {
                // The same event id is already out (ids repeat across `$all`): it waits until
                // that one is settled, so an ack is never taken for the wrong one.
                return;
            }
            let key = self.pin_key(&next.delivery);
            let Some(index) = self.choose(&key) else {
                return;
            };
            let message = if from_retry {
                self.retry.pop_front()
            } else {
                self.queue.pop_front()
            }
            .expect("looked at above");
            let consumer = &mut self.consumers[index];
            match consumer.deliveries.try_send(Ok(message.delivery.clone())) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The consumer is gone: it leaves now, the message goes to another.
                    let gone = consumer.id;
                    self.retry.push_front(message);
                    self.leave(gone);
                    continue;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.retry.push_front(message);
                    return;
                }
            }
            consumer.in_flight += 1;
            consumer.total_items += 1;
            self.total_items += 1;
            // A timeout of 0 means none, as the clients mean it.
            let timeout_ms = self.config.settings.message_timeout_ms;
            let due = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
            let consumer = consumer.id;
            self.in_flight.insert(
                message.delivery.id(),
                InFlight {
                    message,
                    consumer,
                    due,
                },
            );
        }
    }

    /// What a pinned strategy keeps on one consumer: the event's stream, or its correlation id
    /// (empty for the other strategies).
    fn pin_key(&self, delivery: &Delivery) -> String {
        match self.config.settings.strategy {
            Strategy::PinnedByCorrelation => correlation_of(&delivery.event)
                .unwrap_or_else(|| delivery.event.stream.as_str().to_string()),
            Strategy::Pinned => delivery.event.stream.as_str().to_string(),
            Strategy::RoundRobin | Strategy::DispatchToSingle => String::new(),
        }
    }

    /// The consumer the strategy gives an event to, if it has room.
    fn choose(&mut self, key: &str) -> Option<usize> {
        let count = self.consumers.len();
        if count == 0 {
            return None;
        }
        let has_room = |c: &Consumer| c.in_flight < c.buffer_size;
        match self.config.settings.strategy {
            Strategy::RoundRobin => {
                let chosen = (0..count)
                    .map(|k| (self.round_robin_next + k) % count)
                    .find(|&i| has_room(&self.consumers[i]))?;
                self.round_robin_next = chosen + 1;
                Some(chosen)
            }
            Strategy::DispatchToSingle => self.consumers.iter().position(has_room),
            Strategy::Pinned | Strategy::PinnedByCorrelation => {
                let mut hasher = std::hash::DefaultHasher::new();
                key.hash(&mut hasher);
                let chosen = (hasher.finish() % count as u64) as usize;
                has_room(&self.consumers[chosen]).then_some(chosen)
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                consumer,
                name,
                buffer_size,
                deliveries,
                reply,
            } => {
                let _ = reply.send(self.join(consumer, name, buffer_size, deliveries));
            }
            Command::Leave { consumer } => self.leave(consumer),
            Command::Ack { consumer, ids } => {
                for id in ids {
                    if let Some(message) = self.take_in_flight(consumer, id) {
                        self.complete(&message);
                    }
                }
            }
            Command::Nack {
                consumer,
                ids,
                action,
                reason,
            } => self.nack(consumer, ids, action, &reason).await,
            Command::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Command::ReplayParked { stop_at, reply } => {
                let _ = reply.send(self.replay_parked(stop_at).await);
            }
            Command::Stop { done, .. } => {
                let _ = done.send(());
            }
        }
    }

    fn join(
        &mut self,
        id: u64,
        name: String,
        buffer_size: usize,
        deliveries: Outbox,
    ) -> Result<(), Status> {
        let max = match self.config.settings.max_subscriber_count as usize {
            0 => CONSUMERS_PER_GROUP_MAX,
            n => n.min(CONSUMERS_PER_GROUP_MAX),
        };
        if self.consumers.len() >= max {
            return Err(super::refusal(
                tonic::Code::FailedPrecondition,
                format!("the group has its maximum of {max} consumers"),
                "maximum-subscribers-reached",
                &self.config,
            ));
        }
        self.consumers.push(Consumer {
            id,
            name,
            buffer_size: buffer_size.max(1),
            in_flight: 0,
            total_items: 0,
            deliveries,
        });
        Ok(())
    }

    /// A consumer went away: what it held is handed out again, first, as it was.
    fn leave(&mut self, consumer: u64) {
        self.consumers.retain(|c| c.id != consumer);
        let mut held: Vec<Message> = Vec::new();
        self.in_flight.retain(|_, f| {
            if f.consumer == consumer {
                held.push(Message {
                    seq: f.message.seq,
                    delivery: f.message.delivery.clone(),
                });
                false
            } else {
                true
            }
        });
        held.sort_by_key(|m| m.seq);
        for message in held.into_iter().rev() {
            self.retry.push_front(message);
        }
    }

    fn take_in_flight(&mut self, consumer: u64, id: Uuid) -> Option<Message> {
        let taken = self.in_flight.remove(&id)?;
        if let Some(c) = self.consumers.iter_mut().find(|c| c.id == taken.consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        if taken.consumer != consumer {
            tracing::debug!(%id, "acknowledged by another consumer than the one it was sent to");
        }
        Some(taken.message)
    }

    async fn nack(&mut self, consumer: u64, ids: Vec<Uuid>, action: NackAction, reason: &str) {
        for id in ids {
            let Some(message) = self.take_in_flight(consumer, id) else {
                continue;
            };
            match action {
                NackAction::Park => self.park(message, reason).await,
                NackAction::Retry => self.retry_or_park(message).await,
                NackAction::Skip => self.complete(&message),
                NackAction::Stop => self.retry.push_front(message),
            }
        }
        if action == NackAction::Stop {
            let why = Status::cancelled(format!("the consumer stopped the subscription: {reason}"));
            if let Some(c) = self.consumers.iter().find(|c| c.id == consumer) {
                let _ = c.deliveries.try_send(Err(why));
            }
            self.leave(consumer);
        }
    }

    async fn retry_or_park(&mut self, mut message: Message) {
        message.delivery.retry_count += 1;
        if message.delivery.retry_count > self.config.settings.max_retry_count {
            self.park(message, "the maximum retry count was reached")
                .await;
        } else {
            self.retry.push_back(message);
        }
    }

    /// Writes a link to the event on the parked stream; the event is then done.
    async fn park(&mut self, message: Message, reason: &str) {
        let original = message
            .delivery
            .link
            .as_ref()
            .unwrap_or(&message.delivery.event);
        let metadata =
            serde_json::json!({ "reason": reason, "$causedBy": original.id.to_string() });
        let link = NewEvent {
            id: Uuid::new_v4(),
            event_type: Text::from_static(LINK_EVENT_TYPE),
            content_type: Text::from_static(crate::wire::CONTENT_TYPE_BINARY),
            custom_metadata: Bytes::from(serde_json::to_vec(&metadata).unwrap_or_default()),
            data: Bytes::from(link_data(original.revision, original.stream.as_str())),
        };
        match self
            .store
            .append(
                self.config.parked_stream(),
                ExpectedRevision::Any,
                vec![link],
            )
            .await
        {
            Ok(_) => {
                self.parked += 1;
                self.complete(&message);
            }
            Err(error) => {
                tracing::warn!(%error, group = %self.config.group, "cannot park an event; it is retried");
                self.retry.push_back(message);
            }
        }
    }

    /// The event is done (acknowledged, skipped or parked): the window's done front moves on.
    fn complete(&mut self, message: &Message) {
        let Some(seq) = message.seq else {
            if let Some(replay) = &mut self.replay {
                replay.pending = replay.pending.saturating_sub(1);
            }
            return;
        };
        let Some(index) = seq.checked_sub(self.window_first_seq) else {
            return;
        };
        if let Some(slot) = self.window.get_mut(index as usize) {
            slot.done = true;
            self.done_since_checkpoint += 1;
        }
        while self.window.front().is_some_and(|s| s.done) {
            let slot = self.window.pop_front().expect("looked at above");
            self.window_first_seq += 1;
            self.done_through = Some(slot.cursor);
        }
    }

    /// Messages whose consumer did not answer within the timeout are retried (or parked).
    async fn expire(&mut self) {
        let now = Instant::now();
        let due: Vec<Uuid> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.due.is_some_and(|due| due <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(taken) = self.in_flight.get(&id).map(|f| f.consumer) {
                if let Some(message) = self.take_in_flight(taken, id) {
                    self.retry_or_park(message).await;
                }
            }
        }
    }

    /// Everything up to here is done: behind the window, or read and filtered out.
    fn safe_point(&self) -> Option<u64> {
        if self.window.is_empty() {
            self.read_through.or(self.done_through)
        } else {
            self.done_through
        }
    }

    async fn checkpoint_if_due(&mut self) {
        let Some(point) = self.safe_point() else {
            return;
        };
        if self.checkpoint.is_some_and(|c| c >= point) {
            return;
        }
        let settings = &self.config.settings;
        let enough = self.done_since_checkpoint >= u64::from(settings.min_checkpoint_count);
        let long_enough =
            self.checkpointed_at.elapsed() >= Duration::from_millis(settings.checkpoint_after_ms);
        let too_many = self.done_since_checkpoint >= u64::from(settings.max_checkpoint_count);
        if !(too_many || (enough && long_enough)) {
            return;
        }
        let event = NewEvent {
            id: Uuid::new_v4(),
            event_type: Text::from_static(CHECKPOINT_EVENT_TYPE),
            content_type: Text::from_static(crate::wire::CONTENT_TYPE_JSON),
            custom_metadata: Bytes::new(),
            data: Bytes::from(checkpoint_data(&self.config.source, point)),
        };
        match self
            .store
            .append(
                self.config.checkpoint_stream(),
                ExpectedRevision::Any,
                vec![event],
            )
            .await
        {
            Ok(_) => {
                self.checkpoint = Some(point);
                self.done_since_checkpoint = 0;
                self.checkpointed_at = Instant::now();
            }
            Err(error) => {
                tracing::warn!(%error, group = %self.config.group, "cannot store a checkpoint")
            }
        }
    }

    /// The parked stream's links readers still see (those not replayed yet).
    async fn parked_visible(&self) -> Vec<RecordedEvent> {
        let mut found = Vec::new();
        let mut from = 0;
        while (found.len() as u64) < REPLAY_EVENTS_MAX {
            let page = self
                .store
                .read_stream(self.config.parked_stream(), from, Direction::Forwards, 512)
                .await;
            let Ok(StreamPage::Events(events)) = page else {
                break;
            };
            let Some(last) = events.last() else { break };
            from = last.revision + 1;
            found.extend(events);
        }
        found
    }

    /// Parked events are handed out again (up to `stop_at`), then hidden from the parked
    /// stream (`$tb` past them).
    async fn replay_parked(&mut self, stop_at: Option<u64>) -> Result<(), Status> {
        if self.replay.is_some() {
            return Err(Status::failed_precondition(
                "a replay of parked events is still going on: try again once it is done",
            ));
        }
        let mut parked = self.parked_visible().await;
        parked.truncate(stop_at.unwrap_or(REPLAY_EVENTS_MAX).min(REPLAY_EVENTS_MAX) as usize);
        let Some(through) = parked.last().map(|e| e.revision) else {
            return Ok(());
        };
        let mut pending = 0;
        for link in &parked {
            if let Some(event) = self.store.link_target(link).await {
                let delivery = self.delivery_of(event).await;
                self.retry.push_back(Message {
                    seq: None,
                    delivery,
                });
                pending += 1;
            }
        }
        self.replay = Some(Replay {
            through,
            pending,
            count: parked.len() as u64,
        });
        self.finish_replay().await;
        Ok(())
    }

    /// Once every replayed event is done, the parked stream hides them (`$tb` past them).
    async fn finish_replay(&mut self) {
        let Some(replay) = self.replay.as_ref().filter(|r| r.pending == 0) else {
            return;
        };
        let truncate = serde_json::json!({ "$tb": replay.through.saturating_add(1) });
        let metadata = NewEvent {
            id: Uuid::new_v4(),
            event_type: Text::from_static(crate::storage::metadata::METADATA_EVENT_TYPE),
            content_type: Text::from_static(crate::wire::CONTENT_TYPE_JSON),
            custom_metadata: Bytes::new(),
            data: Bytes::from(truncate.to_string()),
        };
        let stream = metastream_of(&self.config.parked_stream());
        match self
            .store
            .append(stream, ExpectedRevision::Any, vec![metadata])
            .await
        {
            Ok(_) => {
                self.parked = self.parked.saturating_sub(replay.count);
                self.replay = None;
            }
            Err(error) => {
                tracing::warn!(%error, group = %self.config.group, "cannot truncate the parked stream yet")
            }
        }
    }

    fn info(&self) -> Info {
        Info {
            status: if self.caught_up { "Live" } else { "CatchingUp" },
            connections: self
                .consumers
                .iter()
                .map(|c| ConnectionInfo {
                    name: c.name.clone(),
                    total_items: c.total_items,
                    available_slots: c.buffer_size.saturating_sub(c.in_flight),
                    in_flight: c.in_flight,
                })
                .collect(),
            total_items: self.total_items,
            last_checkpoint: self.checkpoint,
            last_known: self.read_through,
            read_buffer: self.queue.len(),
            retry_buffer: self.retry.len(),
            in_flight: self.in_flight.len(),
            outstanding: self.window.len(),
            parked: self.parked,
        }
    }

    fn drop_consumers(&mut self, why: Status) {
        for consumer in &self.consumers {
            let _ = consumer.deliveries.try_send(Err(why.clone()));
        }
        self.consumers.clear();
    }
}

/// The persistent subscriptions' own streams (configuration, checkpoints, parked events): a
/// group on `$all` never gets them, or parking would feed itself.
fn is_bookkeeping(stream: &str) -> bool {
    stream.starts_with("$persistentsubscription-") || stream == super::config::CONFIG_STREAM
}

/// `$correlationId` of an event's metadata, if it is JSON and has one.
fn correlation_of(event: &RecordedEvent) -> Option<String> {
    let metadata: serde_json::Value = serde_json::from_slice(&event.custom_metadata).ok()?;
    metadata.get("$correlationId")?.as_str().map(str::to_string)
}

/// A checkpoint as stored: a stream revision, or `$all`'s position as a node writes it.
fn checkpoint_data(source: &Source, cursor: u64) -> Vec<u8> {
    match source {
        Source::Stream(_) => cursor.to_string().into_bytes(),
        Source::All => format!("\"C:{cursor}/P:{cursor}\"").into_bytes(),
    }
}

fn checkpoint_value(source: &Source, data: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    match source {
        Source::Stream(_) => value.as_u64(),
        Source::All => {
            let text = value.as_str()?;
            let commit = text.strip_prefix("C:")?.split('/').next()?;
            commit.parse().ok()
        }
    }
}

/// A position for `GetInfo`: a revision, or `C:{commit}/P:{prepare}`.
pub fn shown(source: &Source, cursor: u64) -> String {
    match source {
        Source::Stream(_) => cursor.to_string(),
        Source::All => format!("C:{cursor}/P:{cursor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_read_back_as_written() {
        let stream = Source::Stream("order-1".into());
        assert_eq!(
            checkpoint_value(&stream, &checkpoint_data(&stream, 41)),
            Some(41)
        );
        assert_eq!(
            checkpoint_value(&Source::All, &checkpoint_data(&Source::All, 9)),
            Some(9)
        );
        assert_eq!(checkpoint_value(&Source::All, b"12"), None);
    }
}
