//! The `Streams` gRPC service: Append, BatchAppend, Read (and subscribe), Delete, Tombstone.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::filter::EventFilter;
use crate::limits::Limits;
use crate::proto::event_store::client::streams::read_req::options::{
    self as read_options, all_options, stream_options, CountOption, FilterOption, ReadDirection,
    StreamOption,
};
use crate::proto::event_store::client::streams::{
    append_req, append_resp, batch_append_req, batch_append_resp, delete_req, delete_resp,
    read_req, streams_server, AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq,
    DeleteResp, ReadReq, ReadResp,
};
use crate::proto::event_store::client::{self as shared, AllStreamPosition, StreamIdentifier};
use crate::proto::google::rpc;
use crate::reading::{self, Format, Selection, Start, SubscriptionSlot, READ_BUFFER_MESSAGES};
use crate::stats::Stats;
use crate::storage::links::is_link_stream;
use crate::storage::metadata::METASTREAM_PREFIX;
use crate::storage::{AppendOutcome, Direction, ExpectedRevision, NewEvent, Store, StoreError};
use crate::wire::{self, invalid, AppendBudget};

pub struct StreamsService {
    store: Store,
    limits: Arc<Limits>,
    subscriptions_active: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    /// Turns true when the server stops: calls that would run on (subscriptions, batch-append
    /// sessions) end with Unavailable, so the connections close and clients reconnect.
    closing: watch::Receiver<bool>,
}

impl StreamsService {
    pub fn new(
        store: Store,
        limits: Arc<Limits>,
        stats: Arc<Stats>,
        closing: watch::Receiver<bool>,
    ) -> StreamsService {
        StreamsService {
            store,
            limits,
            subscriptions_active: Arc::new(AtomicUsize::new(0)),
            stats,
            closing,
        }
    }

    /// Runs a long call's work until it ends or the server stops; then the call ends with
    /// Unavailable on `outbox`.
    fn until_closing<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = ()> + Send + 'static,
        outbox: mpsc::Sender<Result<T, Status>>,
    ) {
        let mut closing = self.closing.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                    let stopping = Status::unavailable("the event store is stopping; reconnect");
                    let _ = outbox.send(Err(stopping)).await;
                }
            }
        });
    }
}

/// The expected-revision oneof of Append and Delete (separate generated types with the same
/// four cases) as the log's expectation.
macro_rules! expected_of {
    ($oneof:path, $value:expr) => {{
        use $oneof as E;
        match $value {
            Some(E::Revision(r)) => Ok(ExpectedRevision::Exact(r)),
            Some(E::NoStream(_)) => Ok(ExpectedRevision::NoStream),
            Some(E::Any(_)) => Ok(ExpectedRevision::Any),
            Some(E::StreamExists(_)) => Ok(ExpectedRevision::StreamExists),
            None => Err(invalid("expected stream revision is missing")),
        }
    }};
}

/// The answer to an append that was written (or found written already).
pub fn append_success(outcome: AppendOutcome) -> AppendResp {
    use append_resp::success::{CurrentRevisionOption, PositionOption};
    let current = match outcome.current_revision {
        Some(revision) => CurrentRevisionOption::CurrentRevision(revision),
        None => CurrentRevisionOption::NoStream(shared::Empty {}),
    };
    let position = match outcome.position {
        Some(p) => PositionOption::Position(append_resp::Position {
            commit_position: p,
            prepare_position: p,
        }),
        None => PositionOption::NoPosition(shared::Empty {}),
    };
    AppendResp {
        result: Some(append_resp::Result::Success(append_resp::Success {
            current_revision_option: Some(current),
            position_option: Some(position),
        })),
    }
}

