//! The durable log: SQLite in WAL mode with `synchronous=FULL`, one writer thread, pooled readers.
//!
//! Why SQLite: it is the best-kept embedded storage engine there is, its WAL commit is an fsync'd
//! append, and a crash at any instant leaves either the whole transaction or none of it, so no
//! partial event can ever be read back. A hand-made segment file would need its own checksums,
//! torn-write recovery and index. The benchmark (`scripts/bench-estore`) shows appends are
//! CPU-bound (gRPC and the WAL pages of the per-stream index), not fsync-bound: groups average
//! 15-30 appends per fsync, so a hand-made format would not win there; a cheaper stream index
//! might (see docs/benchmarks.md).
//!
//! Writes: every append or delete is a request on a bounded queue to the single writer thread.
//! The writer takes everything queued (up to `WRITE_BATCH_REQUESTS_MAX`), applies it in one
//! transaction and commits once (group commit): one fsync acknowledges the whole group, and a
//! request is answered only after its commit returned. Committed events are then published on a
//! bounded broadcast channel for live subscriptions.
//!
//! Reads run on pooled read-only connections (WAL readers never block the writer).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub mod links;
pub mod metadata;
mod reclaim;
mod wal_ahead;
mod writer;

use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{broadcast, mpsc, oneshot};

use uuid::Uuid;
use writer::{Heads, WriteRequest, Writer};
pub use writer::{LIVE_FEED_COMMIT_BYTES_MAX, WRITE_BATCH_BYTES_MAX, WRITE_BATCH_REQUESTS_MAX};

/// How many requests may wait for the writer before senders are made to wait (back-pressure).
pub const WRITE_QUEUE_REQUESTS_MAX: usize = 4096;
/// SQLite's page size (its default), in bytes.
const PAGE_BYTES: u64 = 4096;
/// WAL pages (4 KiB) after which the writer copies the WAL back into the database file.
const WAL_CHECKPOINT_PAGES: u32 = 10_000;
/// Size the WAL file is truncated to after a checkpoint, in bytes.
const WAL_KEPT_BYTES: u64 = 64 * 1024 * 1024;
/// The writer's page cache, in KiB: keeps the hot index pages in memory; the pages it reads
/// beyond it come from the OS page cache. (At 64 MiB it was the largest part of the whole
/// shop's memory once the log had grown.)
const WRITER_CACHE_KIB: u32 = 16 * 1024;
/// Idle read connections kept open.
const READERS_IDLE_MAX: usize = 8;

/// What the writer must find in the stream before it appends (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

/// UTF-8 text held as shared bytes, so every reader's response reuses it without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    pub fn new(text: String) -> Text {
        Text(Bytes::from(text))
    }

    pub const fn from_static(text: &'static str) -> Text {
        Text(Bytes::from_static(text.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: a `Text` is only ever built from a `str` or `String` (the field is private),
        // so its bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }
}

/// An event proposed by a client, already validated by the protocol layer.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: Text,
    pub content_type: Text,
    pub custom_metadata: Bytes,
    pub data: Bytes,
}

impl NewEvent {
    /// Bytes the event carries (data, custom metadata, type).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.custom_metadata.len() + self.event_type.as_str().len()
    }
}

/// An event as stored: its place in the stream (`revision`) and in the whole log (`position`).
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream: Text,
    pub revision: u64,
    pub id: Uuid,
    pub event_type: Text,
    pub content_type: Text,
    /// .NET ticks (100 ns) since the Unix epoch, as the protocol carries them.
    pub created_ticks: i64,
    pub custom_metadata: Bytes,
    pub data: Bytes,
}

