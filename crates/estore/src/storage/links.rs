//! The standard system streams a KurrentDB node's system projections keep, made of link events
//! (type `$>`, data `{revision}@{stream}`):
//! - `$ce-{category}`: every event of the streams named `{category}-…` (the category is the name
//!   before its first `-`);
//! - `$et-{eventType}`: every event of that type;
//! - `$streams`: the first event of every stream.
//!
//! Streams whose name starts with `$` (metastreams, the link streams themselves) and event types
//! that start with `$` are not linked. A node writes these links asynchronously; here the writer
//! links every group's events in the group's own transaction, so a link is never missing once
//! its event is acknowledged. A log written before the links existed is linked from its start,
//! a bounded batch per group (`LINK_EVENTS_PER_GROUP_MAX`) and in idle passes; until then new
//! events wait for the backlog, so each link stream stays in log order.

use rusqlite::{params, Connection, OptionalExtension};

/// Event type of a link.
pub const LINK_EVENT_TYPE: &str = "$>";
/// Source events one group (or idle pass) links at most.
pub const LINK_EVENTS_PER_GROUP_MAX: i64 = 4_096;

pub(super) const SCHEMA: &str = "
-- The log position up to which every event has its links (one row).
CREATE TABLE IF NOT EXISTS linked (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    position INTEGER NOT NULL
);
";

/// An event to link, as read back from the log.
pub(super) struct Source {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub id: uuid::Uuid,
    pub event_type: String,
}

impl Source {
    pub fn of(event: &super::RecordedEvent) -> Source {
        Source {
            position: event.position,
            stream: event.stream.as_str().to_string(),
            revision: event.revision,
            id: event.id,
            event_type: event.event_type.as_str().to_string(),
        }
    }
}

/// The link streams `source` belongs in, and the link's metadata.
pub(super) fn targets(source: &Source) -> Vec<(String, Vec<u8>)> {
    if source.stream.starts_with('$') || source.event_type.starts_with('$') {
        return Vec::new();
    }
    let metadata = |original: Option<&str>| {
        let mut object = serde_json::json!({
            "$c": source.position,
            "$p": source.position,
            "$causedBy": source.id.to_string(),
        });
        if let Some(stream) = original {
            object["$o"] = stream.into();
        }
        serde_json::to_vec(&object).unwrap_or_default()
    };
    let mut targets = Vec::with_capacity(3);
    if let Some(category) = category_of(&source.stream) {
        targets.push((format!("$ce-{category}"), metadata(Some(&source.stream))));
    }
    targets.push((format!("$et-{}", source.event_type), metadata(None)));
    if source.revision == 0 {
        targets.push(("$streams".to_string(), metadata(None)));
    }
    targets
}

/// The name before the first `-`, if there is one and it is not empty.
pub fn category_of(stream: &str) -> Option<&str> {
    match stream.find('-') {
        Some(at) if at > 0 => Some(&stream[..at]),
        _ => None,
    }
}

/// A link's data: where the event it stands for is.
pub fn link_data(revision: u64, stream: &str) -> String {
    format!("{revision}@{stream}")
}

/// Where a link's data points: `(stream, revision)`.
pub fn link_target(data: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(data).ok()?;
    let (revision, stream) = text.split_once('@')?;
    Some((stream, revision.parse().ok()?))
}

/// Up to `LINK_EVENTS_PER_GROUP_MAX` events after `after`, in log order.
pub(super) fn sources_after(conn: &Connection, after: u64) -> rusqlite::Result<Vec<Source>> {
    let mut statement = conn.prepare_cached(
        "SELECT position, stream, revision, event_id, event_type FROM events
         WHERE position > ?1 ORDER BY position LIMIT ?2",
    )?;
    let rows = statement.query_map(
        params![after.min(i64::MAX as u64) as i64, LINK_EVENTS_PER_GROUP_MAX],
        |row| {
            let id: Vec<u8> = row.get(3)?;
            Ok(Source {
                position: row.get::<_, i64>(0)? as u64,
                stream: row.get(1)?,
                revision: row.get::<_, i64>(2)? as u64,
                id: uuid::Uuid::from_slice(&id).unwrap_or_default(),
                event_type: row.get(4)?,
            })
        },
    )?;
    rows.collect()
}

/// The position every event is linked up to; a log that never had links starts from 0.
pub(super) fn linked(conn: &Connection) -> rusqlite::Result<u64> {
    let stored: Option<i64> = conn
        .query_row("SELECT position FROM linked WHERE id = 0", [], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(stored.unwrap_or(0) as u64)
}

pub(super) fn store_linked(conn: &Connection, position: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO linked (id, position) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET position = excluded.position",
    )?
    .execute([position as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(stream: &str, revision: u64, event_type: &str) -> Source {
        Source {
            position: 7,
            stream: stream.into(),
            revision,
            id: uuid::Uuid::nil(),
            event_type: event_type.into(),
        }
    }

    #[test]
    fn an_event_is_linked_by_category_type_and_first_revision() {
        let names = |s: &Source| targets(s).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            names(&source("order-1-a", 0, "OrderPlaced")),
            ["$ce-order", "$et-OrderPlaced", "$streams"]
        );
        assert_eq!(
            names(&source("order-1", 3, "OrderShipped")),
            ["$ce-order", "$et-OrderShipped"]
        );
        assert_eq!(names(&source("plain", 1, "Noted")), ["$et-Noted"]);
        assert_eq!(names(&source("-odd", 1, "Noted")), ["$et-Noted"]);
        assert!(names(&source("$$order-1", 0, "$metadata")).is_empty());
        assert!(names(&source("order-1", 0, "$streamDeleted")).is_empty());
    }

    #[test]
    fn a_link_points_at_its_event() {
        let data = link_data(12, "order-1@x");
        assert_eq!(link_target(data.as_bytes()), Some(("order-1@x", 12)));
        assert_eq!(link_target(b"nonsense"), None);
        let (_, metadata) = &targets(&source("order-1", 0, "OrderPlaced"))[0];
        let metadata: serde_json::Value = serde_json::from_slice(metadata).unwrap();
        assert_eq!(metadata["$o"], "order-1");
        assert_eq!(metadata["$c"], 7);
    }
}
