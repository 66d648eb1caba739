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
//!
//! A link is kept as one small index row (`links`: link stream, revision, the event's stream,
//! revision and position), not as an event of the log, and the link event readers get is made
//! from it (its id derived from the event's, its position the event's): a node's links cost it
//! whole log records, which here would triple the rows every append writes and fill `$all`
//! with them. So links are not in `$all` (the clients' default filters leave them out there
//! anyway), and the link streams are the store's own: clients cannot append to or delete them.

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::{RecordedEvent, Text};

/// Event type of a link.
pub const LINK_EVENT_TYPE: &str = "$>";
/// Source events one group (or idle pass) links at most.
pub const LINK_EVENTS_PER_GROUP_MAX: i64 = 4_096;
/// The stream of every stream's first event.
pub const STREAMS_STREAM: &str = "$streams";

pub(super) const SCHEMA: &str = "
-- The log position up to which every event has its links (one row).
CREATE TABLE IF NOT EXISTS linked (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    position INTEGER NOT NULL
);
-- The system streams: one row per link.
CREATE TABLE IF NOT EXISTS links (
    stream TEXT NOT NULL,
    revision INTEGER NOT NULL,
    event_stream TEXT NOT NULL,
    event_revision INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (stream, revision)
) WITHOUT ROWID;
";

/// Whether `stream` is one of the system streams the store keeps.
pub fn is_link_stream(stream: &str) -> bool {
    stream.starts_with("$ce-") || stream.starts_with("$et-") || stream == STREAMS_STREAM
}

/// An event to link, as read back from the log.
pub(super) struct Source {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub id: uuid::Uuid,
    pub event_type: String,
    pub created_ticks: i64,
}

impl Source {
    pub fn of(event: &RecordedEvent) -> Source {
        Source {
            position: event.position,
            stream: event.stream.as_str().to_string(),
            revision: event.revision,
            id: event.id,
            event_type: event.event_type.as_str().to_string(),
            created_ticks: event.created_ticks,
        }
    }
}