fn append_wrong_expected_version(expected: ExpectedRevision, current: Option<u64>) -> AppendResp {
    use append_resp::wrong_expected_version::{
        CurrentRevisionOption, CurrentRevisionOption2060, ExpectedRevisionOption,
        ExpectedRevisionOption2060,
    };
    let empty = shared::Empty {};
    let (current_now, current_legacy) = match current {
        Some(r) => (
            CurrentRevisionOption::CurrentRevision(r),
            CurrentRevisionOption2060::CurrentRevision2060(r),
        ),
        None => (
            CurrentRevisionOption::CurrentNoStream(empty),
            CurrentRevisionOption2060::NoStream2060(empty),
        ),
    };
    let (expected_now, expected_legacy) = match expected {
        ExpectedRevision::Exact(r) => (
            ExpectedRevisionOption::ExpectedRevision(r),
            Some(ExpectedRevisionOption2060::ExpectedRevision2060(r)),
        ),
        ExpectedRevision::Any => (
            ExpectedRevisionOption::ExpectedAny(empty),
            Some(ExpectedRevisionOption2060::Any2060(empty)),
        ),
        ExpectedRevision::StreamExists => (
            ExpectedRevisionOption::ExpectedStreamExists(empty),
            Some(ExpectedRevisionOption2060::StreamExists2060(empty)),
        ),
        ExpectedRevision::NoStream => (ExpectedRevisionOption::ExpectedNoStream(empty), None),
    };
    AppendResp {
        result: Some(append_resp::Result::WrongExpectedVersion(
            append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: Some(current_legacy),
                expected_revision_option_20_6_0: expected_legacy,
                current_revision_option: Some(current_now),
                expected_revision_option: Some(expected_now),
            },
        )),
    }
}

fn string_ids(options: &read_req::Options) -> bool {
    !matches!(
        options
            .uuid_option
            .as_ref()
            .and_then(|o| o.content.as_ref()),
        Some(read_options::uuid_option::Content::Structured(_))
    )
}

#[tonic::async_trait]
impl streams_server::Streams for StreamsService {
    async fn read(
        &self,
        request: Request<ReadReq>,
    ) -> Result<Response<BoxStream<ReadResp>>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("read options are missing"))?;
        let format = Format {
            string_ids: string_ids(&options),
            resolve_links: options.resolve_links,
        };
        let direction = match ReadDirection::try_from(options.read_direction) {
            Ok(ReadDirection::Forwards) => Direction::Forwards,
            Ok(ReadDirection::Backwards) => Direction::Backwards,
            Err(_) => return Err(invalid("read direction is unknown")),
        };
        let filter = match options.filter_option {
            Some(FilterOption::Filter(filter)) => Some(EventFilter::parse(filter)?),
            _ => None,
        };
        let (outbox, inbox) = mpsc::channel(READ_BUFFER_MESSAGES);
        let store = self.store.clone();
        match (options.stream_option, options.count_option) {
            (Some(stream_option), Some(CountOption::Count(count))) => {
                let last = self.store.last_position();
                let (selection, from) =
                    read_start(stream_option, filter, direction, last, &self.limits)?;
                tokio::spawn(reading::read(
                    store, selection, from, direction, count, format, outbox,
                ));
            }
            (Some(stream_option), Some(CountOption::Subscription(_))) => {
                if direction != Direction::Forwards {
                    return Err(invalid("subscriptions only go forwards"));
                }
                let last = self.store.last_position();
                let (selection, start) =
                    subscription_start(stream_option, filter, last, &self.limits)?;
                let slot = SubscriptionSlot::take(
                    &self.subscriptions_active,
                    self.limits.subscriptions_max,
                )
                .ok_or_else(|| {
                    Status::resource_exhausted(format!(
                        "the store serves at most {} subscriptions at once",
                        self.limits.subscriptions_max
                    ))
                })?;
                let farewell = outbox.clone();
                let subscription = reading::subscribe(
                    store,
                    selection,
                    start,
                    format,
                    outbox,
                    slot,
                    Arc::clone(&self.stats),
                );
                self.until_closing(subscription, farewell);
            }
            (None, _) => return Err(invalid("read names neither a stream nor $all")),
            (_, None) => return Err(invalid("read has neither a count nor a subscription")),
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(inbox))))
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let mut messages = request.into_inner();
        tracing::debug!("append call opened");
        let Some(append_req::Content::Options(options)) =
            messages.message().await?.and_then(|m| m.content)
        else {
            return Err(invalid("an append must start with its options"));
        };
        let stream = writable(wire::stream_name(options.stream_identifier, &self.limits)?)?;
        let expected = expected_of!(
            append_req::options::ExpectedStreamRevision,
            options.expected_stream_revision
        )?;
        let mut events = Vec::new();
        let mut budget = AppendBudget::default();
        while let Some(message) = messages.message().await? {
            let Some(append_req::Content::ProposedMessage(proposed)) = message.content else {
                return Err(invalid("an append carries its options only once, first"));
            };
            let event = wire::new_event(
                proposed.id,
                proposed.metadata,
                proposed.custom_metadata,
                proposed.data,
                &self.limits,
            )?;
            budget.take(&event, &self.limits)?;
            events.push(event);
        }
        match self.store.append(stream, expected, events).await {
            Ok(outcome) => Ok(Response::new(append_success(outcome))),
            Err(StoreError::WrongExpectedVersion {
                expected, current, ..
            }) => Ok(Response::new(append_wrong_expected_version(
                expected, current,
            ))),
            Err(other) => Err(wire::status_from_store(other)),
        }
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.delete_stream(request.into_inner(), false).await
    }

    async fn tombstone(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.delete_stream(request.into_inner(), true).await
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BoxStream<BatchAppendResp>>, Status> {
        let inbound = request.into_inner();
        tracing::debug!("batch append call opened");
        let (outbox, inbox) = mpsc::channel(self.limits.batch_appends_in_flight_max);
        let session = BatchSession {
            store: self.store.clone(),
            limits: Arc::clone(&self.limits),
            in_flight: Arc::new(Semaphore::new(self.limits.batch_appends_in_flight_max)),
            in_flight_kib: Arc::new(Semaphore::new(BATCH_APPEND_KIB_IN_FLIGHT_MAX as usize)),
            pending: HashMap::new(),
            outbox: outbox.clone(),
        };
        self.until_closing(session.run(inbound), outbox);
        Ok(Response::new(Box::pin(ReceiverStream::new(inbox))))
    }
}

