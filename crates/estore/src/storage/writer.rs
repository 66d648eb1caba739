//! The single writer thread: group commit, optimistic concurrency, idempotent retries.
//!
//! Two kinds of failure are kept apart. A *refusal* (wrong expected version, deleted stream) is
//! that request's answer and the group goes on. A *storage failure* (an SQLite error: disk full,
//! I/O error…) aborts the whole group: nothing of it is committed, every request in it gets the
//! error, and the writer re-reads its state from disk before the next group.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, Transaction};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::{
    stream_head, AppendOutcome, CommitCounters, Committed, ExpectedRevision, NewEvent,
    RecordedEvent, StoreError, StreamHead, Text, EVENT_COLUMNS,
};

/// How many queued requests one group commit may take at most.
pub const WRITE_BATCH_REQUESTS_MAX: usize = 512;
/// Event bytes one group commit may take at most (a request is never split; the group closes
/// once this is reached).
pub const WRITE_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Event bytes of one commit that the live feed carries; a larger commit is announced without
/// its events and subscribers read it from disk, so the feed's memory stays bounded.
pub const LIVE_FEED_COMMIT_BYTES_MAX: usize = 256 * 1024;
/// Stream heads the writer remembers at most.
const HEADS_CACHED_MAX: usize = 65_536;
/// How far back from a stream's head a retried `Any`/`StreamExists` append is recognised.
const IDEMPOTENCY_WINDOW_EVENTS: u64 = 64;

