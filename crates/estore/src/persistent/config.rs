//! A subscription group's configuration: what it reads, from where, and how it hands events
//! out. Kept in the log itself (`$persistentSubscriptionConfig`, one `PersistentConfig1` event
//! holding every group, as a node keeps it), so groups survive a restart or a kill -9.

use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::filter::EventFilter;
use crate::proto::event_store::client::persistent_subscriptions::create_req;
use crate::proto::event_store::client::persistent_subscriptions::update_req;
use crate::proto::event_store::client::streams::read_req::options::{
    filter_options, FilterOptions,
};
use crate::wire::invalid;

/// The stream holding every group's configuration.
pub const CONFIG_STREAM: &str = "$persistentSubscriptionConfig";
/// Event type of a configuration event.
pub const CONFIG_EVENT_TYPE: &str = "PersistentConfig1";
/// Event type of a checkpoint event.
pub const CHECKPOINT_EVENT_TYPE: &str = "$SubscriptionCheckpoint";

/// Most subscription groups the store keeps.
pub const GROUPS_MAX: usize = 1_000;
/// Longest group name, in bytes.
pub const GROUP_NAME_BYTES_MAX: usize = 256;
/// Most consumers of one group, whatever its `max_subscriber_count`.
pub const CONSUMERS_PER_GROUP_MAX: usize = 256;
/// Largest buffer a setting may ask for (history, live, read batch, a consumer's), in events.
pub const BUFFER_EVENTS_MAX: i32 = 100_000;
/// Most retries a setting may ask for.
pub const RETRIES_MAX: i32 = 1_000_000;
/// Events one group holds at most (read ahead, to retry, in flight), whatever its buffers: at
/// most 2 GiB with 1 MiB events, under a megabyte with the shop's.
pub const WINDOW_EVENTS_MAX: usize = 2_000;
/// Longest message timeout or checkpoint interval, in milliseconds (a day).
pub const INTERVAL_MS_MAX: i64 = 86_400_000;

/// `$all`'s name in event sources and stream names built from them.
pub const ALL: &str = "$all";

/// Where a group reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    Stream(String),
    All,
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Stream(name) => name,
            Source::All => ALL,
        }
    }
}

/// How events are handed to a group's consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Each event to the next consumer with room, in turn.
    RoundRobin,
    /// Every event to the first consumer with room (the others take over when it is full or
    /// gone).
    DispatchToSingle,
    /// The events of one stream always to the same consumer.
    Pinned,
    /// The events of one correlation id (`$correlationId` in their metadata, else the stream)
    /// always to the same consumer.
    PinnedByCorrelation,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "RoundRobin",
            Strategy::DispatchToSingle => "DispatchToSingle",
            Strategy::Pinned => "Pinned",
            Strategy::PinnedByCorrelation => "PinnedByCorrelation",
        }
    }

    fn parse(name: &str) -> Result<Strategy, Status> {
        [
            Strategy::RoundRobin,
            Strategy::DispatchToSingle,
            Strategy::Pinned,
            Strategy::PinnedByCorrelation,
        ]
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            invalid(format!(
                "consumer strategy '{name}' is unknown: RoundRobin, DispatchToSingle, Pinned or PinnedByCorrelation"
            ))
        })
    }

    fn from_number(number: i32) -> Strategy {
        match number {
            0 => Strategy::DispatchToSingle,
            2 => Strategy::Pinned,
            _ => Strategy::RoundRobin,
        }
    }
}

/// A group's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub resolve_links: bool,
    pub extra_statistics: bool,
    /// Retries of one event before it is parked.
    pub max_retry_count: u32,
    pub min_checkpoint_count: u32,
    pub max_checkpoint_count: u32,
    /// 0: no limit (but `CONSUMERS_PER_GROUP_MAX`).
    pub max_subscriber_count: u32,
    pub live_buffer_size: u32,
    pub read_batch_size: u32,
    pub history_buffer_size: u32,
    pub message_timeout_ms: u64,
    pub checkpoint_after_ms: u64,
    pub strategy: Strategy,
}

