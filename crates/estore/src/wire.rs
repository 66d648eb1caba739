//! Conversions between protocol messages and the log's own types, and the protocol's way of
//! reporting errors. Every check on client input lives here: a request that fails one is refused
//! with `InvalidArgument` before it reaches the log.

use std::collections::HashMap;

use bytes::Bytes;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::limits::Limits;
use crate::proto::event_store::client::streams::read_resp::{self, read_event};
use crate::proto::event_store::client::streams::ReadResp;
use crate::proto::event_store::client::{self as shared, uuid as proto_uuid, StreamIdentifier};
use crate::storage::{ExpectedRevision, NewEvent, RecordedEvent, StoreError, Text};

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_BINARY: &str = "application/octet-stream";

pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// A status carrying the `exception` trailer the clients map to typed errors.
pub fn status_with_exception(
    code: Code,
    message: String,
    trailers: &[(&'static str, String)],
) -> Status {
    let mut status = Status::new(code, message);
    for (key, value) in trailers {
        if let Ok(value) = MetadataValue::try_from(metadata_safe(value).as_str()) {
            status.metadata_mut().insert(*key, value);
        }
    }
    status
}

/// gRPC metadata values are visible ASCII: anything else (a UTF-8 stream name) is
/// percent-encoded, so the trailer is never dropped (clients read it without a check).
fn metadata_safe(value: &str) -> String {
    let mut safe = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            safe.push(byte as char);
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    safe
}

/// How a failed write or read is told to a unary/streaming caller.
pub fn status_from_store(error: StoreError) -> Status {
    match error {
        StoreError::StreamDeleted(stream) => status_with_exception(
            Code::FailedPrecondition,
            format!("Event stream '{stream}' is deleted."),
            &[
                ("exception", "stream-deleted".into()),
                ("stream-name", stream),
            ],
        ),
        StoreError::WrongExpectedVersion {
            stream,
            expected,
            current,
        } => status_with_exception(
            Code::FailedPrecondition,
            // A node's words, which the Python client parses: only deletes and tombstones
            // answer a wrong expected version with a status (appends answer with a message).
            format!(
                "Delete failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {}, Actual version: {}",
                expected_as_number(expected),
                current.map_or(-1, |r| r as i64)
            ),
            &[
                ("exception", "wrong-expected-version".into()),
                ("stream-name", stream),
                ("expected-version", expected_as_number(expected).to_string()),
                (
                    "actual-version",
                    current.map_or(-1, |r| r as i64).to_string(),
                ),
            ],
        ),
        StoreError::ShuttingDown => Status::unavailable("the event store is shutting down"),
        StoreError::LogFull => Status::resource_exhausted(
            "the event log is full (its configured size limit or the disk); nothing was written",
        ),
        StoreError::Storage(message) => {
            tracing::error!(%message, "storage failure");
            Status::internal("the event store could not complete the request")
        }
    }
}

/// The legacy numeric form of an expectation (-2 any, -1 no stream, -4 stream exists).
fn expected_as_number(expected: ExpectedRevision) -> i64 {
    match expected {
        ExpectedRevision::Any => -2,
        ExpectedRevision::NoStream => -1,
        ExpectedRevision::StreamExists => -4,
        ExpectedRevision::Exact(revision) => revision as i64,
    }
}

pub fn stream_name(
    identifier: Option<StreamIdentifier>,
    limits: &Limits,
) -> Result<String, Status> {
    let raw = identifier
        .ok_or_else(|| invalid("stream identifier is missing"))?
        .stream_name;
    if raw.is_empty() {
        return Err(invalid("stream name is empty"));
    }
    if raw.len() > limits.stream_name_bytes_max {
        return Err(invalid(format!(
            "stream name is {} bytes, the limit is {}",
            raw.len(),
            limits.stream_name_bytes_max
        )));
    }
    String::from_utf8(raw.to_vec()).map_err(|_| invalid("stream name is not UTF-8"))
}

pub fn parse_uuid(id: Option<shared::Uuid>, what: &str) -> Result<Uuid, Status> {
    match id.and_then(|id| id.value) {
        Some(proto_uuid::Value::Structured(halves)) => Ok(Uuid::from_u64_pair(
            halves.most_significant_bits as u64,
            halves.least_significant_bits as u64,
        )),
        Some(proto_uuid::Value::String(text)) => {
            Uuid::parse_str(&text).map_err(|_| invalid(format!("{what} '{text}' is not a UUID")))
        }
        None => Err(invalid(format!("{what} is missing"))),
    }
}

pub fn uuid_to_proto(id: Uuid, as_string: bool) -> shared::Uuid {
    let value = if as_string {
        proto_uuid::Value::String(id.hyphenated().to_string())
    } else {
        let (most, least) = id.as_u64_pair();
        proto_uuid::Value::Structured(proto_uuid::Structured {
            most_significant_bits: most as i64,
            least_significant_bits: least as i64,
        })
    };
    shared::Uuid { value: Some(value) }
}

/// Validates one proposed event. `type` and `content-type` metadata are required, as the
/// protocol demands; content types other than JSON are stored as binary.
pub fn new_event(
    id: Option<shared::Uuid>,
    metadata: HashMap<String, String>,
    custom_metadata: Bytes,
    data: Bytes,
    limits: &Limits,
) -> Result<NewEvent, Status> {
    let id = parse_uuid(id, "event id")?;
    let event_type = metadata
        .get("type")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("event metadata 'type' is missing or empty"))?;
    if event_type.len() > limits.event_type_bytes_max {
        return Err(invalid(format!(
            "event type is {} bytes, the limit is {}",
            event_type.len(),
            limits.event_type_bytes_max
        )));
    }
    let content_type = match metadata.get("content-type").map(String::as_str) {
        Some(CONTENT_TYPE_JSON) => Text::from_static(CONTENT_TYPE_JSON),
        Some(_) => Text::from_static(CONTENT_TYPE_BINARY),
        None => return Err(invalid("event metadata 'content-type' is missing")),
    };
    let size = data.len() + custom_metadata.len();
    if size > limits.event_bytes_max {
        return Err(maximum_append_size(
            limits,
            format!(
                "event {id} is {size} bytes, the limit is {}",
                limits.event_bytes_max
            ),
        ));
    }
    Ok(NewEvent {
        id,
        event_type: Text::new(event_type.clone()),
        content_type,
        custom_metadata,
        data,
    })
}

pub fn maximum_append_size(limits: &Limits, message: String) -> Status {
    status_with_exception(
        Code::InvalidArgument,
        message,
        &[
            ("exception", "maximum-append-size-exceeded".into()),
            ("maximum-append-size", limits.append_bytes_max.to_string()),
        ],
    )
}

/// Running totals of one append, checked against the limits as messages arrive so an oversize
/// append is refused before it is all buffered.
#[derive(Default)]
pub struct AppendBudget {
    events: usize,
    bytes: usize,
}

impl AppendBudget {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn take(&mut self, event: &NewEvent, limits: &Limits) -> Result<(), Status> {
        self.events += 1;
        self.bytes +=
            event.data.len() + event.custom_metadata.len() + event.event_type.as_str().len();
        if self.events > limits.append_events_max {
            return Err(invalid(format!(
                "an append may carry at most {} events",
                limits.append_events_max
            )));
        }
        if self.bytes > limits.append_bytes_max {
            return Err(maximum_append_size(
                limits,
                format!("append exceeds {} bytes", limits.append_bytes_max),
            ));
        }
        Ok(())
    }
}

/// An event as read back, in the caller's choice of id format.
pub fn read_event(event: &RecordedEvent, string_ids: bool) -> ReadResp {
    read_response(Some(recorded(event, string_ids)), None, event.position)
}

/// A link event with the event it points at (`None`: that event is gone), as a node sends a
/// resolved link: the event in `event`, the link in `link`.
pub fn resolved_link(
    target: Option<&RecordedEvent>,
    link: &RecordedEvent,
    string_ids: bool,
) -> ReadResp {
    let target = target.map(|t| recorded(t, string_ids));
    read_response(target, Some(recorded(link, string_ids)), link.position)
}

fn read_response(
    event: Option<read_event::RecordedEvent>,
    link: Option<read_event::RecordedEvent>,
    position: u64,
) -> ReadResp {
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event,
            link,
            position: Some(read_resp::read_event::Position::CommitPosition(position)),
        })),
    }
}

fn recorded(event: &RecordedEvent, string_ids: bool) -> read_event::RecordedEvent {
    let entry = |key: &'static str, value: Bytes| read_event::MetadataEntry {
        key: Bytes::from_static(key.as_bytes()),
        value,
    };
    let metadata = vec![
        entry("type", event.event_type.bytes()),
        entry("content-type", event.content_type.bytes()),
        entry("created", Bytes::from(event.created_ticks.to_string())),
    ];
    read_event::RecordedEvent {
        id: Some(uuid_to_proto(event.id, string_ids)),
        stream_identifier: Some(StreamIdentifier {
            stream_name: event.stream.bytes(),
        }),
        stream_revision: event.revision,
        prepare_position: event.position,
        commit_position: event.position,
        metadata,
        custom_metadata: event.custom_metadata.clone(),
        data: event.data.clone(),
    }
}

pub fn message(content: read_resp::Content) -> ReadResp {
    ReadResp {
        content: Some(content),
    }
}