impl StreamsService {
    async fn delete_stream(
        &self,
        request: DeleteReq,
        tombstone: bool,
    ) -> Result<Response<DeleteResp>, Status> {
        let options = request
            .options
            .ok_or_else(|| invalid("delete options are missing"))?;
        let stream = wire::stream_name(options.stream_identifier, &self.limits)?;
        if stream.starts_with(METASTREAM_PREFIX) {
            return Err(invalid(
                "a metastream cannot be deleted: delete the stream it describes, or write its metadata",
            ));
        }
        if is_link_stream(&stream) {
            return Err(invalid(format!(
                "{stream} is a system stream the store keeps itself; it cannot be deleted"
            )));
        }
        let expected = expected_of!(
            delete_req::options::ExpectedStreamRevision,
            options.expected_stream_revision
        )?;
        let position = self
            .store
            .delete(stream, expected, tombstone)
            .await
            .map_err(wire::status_from_store)?;
        let position_option = match position {
            Some(p) => delete_resp::PositionOption::Position(delete_resp::Position {
                commit_position: p,
                prepare_position: p,
            }),
            None => delete_resp::PositionOption::NoPosition(shared::Empty {}),
        };
        Ok(Response::new(DeleteResp {
            position_option: Some(position_option),
        }))
    }
}

/// A stream a client may append to: anything but the metastream of a metastream (a
/// metastream's own retention is fixed, as on a node).
fn writable(stream: String) -> Result<String, Status> {
    if is_link_stream(&stream) {
        return Err(invalid(format!(
            "{stream} is a system stream the store keeps itself (links to events); it cannot be written"
        )));
    }
    match stream.strip_prefix(METASTREAM_PREFIX) {
        Some(described) if described.starts_with(METASTREAM_PREFIX) => Err(invalid(format!(
            "{stream} would be the metadata of a metastream, which cannot be set"
        ))),
        _ => Ok(stream),
    }
}

/// The clients' `Position::end()`: commit and prepare both `u64::MAX`.
const END_POSITION: u64 = u64::MAX;

/// A position a client may start reading `$all` from: one this log gave out (every event's
/// commit and prepare positions are equal, and none is past the log's end `last`), the start
/// (0) or the clients' end. Anything else is refused as a node refuses a position that is not
/// an event's. Forwards reads may start past the end (they find nothing), as on a node.
fn checked_position(
    position: &read_options::Position,
    last: u64,
    past_end_allowed: bool,
) -> Result<u64, Status> {
    let commit = position.commit_position;
    let valid = commit == position.prepare_position
        && (commit <= last || commit == END_POSITION || past_end_allowed);
    if valid {
        Ok(commit)
    } else {
        Err(Status::invalid_argument(format!(
            "Trying to read from an invalid position: commit {commit}, prepare {} \
             (the log's last position is {last}).",
            position.prepare_position
        )))
    }
}