/// The protocol's settings messages for create and update share their fields.
pub struct Wire {
    pub resolve_links: bool,
    pub extra_statistics: bool,
    pub max_retry_count: i32,
    pub min_checkpoint_count: i32,
    pub max_checkpoint_count: i32,
    pub max_subscriber_count: i32,
    pub live_buffer_size: i32,
    pub read_batch_size: i32,
    pub history_buffer_size: i32,
    /// Milliseconds.
    pub message_timeout: Option<i64>,
    /// Milliseconds.
    pub checkpoint_after: Option<i64>,
    pub strategy: Result<Strategy, Status>,
}

/// .NET ticks (100 ns) per millisecond.
const TICKS_PER_MS: i64 = 10_000;

/// The fields both settings messages share, as `Wire` (the strategy comes separately).
macro_rules! wire_of {
    ($s:expr, $settings:ident, $strategy:expr) => {{
        use $settings::{CheckpointAfter, MessageTimeout};
        Wire {
            resolve_links: $s.resolve_links,
            extra_statistics: $s.extra_statistics,
            max_retry_count: $s.max_retry_count,
            min_checkpoint_count: $s.min_checkpoint_count,
            max_checkpoint_count: $s.max_checkpoint_count,
            max_subscriber_count: $s.max_subscriber_count,
            live_buffer_size: $s.live_buffer_size,
            read_batch_size: $s.read_batch_size,
            history_buffer_size: $s.history_buffer_size,
            message_timeout: $s.message_timeout.map(|t| match t {
                MessageTimeout::MessageTimeoutMs(ms) => i64::from(ms),
                MessageTimeout::MessageTimeoutTicks(ticks) => ticks / TICKS_PER_MS,
            }),
            checkpoint_after: $s.checkpoint_after.map(|t| match t {
                CheckpointAfter::CheckpointAfterMs(ms) => i64::from(ms),
                CheckpointAfter::CheckpointAfterTicks(ticks) => ticks / TICKS_PER_MS,
            }),
            strategy: $strategy,
        }
    }};
}

impl From<create_req::Settings> for Wire {
    fn from(s: create_req::Settings) -> Wire {
        use create_req::settings;
        #[allow(deprecated)]
        let strategy = if s.consumer_strategy.is_empty() {
            Ok(Strategy::from_number(s.named_consumer_strategy))
        } else {
            Strategy::parse(&s.consumer_strategy)
        };
        wire_of!(s, settings, strategy)
    }
}

impl From<update_req::Settings> for Wire {
    fn from(s: update_req::Settings) -> Wire {
        use update_req::settings;
        let strategy = Ok(Strategy::from_number(s.named_consumer_strategy));
        wire_of!(s, settings, strategy)
    }
}

fn within(name: &str, value: i32, low: i32, high: i32) -> Result<u32, Status> {
    if (low..=high).contains(&value) {
        Ok(value as u32)
    } else {
        Err(invalid(format!(
            "{name} must be between {low} and {high}, got {value}"
        )))
    }
}

fn interval(name: &str, value: Option<i64>, default_ms: u64) -> Result<u64, Status> {
    match value {
        None => Ok(default_ms),
        Some(ms) if (0..=INTERVAL_MS_MAX).contains(&ms) => Ok(ms as u64),
        Some(ms) => Err(invalid(format!(
            "{name} must be between 0 and {INTERVAL_MS_MAX} ms, got {ms}"
        ))),
    }
}