/// One commit as the live feed publishes it, in log order.
#[derive(Debug, Default)]
pub struct Committed {
    pub events: Vec<Arc<RecordedEvent>>,
    /// Links of the system streams written in this commit (not in `$all`).
    pub links: Vec<Arc<links::Link>>,
    /// Streams tombstoned in this commit: their subscribers must be told.
    pub tombstoned: Vec<String>,
    /// The commit was too large for the feed: its events are left out and must be read from
    /// disk (see `LIVE_FEED_COMMIT_BYTES_MAX`).
    pub elided: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Revision of the stream's last event; `None` when the stream is still empty.
    pub current_revision: Option<u64>,
    /// Log position of the last event written; `None` when nothing was written.
    pub position: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("wrong expected version on {stream}: expected {expected:?}, stream is at {current:?}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedRevision,
        current: Option<u64>,
    },
    #[error("stream {0} is deleted")]
    StreamDeleted(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("the event log is full (its size limit or the disk)")]
    LogFull,
    #[error("the store is shutting down")]
    ShuttingDown,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::LogFull,
            _ => StoreError::Storage(e.to_string()),
        }
    }
}

/// Result of reading a stream: the protocol tells a missing stream apart from an empty page.
#[derive(Debug)]
pub enum StreamPage {
    NotFound,
    Events(Vec<RecordedEvent>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writes: mpsc::Sender<WriteRequest>,
    live: broadcast::Sender<Arc<Committed>>,
    last_position: Arc<AtomicU64>,
    commits: Arc<CommitCounters>,
    readers: Mutex<Vec<Connection>>,
}

/// How well group commit groups (requests written per commit, one fsync each), the time the
/// writer spent writing and committing, and the hidden events reclaimed.
#[derive(Debug, Default)]
pub struct CommitCounters {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
    /// Nanoseconds in the writer's transactions (applying a group and its commit's fsync).
    pub writing_ns: AtomicU64,
    pub reclaimed: AtomicU64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    revision INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created INTEGER NOT NULL,
    custom_metadata BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events (stream, revision);
-- Streams with metadata or a tombstone have a row: the retention their metastream's latest
-- event sets, kept beside the log so reads need not parse it. A stream's last revision is read
-- from the index.
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY,
    truncate_before INTEGER NOT NULL DEFAULT 0,
    tombstoned INTEGER NOT NULL DEFAULT 0,
    max_count INTEGER,
    max_age_s INTEGER
) WITHOUT ROWID;
";

/// Logs made before stream metadata lack the retention columns.
const RETENTION_COLUMNS: &str = "
ALTER TABLE streams ADD COLUMN max_count INTEGER;
ALTER TABLE streams ADD COLUMN max_age_s INTEGER;
";

pub(super) const EVENT_COLUMNS: &str =
    "position, stream, revision, event_id, event_type, content_type, created, custom_metadata, data";

impl Store {
    /// Opens (or creates) the log under `data_dir` and starts its writer thread; with
    /// `system_streams` the writer keeps `$ce-`, `$et-` and `$streams` (see [`links`]).
    pub fn open(
        data_dir: &Path,
        limits: &crate::Limits,
        system_streams: bool,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Storage(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("events.sqlite");
        let conn = Connection::open(&path)?;
        // WAL_CHECKPOINT_PAGES: a checkpoint copies each page once however often it changed, so
        // a larger WAL (40 MB here) rewrites hot index pages far less often than the default.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES};
             PRAGMA cache_size=-{WRITER_CACHE_KIB}; PRAGMA journal_size_limit={WAL_KEPT_BYTES};"
        ))?;
        let wal_ahead = wal_ahead::WalAhead::open(&path);
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(links::SCHEMA)?;
        let linked = links::linked(&conn)?;
        let has_retention: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('streams') WHERE name = 'max_count'",
            [],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has_retention {
            conn.execute_batch(RETENTION_COLUMNS)?;
        }
        let pages_max = (limits.log_bytes_max / PAGE_BYTES).clamp(16, u64::from(u32::MAX - 1));
        conn.query_row(
            &format!("PRAGMA max_page_count={pages_max}"),
            [],
            |_| Ok(()),
        )?;
        let last_position: u64 =
            conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })? as u64;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE_REQUESTS_MAX);
        let (live, _) = broadcast::channel(limits.live_feed_commits_max.max(1));
        let last_position = Arc::new(AtomicU64::new(last_position));
        let commits = Arc::new(CommitCounters::default());
        let writer = Writer {
            conn,
            system_streams,
            linked,
            link_heads: Default::default(),
            reclaimer: Default::default(),
            reclaim_due: true,
            queue,
            live: live.clone(),
            last_position: Arc::clone(&last_position),
            commits: Arc::clone(&commits),
            next_position: last_position.load(Ordering::Acquire) + 1,
            heads: Heads::new(),
            wal_ahead,
        };
        std::thread::Builder::new()
            .name("estore-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Storage(format!("cannot start writer: {e}")))?;
        let inner = Arc::new(Inner {
            path: path.clone(),
            writes,
            live,
            last_position,
            commits,
            readers: Mutex::new(Vec::new()),
        });
        Ok(Store { inner })
    }

    /// Asks the writer every `interval` to reclaim the space of events no read shows any more
    /// (the first time at once). Stops when the store is dropped.
    pub fn reclaim_every(&self, interval: std::time::Duration) {
        let writes = self.inner.writes.downgrade();
        let ticker = std::thread::Builder::new()
            .name("estore-reclaim".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(writes) = writes.upgrade() else {
                    return;
                };
                // A full queue means the writer is busy: this tick is skipped.
                let _ = writes.try_send(WriteRequest::Reclaim);
            });
        if let Err(error) = ticker {
            tracing::warn!(%error, "cannot start reclaiming space; hidden events stay on disk");
        }
    }

    /// Position of the last committed event (0 when the log is empty).
    pub fn last_position(&self) -> u64 {
        self.inner.last_position.load(Ordering::Acquire)
    }

    /// Commits made and write requests they carried, since the store was opened.
    pub fn commit_counters(&self) -> Arc<CommitCounters> {
        Arc::clone(&self.inner.commits)
    }

    /// A receiver of every commit from now on. Subscribe *before* reading history so nothing
    /// committed in between is missed; duplicates are filtered by position.
    pub fn live(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.inner.live.subscribe()
    }

    pub async fn append(
        &self,
        stream: String,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteRequest::Append {
            stream,
            expected,
            events,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Soft delete (`tombstone == false`): the stream reads as not found until written again,
    /// and its revisions go on from where they were. Tombstone: the stream is gone for good.
    /// Returns the log position at the time of the delete.
    pub async fn delete(
        &self,
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<Option<u64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(WriteRequest::Delete {
            stream,
            expected,
            tombstone,
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }

    async fn submit(&self, request: WriteRequest) -> Result<(), StoreError> {
        self.inner
            .writes
            .send(request)
            .await
            .map_err(|_| StoreError::ShuttingDown)
    }

    /// Reads up to `count_max` events of the whole log. Forwards starts at `from` inclusive;
    /// backwards returns events strictly before `from` (`u64::MAX` = from the end).
    pub async fn read_all(
        &self,
        from: u64,
        direction: Direction,
        count_max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(move |conn| {
            let (sql, from) = match direction {
                Direction::Forwards => (
                    format!("SELECT {EVENT_COLUMNS} FROM events WHERE position >= ?1 ORDER BY position LIMIT ?2"),
                    from.min(i64::MAX as u64) as i64,
                ),
                Direction::Backwards => (
                    format!("SELECT {EVENT_COLUMNS} FROM events WHERE position < ?1 ORDER BY position DESC LIMIT ?2"),
                    from.min(i64::MAX as u64) as i64,
                ),
            };
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![from, count_max as i64], event_from_row)?;
            page_of(rows)
        })
        .await
    }

    /// Reads up to `count_max` events of one stream from revision `from` inclusive
    /// (`u64::MAX` backwards = from the end).
    pub async fn read_stream(
        &self,
        stream: String,
        from: u64,
        direction: Direction,
        count_max: usize,
    ) -> Result<StreamPage, StoreError> {
        self.with_reader(move |conn| {
            let tx = conn.transaction()?;
            if links::is_link_stream(&stream) {
                return read_links(&tx, &stream, from, direction, count_max);
            }
            if let Some(described) = metadata::described_by(&stream) {
                if stream_head(&tx, described)?.is_some_and(|h| h.tombstoned) {
                    return Err(StoreError::StreamDeleted(stream));
                }
            }
            let Some(head) = stream_head(&tx, &stream)? else {
                return Ok(StreamPage::NotFound);
            };
            if head.tombstoned {
                return Err(StoreError::StreamDeleted(stream));
            }
            let Some(last) = head.visible_last() else {
                return Ok(StreamPage::NotFound);
            };
            let first = head.first_visible(last) as i64;
            let oldest_ticks = head.oldest_visible_ticks(now_ticks());
            let events = match direction {
                Direction::Forwards => {
                    let from = from.min(i64::MAX as u64) as i64;
                    let mut statement = tx.prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE stream = ?1 AND revision >= ?2 AND created >= ?3 ORDER BY revision LIMIT ?4"
                    ))?;
                    let rows = statement.query_map(
                        params![stream, from.max(first), oldest_ticks, count_max as i64],
                        event_from_row,
                    )?;
                    page_of(rows)?
                }
                Direction::Backwards => {
                    let from = from.min(last);
                    let mut statement = tx.prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE stream = ?1 AND revision <= ?2 AND revision >= ?3 AND created >= ?4 ORDER BY revision DESC LIMIT ?5"
                    ))?;
                    let rows = statement.query_map(
                        params![stream, from as i64, first, oldest_ticks, count_max as i64],
                        event_from_row,
                    )?;
                    page_of(rows)?
                }
            };
            Ok(StreamPage::Events(events))
        })
        .await
    }

    /// The event a link points at, if readers can still see it (`None` when it was deleted,
    /// truncated, reclaimed or the link is not a link).
    pub async fn link_target(&self, link: &RecordedEvent) -> Option<RecordedEvent> {
        let (stream, revision) = links::link_target(&link.data)?;
        let page = self
            .read_stream(stream.to_string(), revision, Direction::Forwards, 1)
            .await;
        match page {
            Ok(StreamPage::Events(events)) => events.into_iter().find(|e| e.revision == revision),
            _ => None,
        }
    }

    /// The stream's last revision if it has visible events; an error if it is tombstoned.
    pub async fn stream_last_revision(&self, stream: String) -> Result<Option<u64>, StoreError> {
        if links::is_link_stream(&stream) {
            return self
                .with_reader(move |conn| Ok(links::last_revision(conn, &stream)?))
                .await;
        }
        self.with_reader(move |conn| match stream_head(conn, &stream)? {
            Some(head) if head.tombstoned => Err(StoreError::StreamDeleted(stream)),
            Some(head) => Ok(head.last_revision),
            None => Ok(None),
        })
        .await
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().map_err(|_| poisoned())?.pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let result = work(&mut conn);
            let mut idle = inner.readers.lock().map_err(|_| poisoned())?;
            if idle.len() < READERS_IDLE_MAX {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Storage(format!("reader task failed: {e}")))?
    }
}