/// Resolves a read's stream option into what to read and where to start.
fn read_start(
    option: StreamOption,
    filter: Option<EventFilter>,
    direction: Direction,
    last: u64,
    limits: &Limits,
) -> Result<(Selection, u64), Status> {
    let from_end = match direction {
        Direction::Forwards => None,
        Direction::Backwards => Some(u64::MAX),
    };
    match option {
        StreamOption::Stream(options) => {
            let name = wire::stream_name(options.stream_identifier, limits)?;
            let from = match options.revision_option {
                Some(stream_options::RevisionOption::Revision(r)) => r,
                Some(stream_options::RevisionOption::Start(_)) => 0,
                Some(stream_options::RevisionOption::End(_)) => from_end.unwrap_or(u64::MAX),
                None => return Err(invalid("stream read has no start revision")),
            };
            Ok((Selection::Stream { name }, from))
        }
        StreamOption::All(options) => {
            let from = match options.all_option {
                Some(all_options::AllOption::Position(p)) => {
                    checked_position(&p, last, direction == Direction::Forwards)?
                }
                Some(all_options::AllOption::Start(_)) => 0,
                Some(all_options::AllOption::End(_)) => from_end.unwrap_or(u64::MAX),
                None => return Err(invalid("$all read has no start position")),
            };
            Ok((Selection::All { filter }, from))
        }
    }
}

fn subscription_start(
    option: StreamOption,
    filter: Option<EventFilter>,
    last: u64,
    limits: &Limits,
) -> Result<(Selection, Start), Status> {
    match option {
        StreamOption::Stream(options) => {
            let name = wire::stream_name(options.stream_identifier, limits)?;
            let start = match options.revision_option {
                Some(stream_options::RevisionOption::Revision(r)) => Start::After(r),
                Some(stream_options::RevisionOption::Start(_)) => Start::Beginning,
                Some(stream_options::RevisionOption::End(_)) => Start::End,
                None => return Err(invalid("stream subscription has no start revision")),
            };
            Ok((Selection::Stream { name }, start))
        }
        StreamOption::All(options) => {
            let start = match options.all_option {
                // The clients' `Position::end()` is u64::MAX: the live end, as the real server reads it.
                Some(all_options::AllOption::Position(p)) => {
                    match checked_position(&p, last, false)? {
                        END_POSITION => Start::End,
                        after => Start::After(after),
                    }
                }
                Some(all_options::AllOption::Start(_)) => Start::Beginning,
                Some(all_options::AllOption::End(_)) => Start::End,
                None => return Err(invalid("$all subscription has no start position")),
            };
            Ok((Selection::All { filter }, start))
        }
    }
}

/// Event data one BatchAppend call may hold at once, in KiB (unfinished batches and appends
/// being written): a client that streams faster than the log writes is made to wait.
const BATCH_APPEND_KIB_IN_FLIGHT_MAX: u32 = 32 * 1024;

/// One BatchAppend call: many appends multiplexed by correlation id, each possibly split into
/// chunks (`is_final == false` means more chunks follow). Completed appends run concurrently, up
/// to the in-flight limit; answers come back tagged with their correlation id.
struct BatchSession {
    store: Store,
    limits: Arc<Limits>,
    in_flight: Arc<Semaphore>,
    /// Event data held by one call (unfinished batches and appends being written), in KiB.
    in_flight_kib: Arc<Semaphore>,
    pending: HashMap<uuid::Uuid, PendingBatch>,
    outbox: mpsc::Sender<Result<BatchAppendResp, Status>>,
}

struct PendingBatch {
    correlation_id: shared::Uuid,
    /// When its first chunk arrived: a `deadline` duration counts from here.
    received: std::time::Instant,
    options: batch_append_req::Options,
    events: Vec<NewEvent>,
    budget: AppendBudget,
    /// The first problem found in this batch's chunks; reported once the final chunk arrives.
    refused: Option<Status>,
}

