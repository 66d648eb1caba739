//! The typed event-store layer between the pure domain and the event store: load an aggregate
//! from its stream, decide, append the new events with the stream's expected revision, and on a
//! conflict reload and decide again (a bounded number of times) — never overwrite.
//!
//! It owns: the event envelope (JSON data from the domain; metadata with `$correlationId`,
//! `$causationId`, who acted and when) and the optimistic-concurrency loop.
//!
//! It must not: hold business rules (they are the domain's) or know HTTP. It talks to any
//! EventStoreDB-protocol server through the official client, so it cannot tell the embedded store
//! from a real node.

pub mod catalogue;
mod progress;
mod reach;

pub use progress::{events_behind, seconds_stalled, stalled_followers};
pub use reach::{StoreReach, STORE_PROBE_MS};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{Decider, Event};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, Position,
    ReadStreamOptions, StreamPosition, SubscribeToAllOptions, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Times a command is decided again after losing a race for the stream's revision.
pub const CONFLICT_RETRIES_MAX: u32 = 32;
/// Upper bound of the random pause before deciding again, in milliseconds.
const CONFLICT_BACKOFF_MS_MAX: u64 = 5;
/// Most events loaded for one aggregate: a stream longer than this since its latest snapshot
/// is a design error here.
pub const AGGREGATE_EVENTS_MAX: usize = 100_000;
/// Events an aggregate that keeps snapshots appends between two of them: loading it reads at
/// most this many events past the latest.
pub const SNAPSHOT_EVERY_EVENTS: usize = 100;
/// Events asked for at once past the first read of a load: a load that then meets its snapshot
/// reads the rest of that page to its end (`read_to_end`), so a page bounds what is read for nothing.
const LOAD_PAGE_EVENTS: usize = 1_000;

/// Who caused a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub kind: ActorKind,
    /// The account name for a customer or the seller; the component's name for the system.
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActorKind {
    Customer,
    Seller,
    System,
}

/// Longest actor id, in characters.
pub const ACTOR_ID_CHARS_MAX: usize = 64;

impl ActorKind {
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::Customer => "customer",
            ActorKind::Seller => "seller",
            ActorKind::System => "system",
        }
    }
}

impl Actor {
    /// A part of the shop acting on its own (`system:saga`).
    pub fn system(name: &str) -> Actor {
        Actor {
            kind: ActorKind::System,
            id: name.to_string(),
        }
    }
}

/// An actor's text form, as the `x-actor` header carries it: `kind:id`.
impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an actor looks like customer:<name>, seller:<name> or system:<name>; names have 1 to \
     {ACTOR_ID_CHARS_MAX} letters, digits, '-' or '_'"
)]
pub struct BadActor;

impl std::str::FromStr for Actor {
    type Err = BadActor;

    fn from_str(text: &str) -> Result<Actor, BadActor> {
        let (kind, id) = text.split_once(':').ok_or(BadActor)?;
        let kind = match kind {
            "customer" => ActorKind::Customer,
            "seller" => ActorKind::Seller,
            "system" => ActorKind::System,
            _ => return Err(BadActor),
        };
        let valid_id = !id.is_empty()
            && id.chars().count() <= ACTOR_ID_CHARS_MAX
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            return Err(BadActor);
        }
        Ok(Actor {
            kind,
            id: id.to_string(),
        })
    }
}

/// The metadata every event carries, after EventStoreDB conventions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The process the event belongs to: the order's id where an order is involved.
    #[serde(rename = "$correlationId")]
    pub correlation_id: Uuid,
    /// The event or command that caused this one.
    #[serde(rename = "$causationId")]
    pub causation_id: Uuid,
    pub actor: Actor,
    pub at: DateTime<Utc>,
    /// The request id the gateway gave the HTTP request, when there was one.
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// The W3C trace context of the span that appended it (`00-<trace>-<span>-<flags>`), so
    /// whoever acts on the event continues the same trace.
    #[serde(
        rename = "traceparent",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub trace_parent: Option<String>,
}

/// An event as read back, with where it is and why it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E> {
    pub event: E,
    pub id: Uuid,
    pub metadata: Option<Metadata>,
    pub revision: u64,
    pub position: u64,
}