pub(super) enum WriteRequest {
    Append {
        stream: String,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    },
    Delete {
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
}

impl WriteRequest {
    fn bytes(&self) -> usize {
        match self {
            WriteRequest::Append { events, .. } => events.iter().map(NewEvent::bytes).sum(),
            WriteRequest::Delete { .. } => 0,
        }
    }
}

/// A request's answer, sent only once its group is durable.
enum Answer {
    Append(Result<AppendOutcome, StoreError>),
    Delete(Result<Option<u64>, StoreError>),
}

enum ReplyTo {
    Append(oneshot::Sender<Result<AppendOutcome, StoreError>>),
    Delete(oneshot::Sender<Result<Option<u64>, StoreError>>),
}

impl ReplyTo {
    fn send(self, answer: Answer) {
        match (self, answer) {
            (ReplyTo::Append(to), Answer::Append(result)) => drop(to.send(result)),
            (ReplyTo::Delete(to), Answer::Delete(result)) => drop(to.send(result)),
            (to, _) => to.fail(StoreError::Storage(
                "internal: answer of the wrong kind".into(),
            )),
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            ReplyTo::Append(to) => drop(to.send(Err(error))),
            ReplyTo::Delete(to) => drop(to.send(Err(error))),
        }
    }
}

enum Work {
    Append {
        stream: String,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    },
    Delete {
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
    },
}

fn split(request: WriteRequest) -> (ReplyTo, Work) {
    match request {
        WriteRequest::Append {
            stream,
            expected,
            events,
            reply,
        } => (
            ReplyTo::Append(reply),
            Work::Append {
                stream,
                expected,
                events,
            },
        ),
        WriteRequest::Delete {
            stream,
            expected,
            tombstone,
            reply,
        } => (
            ReplyTo::Delete(reply),
            Work::Delete {
                stream,
                expected,
                tombstone,
            },
        ),
    }
}

pub(super) struct Writer {
    pub conn: Connection,
    pub queue: mpsc::Receiver<WriteRequest>,
    pub live: broadcast::Sender<Arc<Committed>>,
    pub last_position: Arc<AtomicU64>,
    pub commits: Arc<CommitCounters>,
    pub next_position: u64,
    pub heads: Heads,
}

impl Writer {
    pub fn run(mut self) {
        let mut carried: Option<WriteRequest> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match self.queue.blocking_recv() {
                    Some(request) => request,
                    None => return,
                },
            };
            let mut bytes = first.bytes();
            let mut group = vec![first];
            while group.len() < WRITE_BATCH_REQUESTS_MAX && bytes < WRITE_BATCH_BYTES_MAX {
                match self.queue.try_recv() {
                    Ok(request) => {
                        bytes += request.bytes();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            // A request that pushed the group over the byte limit opens the next group instead.
            if group.len() > 1 && bytes > WRITE_BATCH_BYTES_MAX {
                carried = group.pop();
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<WriteRequest>) {
        self.commits.commits.fetch_add(1, Ordering::Relaxed);
        self.commits
            .requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let (replies, works): (Vec<ReplyTo>, Vec<Work>) = group.into_iter().map(split).unzip();
        let mut committed = Committed::default();
        match self.write(works, &mut committed) {
            Ok(answers) => {
                if let Some(last) = committed.events.last() {
                    self.last_position.store(last.position, Ordering::Release);
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    reply.send(answer);
                }
                self.publish(committed);
            }
            Err(error) => {
                let error = StoreError::from(error);
                tracing::error!(%error, "group commit failed; nothing of it was written");
                for reply in replies {
                    reply.fail(error.clone());
                }
                self.recover();
            }
        }
    }

    /// Applies a group in one transaction. An `Err` is a storage failure: the transaction is
    /// rolled back (on drop) and nothing of the group is kept.
    fn write(
        &mut self,
        works: Vec<Work>,
        committed: &mut Committed,
    ) -> rusqlite::Result<Vec<Answer>> {
        let tx = self.conn.transaction()?;
        let mut answers = Vec::with_capacity(works.len());
        for work in works {
            let answer = match work {
                Work::Append {
                    stream,
                    expected,
                    events,
                } => Answer::Append(append(
                    &tx,
                    &mut self.heads,
                    stream,
                    expected,
                    events,
                    &mut self.next_position,
                    committed,
                )?),
                Work::Delete {
                    stream,
                    expected,
                    tombstone,
                } => {
                    let log_position = self.next_position - 1;
                    let result = delete(
                        &tx,
                        &mut self.heads,
                        &stream,
                        expected,
                        tombstone,
                        log_position,
                    )?;
                    if tombstone && result.is_ok() {
                        committed.tombstoned.push(stream);
                    }
                    Answer::Delete(result)
                }
            };
            answers.push(answer);
        }
        tx.commit()?;
        Ok(answers)
    }

    /// After a failed group, nothing in memory can be trusted: re-read the log's end and forget
    /// cached stream heads.
    fn recover(&mut self) {
        self.heads.clear();
        match self
            .conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| {
                row.get::<_, i64>(0)
            }) {
            Ok(last) => self.next_position = last as u64 + 1,
            Err(error) => tracing::error!(%error, "cannot re-read the log's end after a failure"),
        }
    }

    /// Tells live subscribers. A commit too large for the feed is announced without its events;
    /// subscribers then read it from disk.
    fn publish(&self, mut committed: Committed) {
        if committed.events.is_empty() && committed.tombstoned.is_empty() {
            return;
        }
        let bytes: usize = committed
            .events
            .iter()
            .map(|e| e.data.len() + e.custom_metadata.len())
            .sum();
        if bytes > LIVE_FEED_COMMIT_BYTES_MAX {
            committed.events.clear();
            committed.elided = true;
        }
        // No receiver is fine: nobody is subscribed.
        let _ = self.live.send(Arc::new(committed));
    }
}

/// The writer's memory of streams: each one's head, so an append to a known stream reads
/// nothing from disk, and the ids of its latest events, so a retried append is recognised
/// without a query. Bounded: when full it starts over (a miss costs a few index lookups).
pub(super) struct Heads {
    known: HashMap<String, Known>,
}

struct Known {
    head: Option<StreamHead>,
    /// (event id, revision) of the stream's last `IDEMPOTENCY_WINDOW_EVENTS` events, oldest first.
    recent: VecDeque<(Uuid, u64)>,
}

impl Heads {
    pub fn new() -> Heads {
        Heads {
            known: HashMap::new(),
        }
    }

    pub fn clear(&mut self) {
        self.known.clear();
    }

    fn get(&mut self, tx: &Connection, stream: &str) -> rusqlite::Result<Option<StreamHead>> {
        if let Some(known) = self.known.get(stream) {
            return Ok(known.head);
        }
        let head = stream_head(tx, stream)?;
        let recent = match head.and_then(|h| h.last_revision) {
            Some(last) => recent_ids(tx, stream, last)?,
            None => VecDeque::new(),
        };
        self.remember(stream, Known { head, recent });
        Ok(head)
    }

    /// Revision of event `id` among the stream's latest events (call `get` first).
    fn recent_revision_of(&self, stream: &str, id: Uuid) -> Option<u64> {
        let known = self.known.get(stream)?;
        known
            .recent
            .iter()
            .find(|(recent, _)| *recent == id)
            .map(|(_, revision)| *revision)
    }

    fn set_head(&mut self, stream: &str, head: StreamHead) {
        match self.known.get_mut(stream) {
            Some(known) => known.head = Some(head),
            None => self.remember(
                stream,
                Known {
                    head: Some(head),
                    recent: VecDeque::new(),
                },
            ),
        }
    }

    fn appended(&mut self, stream: &str, head: StreamHead, ids: impl Iterator<Item = (Uuid, u64)>) {
        self.set_head(stream, head);
        if let Some(known) = self.known.get_mut(stream) {
            for id in ids {
                if known.recent.len() as u64 >= IDEMPOTENCY_WINDOW_EVENTS {
                    known.recent.pop_front();
                }
                known.recent.push_back(id);
            }
        }
    }

    fn remember(&mut self, stream: &str, known: Known) {
        if self.known.len() >= HEADS_CACHED_MAX {
            self.known.clear();
        }
        self.known.insert(stream.to_string(), known);
    }
}

fn recent_ids(tx: &Connection, stream: &str, last: u64) -> rusqlite::Result<VecDeque<(Uuid, u64)>> {
    let from = last.saturating_sub(IDEMPOTENCY_WINDOW_EVENTS - 1);
    let mut statement = tx.prepare_cached(
        "SELECT event_id, revision FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision",
    )?;
    let rows = statement.query_map(params![stream, from as i64], |row| {
        let id: Vec<u8> = row.get(0)?;
        Ok((
            Uuid::from_slice(&id).unwrap_or_default(),
            row.get::<_, i64>(1)? as u64,
        ))
    })?;
    rows.collect()
}

fn now_ticks() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch.as_nanos() / 100) as i64
}

/// Does the stream meet the expectation? A soft-deleted stream counts as absent.
fn expectation_met(expected: ExpectedRevision, head: Option<&StreamHead>) -> bool {
    let visible = head.and_then(StreamHead::visible_last);
    match expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => visible.is_none(),
        ExpectedRevision::StreamExists => visible.is_some(),
        ExpectedRevision::Exact(revision) => head.and_then(|h| h.last_revision) == Some(revision),
    }
}

