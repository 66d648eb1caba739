//! The single writer thread: group commit, optimistic concurrency, idempotent retries.
//!
//! Two kinds of failure are kept apart. A *refusal* (wrong expected version, deleted stream) is
//! that request's answer and the group goes on. A *storage failure* (an SQLite error: disk full,
//! I/O error…) aborts the whole group: nothing of it is committed, every request in it gets the
//! error, and the writer re-reads its state from disk before the next group.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::links::{self, LinkHeads, Source};
use super::metadata::{self, Retention};
use super::reclaim::Reclaimer;
use super::{
    now_ticks, stream_head, AppendOutcome, CommitCounters, Committed, ExpectedRevision, NewEvent,
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
    /// Time to reclaim the space of events no read shows (see `reclaim`); done when the
    /// writer has nothing else to do.
    Reclaim,
}

impl WriteRequest {
    fn bytes(&self) -> usize {
        match self {
            WriteRequest::Append { events, .. } => events.iter().map(NewEvent::bytes).sum(),
            WriteRequest::Delete { .. } | WriteRequest::Reclaim => 0,
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
        WriteRequest::Reclaim => unreachable!("reclaim requests are taken out of groups"),
    }
}

pub(super) struct Writer {
    pub conn: Connection,
    /// Whether the writer keeps the system streams (`$ce-`, `$et-`, `$streams`).
    pub system_streams: bool,
    /// Every event up to this position has its links.
    pub linked: u64,
    pub link_heads: LinkHeads,
    pub reclaimer: Reclaimer,
    /// A reclaim was asked for and its round is not over.
    pub reclaim_due: bool,
    pub queue: mpsc::Receiver<WriteRequest>,
    pub live: broadcast::Sender<Arc<Committed>>,
    pub last_position: Arc<AtomicU64>,
    pub commits: Arc<CommitCounters>,
    pub next_position: u64,
    pub heads: Heads,
    pub wal_ahead: super::wal_ahead::WalAhead,
}

impl Writer {
    pub fn run(mut self) {
        let mut carried: Option<WriteRequest> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                // Background work goes on pass after pass while no request waits.
                None if self.idle_work_due() => match self.queue.try_recv() {
                    Ok(request) => request,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.idle_pass();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                },
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
            let before = group.len();
            group.retain(|request| !matches!(request, WriteRequest::Reclaim));
            self.reclaim_due |= group.len() < before;
            if !group.is_empty() {
                self.commit_group(group);
            }
        }
    }

    /// Links of events written before the links existed, or space to reclaim.
    fn idle_work_due(&self) -> bool {
        self.reclaim_due || (self.system_streams && self.linked + 1 < self.next_position)
    }

    /// One bounded piece of background work: linking the backlog first, then reclaiming.
    fn idle_pass(&mut self) {
        if self.system_streams && self.linked + 1 < self.next_position {
            // A group of links alone.
            self.commit_group(Vec::new());
        } else {
            self.reclaim();
        }
    }