/// An aggregate's state and the revision it was read at (`None`: the stream does not exist).
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub state: S,
    pub revision: Option<u64>,
    /// The log position of the stream's last event.
    pub position: Option<u64>,
    /// Events after the latest snapshot; `None` when the stream holds none (read from its start).
    pub since_snapshot: Option<usize>,
}

/// A stream as read: the aggregate's events, and the revision and position of its last event
/// (of any type).
struct StreamRead<E> {
    events: Vec<Recorded<E>>,
    revision: Option<u64>,
    position: Option<u64>,
}

impl<S: Default> Loaded<S> {
    /// A stream that does not exist.
    fn none() -> Loaded<S> {
        Loaded {
            state: S::default(),
            revision: None,
            position: None,
            since_snapshot: None,
        }
    }
}

impl<E> Default for StreamRead<E> {
    fn default() -> Self {
        StreamRead {
            events: Vec::new(),
            revision: None,
            position: None,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<S, E> {
    /// The events appended; empty when the command changed nothing (e.g. a repeated command).
    pub events: Vec<E>,
    /// The aggregate's state after them (no need to read the stream again).
    pub state: S,
    /// The stream's revision after the command (`None`: the stream still does not exist).
    pub revision: Option<u64>,
    /// The log position of the last event appended — or, when the command changed nothing,
    /// of the stream's last event: a read model that reached it reflects the command either way.
    pub position: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot connect to the event store: {0}")]
    Connect(String),
    #[error("the event store failed: {0}")]
    Store(#[from] eventstore::Error),
    #[error("event {id} ({event_type}) on {stream} cannot be read: {reason}")]
    Unreadable {
        stream: String,
        id: Uuid,
        event_type: String,
        reason: String,
    },
    #[error("stream {stream} holds more than {AGGREGATE_EVENTS_MAX} events")]
    TooLong { stream: String },
    #[error("an event cannot be encoded: {0}")]
    Encode(String),
}

impl LogError {
    /// Whether the store could not be reached (or did not answer in time): the caller may
    /// retry later, nothing is wrong with the request.
    pub fn is_unreachable(&self) -> bool {
        use eventstore::Error as E;
        match self {
            LogError::Connect(_) => true,
            LogError::Store(error) => match error {
                // What the client makes of a failed connection and of a node's Unavailable,
                // Unknown or Internal status; it picks a node again after one, as after a
                // node that went away.
                E::ServerError(_)
                | E::ConnectionClosed
                | E::GrpcConnectionError(_)
                | E::DeadlineExceeded
                | E::NotLeaderException(_) => true,
                E::Grpc { code, .. } => matches!(
                    code,
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                ),
                _ => false,
            },
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The domain refused the command.
    #[error("refused: {0}")]
    Rejected(E),
    /// Other writers kept winning the race for the stream; the caller may try again later.
    #[error("the stream kept changing; gave up after {CONFLICT_RETRIES_MAX} tries")]
    Conflict,
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The event store, typed.
#[derive(Clone)]
pub struct EventLog {
    client: Client,
}

impl EventLog {
    /// `url` is an `esdb://` connection string (the embedded store's or a real node's).
    pub fn connect(url: &str) -> Result<EventLog, LogError> {
        let settings: ClientSettings =
            url.parse().map_err(|e| LogError::Connect(format!("{e}")))?;
        let client = Client::new(settings).map_err(|e| LogError::Connect(e.to_string()))?;
        Ok(EventLog { client })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A reader of `stream`; `None` if the stream does not exist.
    async fn open(
        &self,
        stream: &str,
        options: &ReadStreamOptions,
    ) -> Result<Option<eventstore::ReadStream>, LogError> {
        match self.client.read_stream(stream, options).await {
            Ok(reader) => Ok(Some(reader)),
            Err(eventstore::Error::ResourceNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole stream as the aggregate's events, older versions upcast. A type the
    /// aggregate does not know is an error (`Unreadable`): skipping it would make history vanish
    /// (a renamed event type, a stream written by another part).
    pub async fn read<E: Event>(&self, stream: &str) -> Result<Vec<Recorded<E>>, LogError> {
        Ok(self.read_with_revision(stream).await?.events)
    }

    /// The stream's events and its revision (that of its last event, known type or not).
    async fn read_with_revision<E: Event>(&self, stream: &str) -> Result<StreamRead<E>, LogError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Start)
            .forwards();
        let Some(mut reader) = self.open(stream, &options).await? else {
            return Ok(StreamRead::default());
        };
        let mut read = StreamRead::default();
        loop {
            let resolved = match reader.next().await {
                Ok(Some(resolved)) => resolved,
                Ok(None) => return Ok(read),
                Err(eventstore::Error::ResourceNotFound) => {
                    read_to_end(&mut reader).await;
                    return Ok(read);
                }
                Err(e) => return Err(e.into()),
            };
            if read.events.len() >= AGGREGATE_EVENTS_MAX {
                return Err(LogError::TooLong {
                    stream: stream.to_string(),
                });
            }
            let recorded = resolved.get_original_event();
            read.revision = Some(recorded.revision);
            read.position = Some(recorded.position.commit);
            let event = decode::<E>(stream, recorded)?;
            let metadata = serde_json::from_slice(&recorded.custom_metadata).ok();
            read.events.push(Recorded {
                event,
                id: recorded.id,
                metadata,
                revision: recorded.revision,
                position: recorded.position.commit,
            });
        }
    }

    /// The aggregate's state and revision: the stream read backwards down to its latest
    /// snapshot (or its start), then folded forwards. The first read asks for just enough to
    /// reach a snapshot written on time (`SNAPSHOT_EVERY_EVENTS` + 1); only a stream without one
    /// that near is read further.
    pub async fn load<D: Decider>(&self, stream: &str) -> Result<Loaded<D::State>, LogError> {
        let mut newest_first: Vec<D::Event> = Vec::new();
        let (mut revision, mut position, mut since_snapshot) = (None, None, None);
        let mut from = StreamPosition::End;
        let mut asked = SNAPSHOT_EVERY_EVENTS + 1;
        'reads: loop {
            let options = ReadStreamOptions::default()
                .position(from)
                .backwards()
                .max_count(asked);
            let Some(mut reader) = self.open(stream, &options).await? else {
                break;
            };
            let mut read = 0;
            let mut oldest = None;
            loop {
                let resolved = match reader.next().await {
                    Ok(Some(resolved)) => resolved,
                    Ok(None) => break,
                    Err(eventstore::Error::ResourceNotFound) => {
                        read_to_end(&mut reader).await;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                if newest_first.len() >= AGGREGATE_EVENTS_MAX {
                    return Err(LogError::TooLong {
                        stream: stream.to_string(),
                    });
                }
                let recorded = resolved.get_original_event();
                if revision.is_none() {
                    revision = Some(recorded.revision);
                    position = Some(recorded.position.commit);
                }
                read += 1;
                oldest = Some(recorded.revision);
                let event = decode::<D::Event>(stream, recorded)?;
                let snapshot = D::is_snapshot(&event);
                newest_first.push(event);
                if snapshot {
                    since_snapshot = Some(newest_first.len() - 1);
                    read_to_end(&mut reader).await;
                    break 'reads;
                }
            }
            match oldest {
                Some(oldest) if read == asked && oldest > 0 => {
                    from = StreamPosition::Position(oldest - 1);
                    asked = (AGGREGATE_EVENTS_MAX + 1 - newest_first.len()).min(LOAD_PAGE_EVENTS);
                }
                _ => break,
            }
        }
        if revision.is_none() {
            return Ok(Loaded::none());
        }
        let state = D::fold(newest_first.iter().rev());
        Ok(Loaded {
            state,
            revision,
            position,
            since_snapshot,
        })
    }

    /// The event at `revision` of `stream` (`None`: the stream has not reached it).
    pub async fn event_at<E: Event>(
        &self,
        stream: &str,
        revision: u64,
    ) -> Result<Option<E>, LogError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(revision))
            .forwards()
            .max_count(1);
        let Some(mut reader) = self.open(stream, &options).await? else {
            return Ok(None);
        };
        let first = reader.next().await;
        read_to_end(&mut reader).await;
        match first {
            Ok(Some(resolved)) if resolved.get_original_event().revision == revision => {
                Ok(Some(decode(stream, resolved.get_original_event())?))
            }
            Ok(_) | Err(eventstore::Error::ResourceNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends what `D` decided on `loaded`, with a snapshot of the state after it when one is
    /// due: when the stream is new, or when `SNAPSHOT_EVERY_EVENTS` have passed since the
    /// latest. (A stream that holds none yet but exists was written before the aggregate kept
    /// snapshots: its owner writes the first one once it has done what that needs.)
    pub async fn append_decided<D: Decider>(
        &self,
        stream: &str,
        loaded: &Loaded<D::State>,
        events: &[D::Event],
        metadata: &Metadata,
    ) -> Result<Appended, LogError>
    where
        D::State: Clone,
    {
        let snapshot = due_snapshot::<D>(loaded, events);
        self.append_with_snapshot(stream, loaded.revision, events, snapshot.as_ref(), metadata)
            .await
    }

    /// As `append_decided`; once written, `loaded` is the stream after the append (its state
    /// evolved by the events, its revision and position the append's) without reading it
    /// back — for a writer that keeps its aggregate loaded between appends.
    pub async fn append_decided_in_place<D: Decider>(
        &self,
        stream: &str,
        loaded: &mut Loaded<D::State>,
        events: &[D::Event],
        metadata: &Metadata,
    ) -> Result<Appended, LogError>
    where
        D::State: Clone,
    {
        let snapshot = due_snapshot::<D>(loaded, events);
        let appended = self
            .append_with_snapshot(stream, loaded.revision, events, snapshot.as_ref(), metadata)
            .await?;
        if let Appended::Written { revision, position } = appended {
            loaded.state = events.iter().fold(loaded.state.clone(), D::evolve);
            loaded.revision = revision;
            loaded.position = position;
            loaded.since_snapshot = match snapshot {
                Some(_) => Some(0),
                None => loaded.since_snapshot.map(|since| since + events.len()),
            };
        }
        Ok(appended)
    }

    async fn append_with_snapshot<E: Event>(
        &self,
        stream: &str,
        expected: Option<u64>,
        events: &[E],
        snapshot: Option<&E>,
        metadata: &Metadata,
    ) -> Result<Appended, LogError> {
        match snapshot {
            Some(snapshot) => {
                let with_snapshot: Vec<&E> = events.iter().chain([snapshot]).collect();
                self.append_all(stream, expected, with_snapshot.into_iter(), metadata)
                    .await
            }
            None => self.append(stream, expected, events, metadata).await,
        }
    }

    /// Loads the aggregate, decides the command, appends the events at the revision it was
    /// loaded at; on a conflict, loads again and decides again (up to `CONFLICT_RETRIES_MAX`).
    /// A command that starts its stream (`Decider::starts_stream`) is first tried without
    /// loading, as if the stream did not exist yet. Each event gets the given metadata with its
    /// own id.
    pub async fn execute<D>(
        &self,
        stream: &str,
        command: D::Command,
        metadata: &Metadata,
    ) -> Result<Executed<D::State, D::Event>, ExecuteError<D::Error>>
    where
        D: Decider,
        D::State: Clone,
        D::Command: Clone,
        D::Event: Clone,
    {
        if D::starts_stream(&command) {
            if let Some(executed) = self.start::<D>(stream, &command, metadata).await? {
                return Ok(executed);
            }
        }
        for attempt in 0..=CONFLICT_RETRIES_MAX {
            let loaded = self.load::<D>(stream).await?;
            let events =
                D::decide(&loaded.state, command.clone()).map_err(ExecuteError::Rejected)?;
            match self
                .append_decided::<D>(stream, &loaded, &events, metadata)
                .await?
            {
                Appended::Written { revision, position } => {
                    let position = position.or(loaded.position);
                    let state = events.iter().fold(loaded.state, D::evolve);
                    return Ok(Executed {
                        events,
                        state,
                        revision,
                        position,
                    });
                }
                Appended::Conflict => {
                    tracing::debug!(
                        stream,
                        attempt,
                        "lost the race for the stream; deciding again"
                    );
                    tokio::time::sleep(jitter()).await;
                }
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// Decides `command` on the empty state and appends expecting no stream: the executed
    /// command, or `None` when that is not what happened (the stream exists, or the command
    /// needs what is in it) — then it must be loaded and decided again.
    async fn start<D>(
        &self,
        stream: &str,
        command: &D::Command,
        metadata: &Metadata,
    ) -> Result<Option<Executed<D::State, D::Event>>, LogError>
    where
        D: Decider,
        D::State: Clone,
        D::Command: Clone,
    {
        let none = Loaded::<D::State>::none();
        let events = match D::decide(&none.state, command.clone()) {
            Ok(events) if !events.is_empty() => events,
            _ => return Ok(None),
        };
        match self
            .append_decided::<D>(stream, &none, &events, metadata)
            .await?
        {
            Appended::Written { revision, position } => Ok(Some(Executed {
                state: events.iter().fold(none.state, D::evolve),
                events,
                revision,
                position,
            })),
            Appended::Conflict => Ok(None),
        }
    }

    /// Appends `events` if the stream is still at `expected` (`None`: it must not exist).
    /// Nothing to append is a success that writes nothing.
    pub async fn append<E: Event>(
        &self,
        stream: &str,
        expected: Option<u64>,
        events: &[E],
        metadata: &Metadata,
    ) -> Result<Appended, LogError> {
        self.append_all(stream, expected, events.iter(), metadata)
            .await
    }

    async fn append_all<'a, E: Event + 'a>(
        &self,
        stream: &str,
        expected: Option<u64>,
        events: impl ExactSizeIterator<Item = &'a E>,
        metadata: &Metadata,
    ) -> Result<Appended, LogError> {
        if events.len() == 0 {
            return Ok(Appended::Written {
                revision: expected,
                position: None,
            });
        }
        let expected_revision = match expected {
            Some(revision) => ExpectedRevision::Exact(revision),
            None => ExpectedRevision::NoStream,
        };
        let proposed = events
            .map(|e| envelope(e, metadata))
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().expected_revision(expected_revision);
        match self
            .client
            .append_to_stream(stream, &options, proposed)
            .await
        {
            Ok(written) => Ok(Appended::Written {
                revision: Some(written.next_expected_version),
                position: Some(written.position.commit),
            }),
            Err(eventstore::Error::WrongExpectedVersion { .. }) => Ok(Appended::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the store keep only the stream's latest `count` events (its `$maxCount`): for
    /// bookkeeping streams, whose older events nobody reads. Readers see only those; the store
    /// reclaims the space of the others in time. Does nothing when already so.
    pub async fn keep_latest(&self, stream: &str, count: u64) -> Result<(), LogError> {
        let current = self
            .client
            .get_stream_metadata(stream, &ReadStreamOptions::default())
            .await?;
        let mut metadata = match current {
            eventstore::StreamMetadataResult::Success(versioned) => versioned.metadata().clone(),
            _ => eventstore::StreamMetadata::default(),
        };
        if metadata.max_count == Some(count) {
            return Ok(());
        }
        metadata.max_count = Some(count);
        self.client
            .set_stream_metadata(stream, &AppendToStreamOptions::default(), &metadata)
            .await?;
        Ok(())
    }

    /// The last event of a stream, decoded as `T`, and its revision (`None`: no such stream).
    pub async fn last<T: serde::de::DeserializeOwned>(
        &self,
        stream: &str,
    ) -> Result<Option<(T, u64)>, LogError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let Some(mut reader) = self.open(stream, &options).await? else {
            return Ok(None);
        };
        let last = reader.next().await;
        read_to_end(&mut reader).await;
        match last {
            Ok(Some(resolved)) => {
                let recorded = resolved.get_original_event();
                let value =
                    serde_json::from_slice(&recorded.data).map_err(|e| LogError::Unreadable {
                        stream: stream.to_string(),
                        id: recorded.id,
                        event_type: recorded.event_type.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(Some((value, recorded.revision)))
            }
            Ok(None) | Err(eventstore::Error::ResourceNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The position of the last event in the whole log (`None`: the log is empty).
    pub async fn last_position(&self) -> Result<Option<LogPosition>, LogError> {
        let options = eventstore::ReadAllOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let mut reader = self.client.read_all(&options).await?;
        let last = reader.next().await;
        read_to_end(&mut reader).await;
        Ok(last?.map(|resolved| {
            let recorded = resolved.get_original_event();
            LogPosition {
                commit: recorded.position.commit,
                prepare: recorded.position.prepare,
            }
        }))
    }

    /// Follows `$all` (streams whose names start with one of `prefixes`), after `after` or from
    /// the start. `name` labels its metrics: `minimall_follower_events_total`,
    /// `minimall_follower_lag_seconds` (how old the last event handed out is),
    /// `minimall_follower_lag_events` (events of its streams stored after it, counted every
    /// `LAG_MEASURE_S` among the last `LAG_SCAN_EVENTS_MAX` of the log) and
    /// `minimall_follower_caught_up` (1 once live, 0 while catching up or reconnecting).
    pub fn follow(
        &self,
        name: &'static str,
        prefixes: &[&str],
        after: Option<LogPosition>,
    ) -> Follower {
        let progress = progress::register(name, after);
        let prefixes: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
        tokio::spawn(measure_lag(
            self.clone(),
            name,
            prefixes.clone(),
            Arc::downgrade(&progress),
        ));
        Follower {
            name,
            progress,
            client: self.client.clone(),
            prefixes,
            after,
            subscription: None,
            failures: 0,
        }
    }
}

/// The snapshot to append after `events`, when one is due (see `EventLog::append_decided`).
fn due_snapshot<D: Decider>(loaded: &Loaded<D::State>, events: &[D::Event]) -> Option<D::Event>
where
    D::State: Clone,
{
    let due = match loaded.since_snapshot {
        Some(since) => since + events.len() >= SNAPSHOT_EVERY_EVENTS,
        None => loaded.revision.is_none(),
    };
    if events.is_empty() || !due {
        return None;
    }
    D::snapshot(&events.iter().fold(loaded.state.clone(), D::evolve))
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Written {
        revision: Option<u64>,
        position: Option<u64>,
    },
    /// The stream was not at the expected revision: nothing was written.
    Conflict,
}

/// A position in the store's log (`$all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogPosition {
    pub commit: u64,
    pub prepare: u64,
}

/// An event seen on `$all`, not yet typed: its reader knows what it is.
#[derive(Debug, Clone)]
pub struct Seen {
    pub stream: String,
    pub event_type: String,
    pub id: Uuid,
    pub data: Vec<u8>,
    pub metadata: Option<Metadata>,
    pub revision: u64,
    pub position: LogPosition,
}

impl Seen {
    /// The event as `E` (older versions upcast); `None` for a type `E` does not know (a
    /// follower of several streams' events takes what it needs). Data of a known type that
    /// does not fit is logged, and also `None`.
    pub fn decode<E: Event>(&self) -> Option<E> {
        if !E::TYPES.contains(&self.event_type.as_str()) {
            return None;
        }
        let decoded = serde_json::from_slice(&self.data)
            .map_err(domain::EventError::from)
            .and_then(|data| E::from_json(&self.event_type, data));
        match decoded {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::error!(stream = %self.stream, id = %self.id, event_type = %self.event_type, error = %e, "an event does not fit its contract; skipped");
                None
            }
        }
    }
}

/// What a follower hands out next.
#[derive(Debug, Clone)]
pub enum Followed {
    Event(Box<Seen>),
    /// Everything stored when the subscription started was handed out: the follower is live.
    CaughtUp,
}

/// How often a follower's lag in events is measured, in seconds, and how many of the log's last
/// events are read at most to count it (the count is a lower bound past that).
pub const LAG_MEASURE_S: u64 = 5;
pub const LAG_SCAN_EVENTS_MAX: usize = 10_000;
/// The log's last events read first to count a follower's lag (most are near the end).
const LAG_SCAN_FIRST_EVENTS: usize = 100;

/// Measures a follower's lag in events until the follower is dropped: reads the log backwards
/// from its end down to the follower's position, counting the events of its streams.
async fn measure_lag(
    log: EventLog,
    name: &'static str,
    prefixes: Vec<String>,
    progress: std::sync::Weak<Mutex<progress::Progress>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(LAG_MEASURE_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(after) = progress
            .upgrade()
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).after())
        else {
            return;
        };
        if let Ok(behind) = log.events_after(&prefixes, after).await {
            metrics::gauge!("minimall_follower_lag_events", "follower" => name).set(behind as f64);
            if let Some(progress) = progress.upgrade() {
                let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                progress.counted_behind(behind);
            }
        }
    }
}

impl EventLog {
    /// Events of streams starting with one of `prefixes` stored after `after` (all of them for
    /// `None`), counted among the log's last `LAG_SCAN_EVENTS_MAX` events. A follower near the
    /// end is counted from the log's last `LAG_SCAN_FIRST_EVENTS`; only one further behind has
    /// the whole scan read (every read is read to its end: `read_to_end`).
    pub async fn events_after(
        &self,
        prefixes: &[String],
        after: Option<LogPosition>,
    ) -> Result<u64, LogError> {
        if after.is_some() {
            if let (behind, true) = self
                .count_after(prefixes, after, LAG_SCAN_FIRST_EVENTS)
                .await?
            {
                return Ok(behind);
            }
        }
        let (behind, _) = self
            .count_after(prefixes, after, LAG_SCAN_EVENTS_MAX)
            .await?;
        Ok(behind)
    }

    /// Events of `prefixes`' streams after `after` among the log's last `scan` events, and
    /// whether `after` was reached within them.
    async fn count_after(
        &self,
        prefixes: &[String],
        after: Option<LogPosition>,
        scan: usize,
    ) -> Result<(u64, bool), LogError> {
        let options = eventstore::ReadAllOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(scan);
        let mut reader = self.client.read_all(&options).await?;
        let mut behind = 0;
        let mut seen = 0;
        while let Some(resolved) = reader.next().await? {
            seen += 1;
            let event = resolved.get_original_event();
            let position = LogPosition {
                commit: event.position.commit,
                prepare: event.position.prepare,
            };
            if after.is_some_and(|after| position <= after) {
                read_to_end(&mut reader).await;
                return Ok((behind, true));
            }
            if prefixes
                .iter()
                .any(|p| event.stream_id.starts_with(p.as_str()))
            {
                behind += 1;
            }
        }
        // Fewer than asked: the whole log was read.
        Ok((behind, seen < scan))
    }
}

/// Reads what is left of a bounded read, so that it ends as the server ends it. A read dropped
/// before its end leaves the server's frames for it in flight, and the client's HTTP/2 counts
/// each that arrives for a stream it no longer remembers (it remembers ten); past 1,024 on one
/// connection it closes the connection (GOAWAY ENHANCE_YOUR_CALM, "too_many_internal_resets"),
/// failing every call and subscription on it: under concurrent loads that stop at a snapshot,
/// within seconds. Every read here is bounded (`max_count`), so is this. An error only ends it:
/// what was read before stands.
async fn read_to_end(reader: &mut eventstore::ReadStream) {
    // A stream that does not exist is one message (the client's ResourceNotFound), then the end.
    while let Ok(Some(_)) | Err(eventstore::Error::ResourceNotFound) = reader.next().await {}
}

/// Pause after the n-th failure in a row to reach the store (doubling, capped), in milliseconds.
const FOLLOW_BACKOFF_MS_MAX: u64 = 5_000;

/// A catch-up subscription that survives the store going away: it subscribes again after the
/// last event it handed out.
pub struct Follower {
    name: &'static str,
    progress: Arc<Mutex<progress::Progress>>,
    client: Client,
    prefixes: Vec<String>,
    after: Option<LogPosition>,
    subscription: Option<eventstore::Subscription>,
    failures: u32,
}

impl Follower {
    /// The next event (or the news that the follower caught up). Waits, and retries for ever
    /// while the store is unreachable: following is what its owner exists to do.
    pub async fn next(&mut self) -> Followed {
        loop {
            let subscription = match &mut self.subscription {
                Some(subscription) => subscription,
                None => {
                    let options = self.options();
                    self.progressed(progress::Progress::subscribed);
                    self.subscription
                        .insert(self.client.subscribe_to_all(&options).await)
                }
            };
            match subscription.next_subscription_event().await {
                Ok(eventstore::SubscriptionEvent::EventAppeared(resolved)) => {
                    self.failures = 0;
                    let recorded = resolved.get_original_event();
                    let position = LogPosition {
                        commit: recorded.position.commit,
                        prepare: recorded.position.prepare,
                    };
                    self.after = Some(position);
                    self.progressed(|progress| progress.moved(Some(position)));
                    let metadata: Option<Metadata> =
                        serde_json::from_slice(&recorded.custom_metadata).ok();
                    self.seen(metadata.as_ref());
                    return Followed::Event(Box::new(Seen {
                        stream: recorded.stream_id.clone(),
                        event_type: recorded.event_type.clone(),
                        id: recorded.id,
                        data: recorded.data.to_vec(),
                        metadata,
                        revision: recorded.revision,
                        position,
                    }));
                }
                Ok(eventstore::SubscriptionEvent::CaughtUp) => {
                    self.progressed(progress::Progress::caught_up);
                    metrics::gauge!("minimall_follower_caught_up", "follower" => self.name)
                        .set(1.0);
                    return Followed::CaughtUp;
                }
                Ok(eventstore::SubscriptionEvent::Checkpoint(_)) => {
                    self.progressed(|progress| progress.moved(None));
                }
                Ok(_) => {}
                Err(e) => {
                    metrics::gauge!("minimall_follower_caught_up", "follower" => self.name)
                        .set(0.0);
                    self.failures = self.failures.saturating_add(1);
                    let pause = (100u64 << self.failures.min(6)).min(FOLLOW_BACKOFF_MS_MAX);
                    tracing::warn!(error = %e, pause_ms = pause, "subscription to the store lost; subscribing again");
                    self.subscription = None;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    fn progressed(&self, change: impl FnOnce(&mut progress::Progress)) {
        change(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn seen(&self, metadata: Option<&Metadata>) {
        metrics::counter!("minimall_follower_events_total", "follower" => self.name).increment(1);
        if let Some(metadata) = metadata {
            let age = (Utc::now() - metadata.at).num_milliseconds().max(0) as f64 / 1_000.0;
            metrics::gauge!("minimall_follower_lag_seconds", "follower" => self.name).set(age);
        }
    }

    fn options(&self) -> SubscribeToAllOptions {
        let filter = self
            .prefixes
            .iter()
            .fold(SubscriptionFilter::on_stream_name(), |f, p| f.add_prefix(p));
        let position = match self.after {
            Some(p) => StreamPosition::Position(Position {
                commit: p.commit,
                prepare: p.prepare,
            }),
            None => StreamPosition::Start,
        };
        SubscribeToAllOptions::default()
            .position(position)
            .filter(filter)
    }
}

/// A random pause after losing a race for a stream (at most `CONFLICT_BACKOFF_MS_MAX`), so
/// racing writers do not retry in lockstep.
pub fn jitter() -> Duration {
    let spread = CONFLICT_BACKOFF_MS_MAX * 1000;
    Duration::from_micros((Uuid::new_v4().as_u128() % u128::from(spread)) as u64)
}

/// A stored event as its aggregate's event, older versions upcast; a type the aggregate does not
/// know is an error (`Unreadable`): skipping it would make history vanish.
fn decode<E: Event>(stream: &str, recorded: &eventstore::RecordedEvent) -> Result<E, LogError> {
    let unreadable = |reason: String| LogError::Unreadable {
        stream: stream.to_string(),
        id: recorded.id,
        event_type: recorded.event_type.clone(),
        reason,
    };
    let data: serde_json::Value =
        serde_json::from_slice(&recorded.data).map_err(|e| unreadable(e.to_string()))?;
    E::from_json(&recorded.event_type, data).map_err(|e| unreadable(e.to_string()))
}

fn envelope<E: Event>(event: &E, metadata: &Metadata) -> Result<EventData, LogError> {
    let encode = |e: serde_json::Error| LogError::Encode(e.to_string());
    let proposed = EventData::json(event.event_type(), &event.to_json())
        .map_err(encode)?
        .id(Uuid::new_v4());
    proposed.metadata_as_json(metadata).map_err(encode)
}