impl BatchSession {
    async fn run(mut self, mut inbound: Streaming<BatchAppendReq>) {
        loop {
            let request = match inbound.message().await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(%status, "batch append call ended by the client");
                    return;
                }
            };
            if let Err(status) = self.receive(request).await {
                let _ = self.outbox.send(Err(status)).await;
                return;
            }
        }
    }

    /// Takes one chunk. An error here ends the whole call (it cannot be tied to a batch).
    async fn receive(&mut self, request: BatchAppendReq) -> Result<(), Status> {
        let correlation = request.correlation_id.clone();
        let key = wire::parse_uuid(request.correlation_id, "correlation id")?;
        if !self.pending.contains_key(&key) {
            if self.pending.len() >= self.limits.batch_appends_in_flight_max {
                return Err(Status::resource_exhausted(
                    "too many unfinished batches in one call",
                ));
            }
            let options = request
                .options
                .ok_or_else(|| invalid("a batch's first chunk must carry its options"))?;
            self.pending.insert(
                key,
                PendingBatch {
                    correlation_id: correlation.unwrap_or_default(),
                    received: std::time::Instant::now(),
                    options,
                    events: Vec::new(),
                    budget: AppendBudget::default(),
                    refused: None,
                },
            );
        }
        let batch = self.pending.get_mut(&key).expect("inserted above");
        for proposed in request.proposed_messages {
            if batch.refused.is_some() {
                break;
            }
            let event = wire::new_event(
                proposed.id,
                proposed.metadata,
                proposed.custom_metadata,
                proposed.data,
                &self.limits,
            )
            .and_then(|event| batch.budget.take(&event, &self.limits).map(|()| event));
            match event {
                Ok(event) => batch.events.push(event),
                Err(status) => {
                    batch.events.clear();
                    batch.refused = Some(status);
                }
            }
        }
        let pending_bytes: usize = self.pending.values().map(|b| b.budget.bytes()).sum();
        if pending_bytes > (BATCH_APPEND_KIB_IN_FLIGHT_MAX as usize) * 1024 {
            return Err(Status::resource_exhausted(
                "unfinished batches of this call hold more data than the server buffers",
            ));
        }
        if request.is_final {
            let batch = self.pending.remove(&key).expect("present above");
            let permit = Arc::clone(&self.in_flight)
                .acquire_owned()
                .await
                .map_err(|_| Status::internal("closed"))?;
            let kib = (batch.budget.bytes().div_ceil(1024) as u32)
                .clamp(1, BATCH_APPEND_KIB_IN_FLIGHT_MAX);
            let data_permit = Arc::clone(&self.in_flight_kib)
                .acquire_many_owned(kib)
                .await
                .map_err(|_| Status::internal("closed"))?;
            let store = self.store.clone();
            let limits = Arc::clone(&self.limits);
            let outbox = self.outbox.clone();
            tokio::spawn(async move {
                let answer = complete_batch(store, &limits, batch).await;
                let _ = outbox.send(Ok(answer)).await;
                drop((permit, data_permit));
            });
        }
        Ok(())
    }
}

async fn complete_batch(store: Store, limits: &Limits, batch: PendingBatch) -> BatchAppendResp {
    use batch_append_req::options::ExpectedStreamPosition as Expected;
    let options = batch.options;
    let echo = options.expected_stream_position.map(|e| match e {
        Expected::StreamPosition(r) => batch_append_resp::ExpectedStreamPosition::StreamPosition(r),
        Expected::NoStream(()) => batch_append_resp::ExpectedStreamPosition::NoStream(()),
        Expected::Any(()) => batch_append_resp::ExpectedStreamPosition::Any(()),
        Expected::StreamExists(()) => batch_append_resp::ExpectedStreamPosition::StreamExists(()),
    });
    let identifier = options
        .stream_identifier
        .clone()
        .unwrap_or(StreamIdentifier {
            stream_name: Default::default(),
        });
    let result = async {
        if let Some(status) = batch.refused {
            return Err(batch_error(&status, limits));
        }
        if deadline_passed(&options.deadline_option, batch.received) {
            return Err(detailed(
                Code::DeadlineExceeded,
                "the batch's deadline passed before it was written".into(),
                "Timeout",
                shared::Timeout {}.encode_to_vec(),
            ));
        }
        let stream = wire::stream_name(options.stream_identifier, limits)
            .and_then(writable)
            .map_err(|s| batch_error(&s, limits))?;
        let expected = match options.expected_stream_position {
            Some(Expected::StreamPosition(r)) => ExpectedRevision::Exact(r),
            Some(Expected::NoStream(())) => ExpectedRevision::NoStream,
            Some(Expected::Any(())) => ExpectedRevision::Any,
            Some(Expected::StreamExists(())) => ExpectedRevision::StreamExists,
            None => {
                return Err(batch_error(
                    &invalid("expected stream position is missing"),
                    limits,
                ))
            }
        };
        store
            .append(stream, expected, batch.events)
            .await
            .map_err(|e| batch_error_from_store(e, &identifier))
    }
    .await;
    let result = match result {
        Ok(outcome) => {
            use batch_append_resp::success::{CurrentRevisionOption, PositionOption};
            batch_append_resp::Result::Success(batch_append_resp::Success {
                current_revision_option: Some(match outcome.current_revision {
                    Some(r) => CurrentRevisionOption::CurrentRevision(r),
                    None => CurrentRevisionOption::NoStream(()),
                }),
                position_option: Some(match outcome.position {
                    Some(p) => PositionOption::Position(AllStreamPosition {
                        commit_position: p,
                        prepare_position: p,
                    }),
                    None => PositionOption::NoPosition(()),
                }),
            })
        }
        Err(status) => batch_append_resp::Result::Error(status),
    };
    BatchAppendResp {
        correlation_id: Some(batch.correlation_id),
        result: Some(result),
        stream_identifier: Some(identifier),
        expected_stream_position: echo,
    }
}