fn wrong_expected_version(
    stream: &str,
    expected: ExpectedRevision,
    head: Option<StreamHead>,
) -> StoreError {
    StoreError::WrongExpectedVersion {
        stream: stream.to_string(),
        expected,
        current: head.and_then(|h| h.visible_last()),
    }
}

/// A refusal is `Ok(Err(..))`; a storage failure is `Err(..)` and aborts the group.
type Decision<T> = rusqlite::Result<Result<T, StoreError>>;

fn append(
    tx: &Transaction<'_>,
    heads: &mut Heads,
    stream: String,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
    next_position: &mut u64,
    committed: &mut Committed,
) -> Decision<AppendOutcome> {
    let head = heads.get(tx, &stream)?;
    if head.is_some_and(|h| h.tombstoned) {
        return Ok(Err(StoreError::StreamDeleted(stream)));
    }
    if let Some(done) = already_appended(tx, heads, &stream, expected, head.as_ref(), &events)? {
        return Ok(Ok(done));
    }
    if !expectation_met(expected, head.as_ref()) {
        return Ok(Err(wrong_expected_version(&stream, expected, head)));
    }
    let last_before = head.and_then(|h| h.last_revision);
    if events.is_empty() {
        return Ok(Ok(AppendOutcome {
            current_revision: last_before,
            position: None,
        }));
    }
    let created = now_ticks();
    let shared_name = Text::new(stream.clone());
    let mut revision = last_before.map_or(0, |r| r + 1);
    let written_count = events.len();
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?;
    for event in events {
        let position = *next_position;
        insert.execute(params![
            position as i64,
            stream,
            revision as i64,
            event.id.as_bytes().as_slice(),
            event.event_type.as_str(),
            event.content_type.as_str(),
            created,
            event.custom_metadata.as_ref(),
            event.data.as_ref(),
        ])?;
        committed.events.push(Arc::new(RecordedEvent {
            position,
            stream: shared_name.clone(),
            revision,
            id: event.id,
            event_type: event.event_type,
            content_type: event.content_type,
            created_ticks: created,
            custom_metadata: event.custom_metadata,
            data: event.data,
        }));
        *next_position += 1;
        revision += 1;
    }
    let last = revision - 1;
    let (truncate_before, tombstoned) =
        head.map_or((0, false), |h| (h.truncate_before, h.tombstoned));
    let written = committed.events[committed.events.len() - written_count..]
        .iter()
        .map(|e| (e.id, e.revision));
    heads.appended(
        &stream,
        StreamHead {
            last_revision: Some(last),
            truncate_before,
            tombstoned,
        },
        written,
    );
    Ok(Ok(AppendOutcome {
        current_revision: Some(last),
        position: Some(*next_position - 1),
    }))
}