/// The link streams `source` belongs in.
pub(super) fn targets(source: &Source) -> Vec<String> {
    if source.stream.starts_with('$') || source.event_type.starts_with('$') {
        return Vec::new();
    }
    let mut targets = Vec::with_capacity(3);
    if let Some(category) = category_of(&source.stream) {
        targets.push(format!("$ce-{category}"));
    }
    targets.push(format!("$et-{}", source.event_type));
    if source.revision == 0 {
        targets.push(STREAMS_STREAM.to_string());
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

/// One row of `links`, and what readers need of the event it points at.
#[derive(Debug)]
pub struct Link {
    pub stream: String,
    pub revision: u64,
    pub event_stream: String,
    pub event_revision: u64,
    pub position: u64,
    /// The event's id and creation time (`None` when it was reclaimed).
    pub event: Option<(uuid::Uuid, i64)>,
}

/// FNV-1a over the bytes, from `seed`: a stable hash (std's is not promised to stay).
fn fnv(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Link {
    /// The link event readers get: the same on every read (its id is derived from the link
    /// stream and the event's place), at the event's position.
    pub fn event(&self) -> RecordedEvent {
        let place = format!(
            "{}\n{}",
            self.stream,
            link_data(self.event_revision, &self.event_stream)
        );
        let id = uuid::Uuid::from_u64_pair(
            fnv(place.as_bytes(), 0xcbf2_9ce4_8422_2325),
            fnv(place.as_bytes(), 0x8422_2325_cbf2_9ce4),
        );
        let mut metadata = serde_json::json!({ "$c": self.position, "$p": self.position });
        if let Some((caused_by, _)) = self.event {
            metadata["$causedBy"] = caused_by.to_string().into();
        }
        if self.stream.starts_with("$ce-") {
            metadata["$o"] = self.event_stream.clone().into();
        }
        RecordedEvent {
            position: self.position,
            stream: Text::new(self.stream.clone()),
            revision: self.revision,
            id,
            event_type: Text::from_static(LINK_EVENT_TYPE),
            content_type: Text::from_static(crate::wire::CONTENT_TYPE_BINARY),
            created_ticks: self.event.map_or(0, |(_, created)| created),
            custom_metadata: Bytes::from(serde_json::to_vec(&metadata).unwrap_or_default()),
            data: Bytes::from(link_data(self.event_revision, &self.event_stream)),
        }
    }
}

/// The writer's memory of the link streams' last revisions, bounded like its stream heads.
#[derive(Default)]
pub(super) struct LinkHeads {
    last: std::collections::HashMap<String, u64>,
}

/// Link streams whose last revision the writer remembers at most.
const LINK_HEADS_CACHED_MAX: usize = 65_536;

impl LinkHeads {
    pub fn clear(&mut self) {
        self.last.clear();
    }

    /// Writes the links of `source` into `tx`; returns them, for live subscribers (who make
    /// the link events they need: most commits have none).
    pub fn write(&mut self, tx: &Connection, source: &Source) -> rusqlite::Result<Vec<Arc<Link>>> {
        let mut written = Vec::new();
        for stream in targets(source) {
            let revision = match self.last.get(&stream) {
                Some(last) => last + 1,
                None => last_revision(tx, &stream)?.map_or(0, |r| r + 1),
            };
            tx.prepare_cached(
                "INSERT INTO links (stream, revision, event_stream, event_revision, position)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                stream,
                revision as i64,
                source.stream,
                source.revision as i64,
                source.position as i64
            ])?;
            let link = Link {
                stream,
                revision,
                event_stream: source.stream.clone(),
                event_revision: source.revision,
                position: source.position,
                event: Some((source.id, source.created_ticks)),
            };
            if self.last.len() >= LINK_HEADS_CACHED_MAX {
                self.last.clear();
            }
            self.last.insert(link.stream.clone(), revision);
            written.push(Arc::new(link));
        }
        Ok(written)
    }
}

/// The last revision of a link stream (`None`: no link yet).
pub(super) fn last_revision(conn: &Connection, stream: &str) -> rusqlite::Result<Option<u64>> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(revision) FROM links WHERE stream = ?1")?
        .query_row([stream], |row| row.get(0))?;
    Ok(last.map(|r| r as u64))
}

/// Up to `count_max` links of `stream` from revision `from`, forwards, or backwards from
/// `from` down.
pub(super) fn read(
    conn: &Connection,
    stream: &str,
    from: u64,
    forwards: bool,
    count_max: usize,
) -> rusqlite::Result<Vec<Link>> {
    let sql = if forwards {
        "SELECT l.revision, l.event_stream, l.event_revision, l.position, e.event_id, e.created
         FROM links l LEFT JOIN events e ON e.position = l.position
         WHERE l.stream = ?1 AND l.revision >= ?2 ORDER BY l.revision LIMIT ?3"
    } else {
        "SELECT l.revision, l.event_stream, l.event_revision, l.position, e.event_id, e.created
         FROM links l LEFT JOIN events e ON e.position = l.position
         WHERE l.stream = ?1 AND l.revision <= ?2 ORDER BY l.revision DESC LIMIT ?3"
    };
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(
        params![stream, from.min(i64::MAX as u64) as i64, count_max as i64],
        |row| {
            let id: Option<Vec<u8>> = row.get(4)?;
            let created: Option<i64> = row.get(5)?;
            Ok(Link {
                stream: stream.to_string(),
                revision: row.get::<_, i64>(0)? as u64,
                event_stream: row.get(1)?,
                event_revision: row.get::<_, i64>(2)? as u64,
                position: row.get::<_, i64>(3)? as u64,
                event: id.zip(created).map(|(id, created)| {
                    (uuid::Uuid::from_slice(&id).unwrap_or_default(), created)
                }),
            })
        },
    )?;
    rows.collect()
}

/// Up to `LINK_EVENTS_PER_GROUP_MAX` events after `after`, in log order.
pub(super) fn sources_after(conn: &Connection, after: u64) -> rusqlite::Result<Vec<Source>> {
    let mut statement = conn.prepare_cached(
        "SELECT position, stream, revision, event_id, event_type, created FROM events
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
                created_ticks: row.get(5)?,
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
            created_ticks: 0,
        }
    }

    #[test]
    fn an_event_is_linked_by_category_type_and_first_revision() {
        let names = |s: &Source| targets(s);
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
        assert!(is_link_stream("$ce-order") && is_link_stream("$streams"));
        assert!(!is_link_stream("$$order-1") && !is_link_stream("order-1"));
    }

    #[test]
    fn a_link_points_at_its_event_and_reads_the_same_every_time() {
        let data = link_data(12, "order-1@x");
        assert_eq!(link_target(data.as_bytes()), Some(("order-1@x", 12)));
        assert_eq!(link_target(b"nonsense"), None);
        let link = Link {
            stream: "$ce-order".into(),
            revision: 3,
            event_stream: "order-1".into(),
            event_revision: 0,
            position: 7,
            event: Some((uuid::Uuid::nil(), 1)),
        };
        let (once, again) = (link.event(), link.event());
        assert_eq!(once.id, again.id);
        assert_eq!(once.data.as_ref(), b"0@order-1");
        let metadata: serde_json::Value = serde_json::from_slice(&once.custom_metadata).unwrap();
        assert_eq!(metadata["$o"], "order-1");
        assert_eq!(metadata["$c"], 7);
    }
}