/// A page of a system stream, its link events made from the `links` rows.
fn read_links(
    conn: &Connection,
    stream: &str,
    from: u64,
    direction: Direction,
    count_max: usize,
) -> Result<StreamPage, StoreError> {
    let Some(last) = links::last_revision(conn, stream)? else {
        return Ok(StreamPage::NotFound);
    };
    let rows = match direction {
        Direction::Forwards => links::read(conn, stream, from, true, count_max)?,
        Direction::Backwards => links::read(conn, stream, from.min(last), false, count_max)?,
    };
    Ok(StreamPage::Events(
        rows.iter().map(links::Link::event).collect(),
    ))
}

/// Event bytes one page holds at most (it always holds at least one event): with 1 MiB events a
/// page of `count_max` events would otherwise be hundreds of megabytes.
pub const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Collects rows into a page until the count (set by the query) or `PAGE_BYTES_MAX` is reached.
/// A page may thus be shorter than asked although more events follow: readers go on until a
/// page comes back empty.
fn page_of(
    rows: impl Iterator<Item = rusqlite::Result<RecordedEvent>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut page = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let event = row?;
        bytes += event.data.len() + event.custom_metadata.len();
        page.push(event);
        if bytes >= PAGE_BYTES_MAX {
            break;
        }
    }
    Ok(page)
}