    /// One reclaim pass, while nothing else waits for the writer.
    fn reclaim(&mut self) {
        match self.reclaimer.pass(&mut self.conn) {
            Ok((deleted, more)) => {
                self.commits.reclaimed.fetch_add(deleted, Ordering::Relaxed);
                self.reclaim_due = more;
                if deleted > 0 {
                    tracing::debug!(deleted, "reclaimed hidden events");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reclaiming space failed; tried again later");
                self.reclaim_due = false;
            }
        }
    }

    fn commit_group(&mut self, group: Vec<WriteRequest>) {
        self.commits.commits.fetch_add(1, Ordering::Relaxed);
        self.commits
            .requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let (replies, works): (Vec<ReplyTo>, Vec<Work>) = group.into_iter().map(split).unzip();
        let mut committed = Committed::default();
        let started = std::time::Instant::now();
        let written = self.write(works, &mut committed);
        self.commits
            .writing_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match written {
            Ok(answers) => {
                if let Some(last) = committed.events.last() {
                    self.last_position.store(last.position, Ordering::Release);
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    reply.send(answer);
                }
                self.publish(committed);
                // After the answers: a step written out delays the next group, not this one.
                self.wal_ahead.keep_ahead();
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
        let mut group = Group {
            tx: &tx,
            heads: &mut self.heads,
            link_heads: &mut self.link_heads,
            next_position: &mut self.next_position,
            committed,
        };
        let mut answers = Vec::with_capacity(works.len());
        for work in works {
            answers.push(match work {
                Work::Append {
                    stream,
                    expected,
                    events,
                } => Answer::Append(group.append(stream, expected, events)?),
                Work::Delete {
                    stream,
                    expected,
                    tombstone,
                } => Answer::Delete(group.delete(&stream, expected, tombstone)?),
            });
        }
        if self.system_streams {
            self.linked = group.link(self.linked)?;
        }
        tx.commit()?;
        Ok(answers)
    }

    /// After a failed group, nothing in memory can be trusted: re-read the log's end and forget
    /// cached stream heads.
    fn recover(&mut self) {
        self.heads.clear();
        self.link_heads.clear();
        match links::linked(&self.conn) {
            Ok(linked) => self.linked = linked,
            Err(error) => tracing::error!(%error, "cannot re-read how far events are linked"),
        }
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
        if committed.events.is_empty()
            && committed.links.is_empty()
            && committed.tombstoned.is_empty()
        {
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

    /// Events were appended up to `last`: the head moves, their ids join the recent ones.
    fn appended(&mut self, stream: &str, last: u64, ids: impl Iterator<Item = (Uuid, u64)>) {
        let Some(known) = self.known.get_mut(stream) else {
            // `get` came first for every append, unless the memory started over in between.
            return;
        };
        let head = known.head.get_or_insert_with(StreamHead::empty);
        head.last_revision = Some(last);
        for id in ids {
            if known.recent.len() as u64 >= IDEMPOTENCY_WINDOW_EVENTS {
                known.recent.pop_front();
            }
            known.recent.push_back(id);
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

/// Does the stream meet the expectation? A soft-deleted stream may be written as a new one.
/// (Expecting it to exist is refused before this, as deleted.)
fn expectation_met(expected: ExpectedRevision, head: Option<&StreamHead>) -> bool {
    let last = head.and_then(|h| h.last_revision);
    match expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => {
            last.is_none() || head.is_some_and(StreamHead::is_soft_deleted)
        }
        ExpectedRevision::StreamExists => last.is_some(),
        ExpectedRevision::Exact(revision) => last == Some(revision),
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
        current: head.and_then(|h| h.last_revision),
    }
}

/// A refusal is `Ok(Err(..))`; a storage failure is `Err(..)` and aborts the group.
type Decision<T> = rusqlite::Result<Result<T, StoreError>>;

/// One group's transaction and what it changes in memory: the writer's stream heads, the next
/// log position, and the events the commit will publish.
struct Group<'g, 'c> {
    tx: &'g Transaction<'c>,
    heads: &'g mut Heads,
    link_heads: &'g mut LinkHeads,
    next_position: &'g mut u64,
    committed: &'g mut Committed,
}

impl Group<'_, '_> {
    fn append(
        &mut self,
        stream: String,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Decision<AppendOutcome> {
        let head = self.heads.get(self.tx, &stream)?;
        if let Some(refused) = self.refused_as_deleted(&stream, expected, head.as_ref())? {
            return Ok(Err(refused));
        }
        let recent = |id| self.heads.recent_revision_of(&stream, id);
        if let Some(done) = already_appended(self.tx, recent, &stream, expected, head, &events)? {
            return Ok(Ok(done));
        }
        if !expectation_met(expected, head.as_ref()) {
            return Ok(Err(wrong_expected_version(&stream, expected, head)));
        }
        let before = head.unwrap_or_else(StreamHead::empty);
        let Some(last_data) = events.last().map(|e| e.data.clone()) else {
            return Ok(Ok(AppendOutcome {
                current_revision: before.last_revision,
                position: None,
            }));
        };
        let first = before.last_revision.map_or(0, |r| r + 1);
        let outcome = self.insert(&stream, first, events)?;
        if let Some(described) = metadata::described_by(&stream) {
            self.metadata_written(described, &last_data)?;
        } else if before.is_soft_deleted() {
            self.undelete(&stream, first)?;
        }
        Ok(Ok(outcome))
    }

    /// Writes `events` from revision `first` on, in the log and in the writer's memory.
    fn insert(
        &mut self,
        stream: &str,
        first: u64,
        events: Vec<NewEvent>,
    ) -> rusqlite::Result<AppendOutcome> {
        let created = now_ticks();
        let shared_name = Text::new(stream.to_string());
        let mut insert = self.tx.prepare_cached(&format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?;
        let written_from = self.committed.events.len();
        for (revision, event) in (first..).zip(events) {
            let position = *self.next_position;
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
            self.committed.events.push(Arc::new(RecordedEvent {
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
            *self.next_position += 1;
        }
        let written = &self.committed.events[written_from..];
        let last = written.last().expect("at least one event");
        let outcome = AppendOutcome {
            current_revision: Some(last.revision),
            position: Some(last.position),
        };
        if last.revision != metadata::TOMBSTONE_REVISION {
            let ids = written.iter().map(|e| (e.id, e.revision));
            self.heads.appended(stream, last.revision, ids);
        }
        Ok(outcome)
    }

    /// Refusals that come before the expectation: a tombstoned stream (or the metastream of
    /// one), and expecting a soft-deleted stream to exist.
    fn refused_as_deleted(
        &mut self,
        stream: &str,
        expected: ExpectedRevision,
        head: Option<&StreamHead>,
    ) -> rusqlite::Result<Option<StoreError>> {
        let deleted = || Some(StoreError::StreamDeleted(stream.to_string()));
        if head.is_some_and(|h| h.tombstoned) {
            return Ok(deleted());
        }
        if let Some(described) = metadata::described_by(stream) {
            if self
                .heads
                .get(self.tx, described)?
                .is_some_and(|h| h.tombstoned)
            {
                return Ok(deleted());
            }
        }
        let soft_deleted = head.is_some_and(StreamHead::is_soft_deleted);
        Ok((soft_deleted && expected == ExpectedRevision::StreamExists)
            .then(deleted)
            .flatten())
    }

    /// A metastream event was written: its data is now `described`'s metadata. Writing the
    /// metadata of a soft-deleted stream without a `$tb` brings the stream back with its old
    /// events still hidden, as a node does.
    fn metadata_written(&mut self, described: &str, data: &[u8]) -> rusqlite::Result<()> {
        let object = metadata::parse(data);
        let retention = object.as_ref().map(Retention::of).unwrap_or_default();
        let head = self.heads.get(self.tx, described)?;
        let mut after = head.unwrap_or_else(StreamHead::empty);
        after.truncate_before = retention.truncate_before.unwrap_or(0).min(i64::MAX as u64);
        after.max_count = retention.max_count;
        after.max_age_s = retention.max_age_s;
        self.keep(described, after)?;
        let was_deleted = head.is_some_and(|h| h.is_soft_deleted());
        if let (true, Some(object), None) = (was_deleted, object, retention.truncate_before) {
            let last = head.and_then(|h| h.last_revision).unwrap_or(0);
            self.rewrite_metadata(described, metadata::with_truncate_before(object, last + 1))?;
        }
        Ok(())
    }

    /// A soft-deleted stream was written again from `first`: its `$tb` becomes `first`, the
    /// rest of its metadata kept (metadata that is not a JSON object is left alone).
    fn undelete(&mut self, stream: &str, first: u64) -> rusqlite::Result<()> {
        let latest: Option<Vec<u8>> = self
            .tx
            .prepare_cached(
                "SELECT data FROM events WHERE stream = ?1 ORDER BY revision DESC LIMIT 1",
            )?
            .query_row([metadata::metastream_of(stream)], |row| row.get(0))
            .optional()?;
        let object = match latest {
            None => Some(serde_json::Map::new()),
            Some(data) => metadata::parse(&data),
        };
        if let Some(object) = object {
            self.rewrite_metadata(stream, metadata::with_truncate_before(object, first))?;
        }
        Ok(())
    }

    /// Appends a `$metadata` event for `stream` (to its metastream, whatever its revision).
    /// Returns the event's log position.
    fn write_metadata(&mut self, stream: &str, data: Vec<u8>) -> Decision<u64> {
        let event = NewEvent {
            id: Uuid::new_v4(),
            event_type: Text::from_static(metadata::METADATA_EVENT_TYPE),
            content_type: Text::from_static(crate::wire::CONTENT_TYPE_JSON),
            custom_metadata: Bytes::new(),
            data: Bytes::from(data),
        };
        let metastream = metadata::metastream_of(stream);
        Ok(self
            .append(metastream, ExpectedRevision::Any, vec![event])?
            .map(|outcome| outcome.position.unwrap_or_default()))
    }

    /// Metadata the store writes itself after an append (bringing a soft-deleted stream
    /// back): a refusal there leaves the stream as it was and must not undo the append.
    fn rewrite_metadata(&mut self, stream: &str, data: Vec<u8>) -> rusqlite::Result<()> {
        if let Err(refused) = self.write_metadata(stream, data)? {
            tracing::warn!(%refused, stream, "cannot bring a soft-deleted stream's metadata up to date");
        }
        Ok(())
    }

    /// Writes the links of the events after `linked`: this group's own, or — while events
    /// written before the links existed wait — the next batch of those. Returns the position
    /// now linked up to.
    fn link(&mut self, linked: u64) -> rusqlite::Result<u64> {
        let sources: Vec<Source> = match self.committed.events.first() {
            Some(first) if first.position == linked + 1 => self
                .committed
                .events
                .iter()
                .map(|e| Source::of(e))
                .collect(),
            _ if linked + 1 >= *self.next_position => return Ok(linked),
            _ => links::sources_after(self.tx, linked)?,
        };
        // Nothing left after `linked` means the rest was reclaimed: all linked.
        let last = sources
            .last()
            .map_or(*self.next_position - 1, |s| s.position);
        for source in &sources {
            let written = self.link_heads.write(self.tx, source)?;
            self.committed.links.extend(written);
        }
        links::store_linked(self.tx, last)?;
        Ok(last)
    }

    /// Records the stream's retention and tombstone beside the log and in the writer's memory.
    fn keep(&mut self, stream: &str, head: StreamHead) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO streams (name, truncate_before, tombstoned, max_count, max_age_s)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET truncate_before = excluded.truncate_before,
                     tombstoned = excluded.tombstoned, max_count = excluded.max_count,
                     max_age_s = excluded.max_age_s",
            )?
            .execute(params![
                stream,
                head.truncate_before as i64,
                head.tombstoned as i64,
                head.max_count.map(|n| n.min(i64::MAX as u64) as i64),
                head.max_age_s.map(|n| n.min(i64::MAX as u64) as i64),
            ])?;
        self.heads.set_head(stream, head);
        Ok(())
    }

    /// Soft delete: a `$metadata` event with `$tb` past any revision. Tombstone: a
    /// `$streamDeleted` record in the stream itself. Either way the answer is the log position
    /// of what was written, as a node answers.
    fn delete(
        &mut self,
        stream: &str,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Decision<Option<u64>> {
        let head = self.heads.get(self.tx, stream)?;
        if let Some(refused) = self.refused_as_deleted(stream, expected, head.as_ref())? {
            return Ok(Err(refused));
        }
        // As a KurrentDB node does: a stream that never had an event cannot be deleted or
        // tombstoned, whatever the expectation (the actual version is -1, no stream).
        let Some(mut after) = head.filter(|h| h.last_revision.is_some()) else {
            return Ok(Err(wrong_expected_version(stream, expected, None)));
        };
        if !expectation_met(expected, Some(&after)) {
            return Ok(Err(wrong_expected_version(stream, expected, head)));
        }
        if !tombstone {
            return Ok(self
                .write_metadata(stream, metadata::soft_delete_data())?
                .map(Some));
        }
        let record = NewEvent {
            id: Uuid::new_v4(),
            event_type: Text::from_static(metadata::TOMBSTONE_EVENT_TYPE),
            content_type: Text::from_static(crate::wire::CONTENT_TYPE_BINARY),
            custom_metadata: Bytes::new(),
            data: Bytes::new(),
        };
        let written = self.insert(stream, metadata::TOMBSTONE_REVISION, vec![record])?;
        after.tombstoned = true;
        self.keep(stream, after)?;
        self.committed.tombstoned.push(stream.to_string());
        Ok(Ok(written.position))
    }
}

/// Idempotent retries: a client that lost the answer to an append sends it again with the same
/// event ids. If those events are already the stream's events where the expectation puts them
/// (right after the expected revision; for `Any`/`StreamExists`, anywhere among the last
/// `IDEMPOTENCY_WINDOW_EVENTS`), the append already happened and succeeds again without writing.
fn already_appended(
    tx: &Transaction<'_>,
    recent_revision_of: impl Fn(Uuid) -> Option<u64>,
    stream: &str,
    expected: ExpectedRevision,
    head: Option<StreamHead>,
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
            match recent_revision_of(first.id) {
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