impl Settings {
    /// Checks every setting against its limit; a bad one is refused, naming it.
    pub fn validate(wire: Wire) -> Result<Settings, Status> {
        let settings = Settings {
            resolve_links: wire.resolve_links,
            extra_statistics: wire.extra_statistics,
            max_retry_count: within("max_retry_count", wire.max_retry_count, 0, RETRIES_MAX)?,
            min_checkpoint_count: within(
                "min_checkpoint_count",
                wire.min_checkpoint_count,
                0,
                BUFFER_EVENTS_MAX,
            )?,
            max_checkpoint_count: within(
                "max_checkpoint_count",
                wire.max_checkpoint_count,
                0,
                BUFFER_EVENTS_MAX,
            )?,
            max_subscriber_count: within(
                "max_subscriber_count",
                wire.max_subscriber_count,
                0,
                CONSUMERS_PER_GROUP_MAX as i32,
            )?,
            live_buffer_size: within(
                "live_buffer_size",
                wire.live_buffer_size,
                1,
                BUFFER_EVENTS_MAX,
            )?,
            read_batch_size: within(
                "read_batch_size",
                wire.read_batch_size,
                1,
                BUFFER_EVENTS_MAX,
            )?,
            history_buffer_size: within(
                "history_buffer_size",
                wire.history_buffer_size,
                1,
                BUFFER_EVENTS_MAX,
            )?,
            message_timeout_ms: interval("message_timeout", wire.message_timeout, 30_000)?,
            checkpoint_after_ms: interval("checkpoint_after", wire.checkpoint_after, 2_000)?,
            strategy: wire.strategy?,
        };
        if settings.min_checkpoint_count > settings.max_checkpoint_count {
            return Err(invalid(format!(
                "min_checkpoint_count ({}) must not exceed max_checkpoint_count ({})",
                settings.min_checkpoint_count, settings.max_checkpoint_count
            )));
        }
        Ok(settings)
    }

    /// Events a group holds at most (read ahead, retried, in flight).
    pub fn window_events(&self) -> usize {
        (self.history_buffer_size as usize + self.live_buffer_size as usize)
            .clamp(1, WINDOW_EVENTS_MAX)
    }
}

/// A filter on `$all`, as kept in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    /// Matches stream names (true) or event types (false).
    pub on_stream_name: bool,
    pub regex: String,
    pub prefixes: Vec<String>,
    pub window: u32,
    pub multiplier: u32,
}

impl FilterSpec {
    pub fn of(options: create_req::all_options::FilterOptions) -> Result<FilterSpec, Status> {
        use create_req::all_options::filter_options::{Filter, Window};
        let (on_stream_name, expression) = match options.filter {
            Some(Filter::StreamIdentifier(e)) => (true, e),
            Some(Filter::EventType(e)) => (false, e),
            None => {
                return Err(invalid(
                    "filter has neither a stream nor an event type expression",
                ))
            }
        };
        let spec = FilterSpec {
            on_stream_name,
            regex: expression.regex,
            prefixes: expression.prefix,
            window: match options.window {
                Some(Window::Max(max)) => max,
                _ => 0,
            },
            multiplier: options.checkpoint_interval_multiplier,
        };
        spec.filter()?;
        Ok(spec)
    }

    /// The filter itself (checked and compiled as a `$all` read's filter is).
    pub fn filter(&self) -> Result<EventFilter, Status> {
        let expression = filter_options::Expression {
            regex: self.regex.clone(),
            prefix: self.prefixes.clone(),
        };
        EventFilter::parse(FilterOptions {
            filter: Some(if self.on_stream_name {
                filter_options::Filter::StreamIdentifier(expression)
            } else {
                filter_options::Filter::EventType(expression)
            }),
            window: Some(filter_options::Window::Max(self.window)),
            checkpoint_interval_multiplier: self.multiplier,
        })
    }
}

/// One group, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupConfig {
    pub source: Source,
    pub group: String,
    /// Where the group starts when it has no checkpoint: the first revision (stream) or
    /// position ($all) it delivers.
    pub start_at: u64,
    /// How the start was asked for, for `GetInfo` ("0" start, "-1" end, else the revision or
    /// position).
    pub start_from: String,
    pub filter: Option<FilterSpec>,
    pub settings: Settings,
}

impl GroupConfig {
    pub fn checkpoint_stream(&self) -> String {
        format!(
            "$persistentsubscription-{}::{}-checkpoint",
            self.source.name(),
            self.group
        )
    }

    pub fn parked_stream(&self) -> String {
        format!(
            "$persistentsubscription-{}::{}-parked",
            self.source.name(),
            self.group
        )
    }
}

/// Every group, as one configuration event holds them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    pub groups: Vec<GroupConfig>,
}

/// A group name the store accepts.
pub fn group_name(name: String) -> Result<String, Status> {
    if name.is_empty() {
        return Err(invalid("group name is empty"));
    }
    if name.len() > GROUP_NAME_BYTES_MAX {
        return Err(invalid(format!(
            "group name is {} bytes, the limit is {GROUP_NAME_BYTES_MAX}",
            name.len()
        )));
    }
    Ok(name)
}