/// Has the batch's deadline passed? `deadline_21_10_0` is a point in time; `deadline` is a
/// duration from when the batch arrived (the Python client sends its timeout so). The Rust
/// client puts a time since the Unix epoch in `deadline`: as a duration that is decades, so
/// it never passes, and its own timeout bounds the call anyway.
fn deadline_passed(
    deadline: &Option<batch_append_req::options::DeadlineOption>,
    received: std::time::Instant,
) -> bool {
    use batch_append_req::options::DeadlineOption;
    match deadline {
        Some(DeadlineOption::Deadline(d)) if d.seconds > 0 || d.nanos > 0 => {
            let allowed = std::time::Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32);
            received.elapsed() > allowed
        }
        Some(DeadlineOption::Deadline21100(t)) if t.seconds > 0 => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (t.seconds as u64, t.nanos.max(0) as u32) < (now.as_secs(), now.subsec_nanos())
        }
        _ => false,
    }
}

/// A google.rpc.Status with one typed detail, as the Node and Python clients decode it.
fn detailed(code: Code, message: String, detail_type: &str, detail: Vec<u8>) -> rpc::Status {
    rpc::Status {
        code: code as i32,
        message,
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/event_store.client.{detail_type}"),
            value: detail,
        }),
    }
}

/// A refused batch: oversize appends carry their limit, everything else a bad-request detail.
fn batch_error(status: &Status, limits: &Limits) -> rpc::Status {
    let message = status.message().to_string();
    let exception = status
        .metadata()
        .get("exception")
        .and_then(|v| v.to_str().ok());
    if exception == Some("maximum-append-size-exceeded") {
        let detail = shared::MaximumAppendSizeExceeded {
            max_append_size: limits.append_bytes_max as u32,
        };
        return detailed(
            status.code(),
            message,
            "MaximumAppendSizeExceeded",
            detail.encode_to_vec(),
        );
    }
    let detail = shared::BadRequest {
        message: message.clone(),
    };
    detailed(status.code(), message, "BadRequest", detail.encode_to_vec())
}

fn batch_error_from_store(error: StoreError, identifier: &StreamIdentifier) -> rpc::Status {
    use shared::wrong_expected_version::{
        CurrentStreamRevisionOption, ExpectedStreamPositionOption,
    };
    match error {
        StoreError::WrongExpectedVersion {
            expected, current, ..
        } => {
            let detail = shared::WrongExpectedVersion {
                current_stream_revision_option: Some(match current {
                    Some(r) => CurrentStreamRevisionOption::CurrentStreamRevision(r),
                    None => CurrentStreamRevisionOption::CurrentNoStream(()),
                }),
                expected_stream_position_option: Some(match expected {
                    ExpectedRevision::Exact(r) => {
                        ExpectedStreamPositionOption::ExpectedStreamPosition(r)
                    }
                    ExpectedRevision::Any => ExpectedStreamPositionOption::ExpectedAny(()),
                    ExpectedRevision::StreamExists => {
                        ExpectedStreamPositionOption::ExpectedStreamExists(())
                    }
                    ExpectedRevision::NoStream => {
                        ExpectedStreamPositionOption::ExpectedNoStream(())
                    }
                }),
            };
            let message =
                format!("wrong expected version: expected {expected:?}, stream is at {current:?}");
            detailed(
                Code::AlreadyExists,
                message,
                "WrongExpectedVersion",
                detail.encode_to_vec(),
            )
        }
        StoreError::StreamDeleted(stream) => {
            let detail = shared::StreamDeleted {
                stream_identifier: Some(identifier.clone()),
            };
            detailed(
                Code::NotFound,
                format!("stream {stream} is deleted"),
                "StreamDeleted",
                detail.encode_to_vec(),
            )
        }
        other => {
            // Clients decode the detail unconditionally, so even an unexpected failure has one.
            let status = wire::status_from_store(other);
            detailed(
                status.code(),
                status.message().to_string(),
                "Unknown",
                shared::Unknown {}.encode_to_vec(),
            )
        }
    }
}
