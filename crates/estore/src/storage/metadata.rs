//! Stream metadata as a KurrentDB node keeps it: the last `$metadata` event of the stream's
//! metastream `$${stream}`, a JSON object. The store honours `$maxCount`, `$maxAge` (seconds)
//! and `$tb` (truncate before) when the stream is read; every other key (`$acl`,
//! `$cacheControl`, custom ones) is kept as written and returned to readers unchanged.
//!
//! A metastream's data that is not a JSON object counts as no metadata, as on a node: it is
//! stored (a metastream is a stream like any other) but limits nothing.

use serde_json::{Map, Value};

/// Prefix of a metastream's name: `$$order-1` holds the metadata of `order-1`.
pub const METASTREAM_PREFIX: &str = "$$";
/// Event type of a metadata event.
pub const METADATA_EVENT_TYPE: &str = "$metadata";
/// Event type of the record a tombstone writes in the stream itself.
pub const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";
/// The revision a tombstone record takes (`long.MaxValue` on a node).
pub const TOMBSTONE_REVISION: u64 = i64::MAX as u64;
/// `$tb` of a soft-deleted stream: every event hidden, whatever is appended later (until the
/// stream is written again, when `$tb` becomes its first new revision).
pub const SOFT_DELETED_TB: u64 = i64::MAX as u64;
/// Events a metastream shows: only its latest (as a node's fixed metastream metadata).
pub const METASTREAM_MAX_COUNT: u64 = 1;

/// The stream whose metadata `stream` holds, if `stream` is a metastream.
pub fn described_by(stream: &str) -> Option<&str> {
    stream.strip_prefix(METASTREAM_PREFIX)
}

pub fn metastream_of(stream: &str) -> String {
    format!("{METASTREAM_PREFIX}{stream}")
}

/// What the store itself acts on: which events of the stream readers see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Revisions below this are hidden from stream reads.
    pub truncate_before: Option<u64>,
    /// Only the latest `max_count` events are shown.
    pub max_count: Option<u64>,
    /// Events older than this many seconds are hidden.
    pub max_age_s: Option<u64>,
}

/// The metadata object written, or `None` when the data is not a JSON object.
pub fn parse(data: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(data) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

impl Retention {
    /// The limits a metadata object sets; keys with a value that is not a whole number ≥ 0 (or,
    /// for `$maxCount` and `$maxAge`, ≥ 1) are ignored, as a node ignores them.
    pub fn of(object: &Map<String, Value>) -> Retention {
        let number = |key: &str| object.get(key).and_then(Value::as_u64);
        Retention {
            truncate_before: number("$tb"),
            max_count: number("$maxCount").filter(|n| *n > 0),
            max_age_s: number("$maxAge").filter(|n| *n > 0),
        }
    }
}

/// The data of the metadata event that soft-deletes a stream: only `$tb`, other keys dropped,
/// as a node writes it.
pub fn soft_delete_data() -> Vec<u8> {
    format!("{{\"$tb\":{SOFT_DELETED_TB}}}").into_bytes()
}

/// `object` with `$tb` set to `truncate_before`: what a node writes when a soft-deleted stream
/// is written again, so the events from before the delete stay hidden.
pub fn with_truncate_before(mut object: Map<String, Value>, truncate_before: u64) -> Vec<u8> {
    object.insert("$tb".into(), Value::from(truncate_before));
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_set_limits_and_bad_values_are_ignored() {
        let object =
            parse(br#"{"$maxCount": 3, "$maxAge": 0, "$tb": 7, "$acl": {}, "mine": 1}"#).unwrap();
        let retention = Retention::of(&object);
        assert_eq!(retention.max_count, Some(3));
        assert_eq!(retention.max_age_s, None, "0 seconds limits nothing");
        assert_eq!(retention.truncate_before, Some(7));
        let object = parse(br#"{"$maxCount": -1, "$tb": "x"}"#).unwrap();
        assert_eq!(Retention::of(&object), Retention::default());
    }

    #[test]
    fn data_that_is_not_an_object_is_no_metadata() {
        assert!(parse(b"[1]").is_none());
        assert!(parse(b"not json").is_none());
    }

    #[test]
    fn undeleting_keeps_the_other_keys() {
        let object = parse(br#"{"$tb": 9223372036854775807, "mine": "kept"}"#).unwrap();
        let again = parse(&with_truncate_before(object, 4)).unwrap();
        assert_eq!(again["$tb"], 4);
        assert_eq!(again["mine"], "kept");
        let deleted = parse(&soft_delete_data()).unwrap();
        assert_eq!(
            Retention::of(&deleted).truncate_before,
            Some(SOFT_DELETED_TB)
        );
    }
}
