//! The store's explicit limits. Requests beyond them are refused with a protocol error and change
//! nothing; the README lists them.

/// Limits applied to client input. Defaults are documented in the README.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest stream name, in bytes.
    pub stream_name_bytes_max: usize,
    /// Largest event type name, in bytes.
    pub event_type_bytes_max: usize,
    /// Largest single event (data + custom metadata), in bytes.
    pub event_bytes_max: usize,
    /// Largest append (all events of one append together), in bytes.
    pub append_bytes_max: usize,
    /// Most events in one append.
    pub append_events_max: usize,
    /// Most live subscriptions at once, over all connections.
    pub subscriptions_max: usize,
    /// Most appends a single BatchAppend call may have in flight (received, not yet answered).
    pub batch_appends_in_flight_max: usize,
    /// Commits the live feed keeps for subscribers; one further behind reads from disk instead.
    pub live_feed_commits_max: usize,
    /// Largest event log (the SQLite database), in bytes; appends beyond it are refused with
    /// `ResourceExhausted` and nothing of them is written (so is a full disk).
    pub log_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stream_name_bytes_max: 1024,
            event_type_bytes_max: 1024,
            event_bytes_max: 1024 * 1024,
            append_bytes_max: 4 * 1024 * 1024,
            append_events_max: 10_000,
            subscriptions_max: 1024,
            batch_appends_in_flight_max: 256,
            live_feed_commits_max: 1024,
            log_bytes_max: 100 * 1024 * 1024 * 1024,
        }
    }
}

/// Bytes one gRPC message may carry: a whole BatchAppend chunk fits, with room for framing.
pub fn grpc_message_bytes_max(limits: &Limits) -> usize {
    limits.append_bytes_max + 64 * 1024
}