fn poisoned() -> StoreError {
    StoreError::Storage("reader pool poisoned".into())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Content types are one of two: shared statics instead of a string per event.
fn content_type(stored: &str) -> Text {
    match stored {
        crate::wire::CONTENT_TYPE_JSON => Text::from_static(crate::wire::CONTENT_TYPE_JSON),
        _ => Text::from_static(crate::wire::CONTENT_TYPE_BINARY),
    }
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let id: Vec<u8> = row.get(3)?;
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0)? as u64,
        stream: Text::new(row.get(1)?),
        revision: row.get::<_, i64>(2)? as u64,
        id: Uuid::from_slice(&id).unwrap_or_default(),
        event_type: Text::new(row.get(4)?),
        content_type: content_type(row.get_ref(5)?.as_str()?),
        created_ticks: row.get(6)?,
        custom_metadata: Bytes::from(row.get::<_, Vec<u8>>(7)?),
        data: Bytes::from(row.get::<_, Vec<u8>>(8)?),
    })
}

#[derive(Debug, Clone, Copy)]
pub(super) struct StreamHead {
    pub last_revision: Option<u64>,
    /// Revisions below this are hidden (`$tb`; a soft delete sets it past the end).
    pub truncate_before: u64,
    /// Only the latest this many events are shown (`$maxCount`).
    pub max_count: Option<u64>,
    /// Events older than this many seconds are hidden (`$maxAge`).
    pub max_age_s: Option<u64>,
    pub tombstoned: bool,
}