/// Idempotent retries: a client that lost the answer to an append sends it again with the same
/// event ids. If those events are already the stream's events where the expectation puts them
/// (right after the expected revision; for `Any`/`StreamExists`, anywhere among the last
/// `IDEMPOTENCY_WINDOW_EVENTS`), the append already happened and succeeds again without writing.
fn already_appended(
    tx: &Transaction<'_>,
    heads: &Heads,
    stream: &str,
    expected: ExpectedRevision,
    head: Option<&StreamHead>,
    events: &[NewEvent],
) -> rusqlite::Result<Option<AppendOutcome>> {
    let (Some(head), Some(first)) = (head, events.first()) else {
        return Ok(None);
    };
    let Some(last) = head.last_revision else {
        return Ok(None);
    };
    let first_revision = match expected {
        ExpectedRevision::Exact(revision) => match revision.checked_add(1) {
            Some(next) => next,
            None => return Ok(None),
        },
        ExpectedRevision::NoStream => head.truncate_before,
        ExpectedRevision::Any | ExpectedRevision::StreamExists => {
            match heads.recent_revision_of(stream, first.id) {
                Some(revision) if revision >= head.truncate_before => revision,
                _ => return Ok(None),
            }
        }
    };
    let count = events.len() as u64;
    match first_revision.checked_add(count - 1) {
        Some(end) if end <= last => {}
        _ => return Ok(None),
    }
    let mut statement = tx.prepare_cached(
        "SELECT event_id, position FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision LIMIT ?3",
    )?;
    let found: Vec<(Vec<u8>, i64)> = statement
        .query_map(
            params![stream, first_revision as i64, count as i64],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    let same = found.len() == events.len()
        && found
            .iter()
            .zip(events)
            .all(|((id, _), event)| id.as_slice() == event.id.as_bytes());
    Ok(same.then(|| AppendOutcome {
        current_revision: Some(first_revision + count - 1),
        position: found.last().map(|(_, position)| *position as u64),
    }))
}

fn delete(
    tx: &Transaction<'_>,
    heads: &mut Heads,
    stream: &str,
    expected: ExpectedRevision,
    tombstone: bool,
    log_position: u64,
) -> Decision<Option<u64>> {
    let head = heads.get(tx, stream)?;
    if head.is_some_and(|h| h.tombstoned) {
        return Ok(Err(StoreError::StreamDeleted(stream.to_string())));
    }
    // As a KurrentDB node does: a stream that never had an event cannot be deleted or
    // tombstoned, whatever the expectation (the actual version is -1, no stream).
    let Some((mut after, last)) = head.and_then(|h| Some((h, h.last_revision?))) else {
        return Ok(Err(StoreError::WrongExpectedVersion {
            stream: stream.to_string(),
            expected,
            current: None,
        }));
    };
    if !expectation_met(expected, Some(&after)) {
        return Ok(Err(wrong_expected_version(stream, expected, head)));
    }
    if tombstone {
        after.tombstoned = true;
    } else {
        after.truncate_before = last + 1;
    }
    tx.prepare_cached(
        "INSERT INTO streams (name, truncate_before, tombstoned) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET truncate_before = excluded.truncate_before,
                                          tombstoned = excluded.tombstoned",
    )?
    .execute(params![
        stream,
        after.truncate_before as i64,
        after.tombstoned as i64
    ])?;
    heads.set_head(stream, after);
    Ok(Ok((log_position > 0).then_some(log_position)))
}