/// .NET ticks (100 ns) per second.
const TICKS_PER_SECOND: i64 = 10_000_000;

impl StreamHead {
    /// A stream with no event yet and no metadata.
    pub fn empty() -> StreamHead {
        StreamHead {
            last_revision: None,
            truncate_before: 0,
            max_count: None,
            max_age_s: None,
            tombstoned: false,
        }
    }

    /// Last revision that a reader can see, `None` when the stream reads as not found.
    pub fn visible_last(&self) -> Option<u64> {
        self.last_revision
            .filter(|last| *last >= self.truncate_before)
    }

    /// Soft-deleted: it had events and all of them are truncated away. Writing it again goes on
    /// from its last revision.
    pub fn is_soft_deleted(&self) -> bool {
        self.last_revision
            .is_some_and(|last| self.truncate_before > last)
    }

    /// The lowest revision readers see, given the last one: `$tb` and `$maxCount` together.
    pub fn first_visible(&self, last: u64) -> u64 {
        let by_count = self
            .max_count
            .map_or(0, |count| (last + 1).saturating_sub(count));
        self.truncate_before.max(by_count)
    }

    /// Creation time (ticks) of the oldest event readers see (`$maxAge`).
    pub fn oldest_visible_ticks(&self, now_ticks: i64) -> i64 {
        match self.max_age_s {
            Some(age) => now_ticks.saturating_sub((age as i64).saturating_mul(TICKS_PER_SECOND)),
            None => i64::MIN,
        }
    }
}

/// Now, in .NET ticks (100 ns) since the Unix epoch, as the protocol carries times.
pub(super) fn now_ticks() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch.as_nanos() / 100) as i64
}

pub(super) fn stream_head(conn: &Connection, stream: &str) -> rusqlite::Result<Option<StreamHead>> {
    let last_revision: Option<i64> = conn
        .prepare_cached("SELECT MAX(revision) FROM events WHERE stream = ?1")?
        .query_row([stream], |row| row.get(0))?;
    let kept = conn
        .prepare_cached(
            "SELECT truncate_before, tombstoned, max_count, max_age_s FROM streams WHERE name = ?1",
        )?
        .query_row([stream], |row| {
            Ok(StreamHead {
                last_revision: None,
                truncate_before: row.get::<_, i64>(0)? as u64,
                tombstoned: row.get::<_, i64>(1)? != 0,
                max_count: row.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                max_age_s: row.get::<_, Option<i64>>(3)?.map(|n| n as u64),
            })
        })
        .optional()?;
    if last_revision.is_none() && kept.is_none() {
        return Ok(None);
    }
    let mut head = kept.unwrap_or_else(StreamHead::empty);
    head.last_revision = last_revision.map(|r| r as u64);
    if metadata::described_by(stream).is_some() {
        head.max_count = Some(metadata::METASTREAM_MAX_COUNT);
    }
    Ok(Some(head))
}
