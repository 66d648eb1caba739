//! Reads and catch-up subscriptions, streamed page by page into a bounded channel: a slow reader
//! makes the server wait, never buffer without bound.
//!
//! A subscription first subscribes to the live feed, then reads history from disk, then follows
//! the live feed, dropping what it already sent by position/revision: no gap, no duplicate. When
//! it falls too far behind the live feed (the feed is bounded), it goes back to reading from disk
//! from the last event it sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::filter::EventFilter;
use crate::proto::event_store::client::streams::read_resp::{self, Content};
use crate::proto::event_store::client::streams::ReadResp;
use crate::proto::event_store::client::StreamIdentifier;
use crate::stats::Stats;
use crate::storage::links::LINK_EVENT_TYPE;
use crate::storage::metadata::TOMBSTONE_REVISION;
use crate::storage::{
    Committed, Direction, RecordedEvent, Store, StoreError, StreamPage, PAGE_BYTES_MAX,
};
use crate::wire::{message, read_event, resolved_link, status_from_store};

/// Events fetched from disk in one go.
pub const PAGE_EVENTS: usize = 512;
/// Messages buffered per read or subscription before the server waits for the client (at most
/// 64 MiB with 1 MiB events; a few tens of KiB with the shop's).
pub const READ_BUFFER_MESSAGES: usize = 64;

pub type Outbox = mpsc::Sender<Result<ReadResp, Status>>;

/// What a read or subscription covers.
pub enum Selection {
    /// `$all`; the cursor is the log position of the last event considered.
    All { filter: Option<EventFilter> },
    /// One stream; the cursor is the next revision wanted.
    Stream { name: String },
}

/// The client went away; stop quietly.
struct Gone;

/// Either the client went away, or the work ended (possibly with a status for the client).
type Outcome = Result<Result<(), Status>, Gone>;

async fn send(outbox: &Outbox, content: Content) -> Result<(), Gone> {
    outbox.send(Ok(message(content))).await.map_err(|_| Gone)
}

/// How events are put on the wire for one read or subscription.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// Event ids as strings (the clients' default) rather than two 64-bit halves.
    pub string_ids: bool,
    /// A link event comes with the event it points at (none when that is gone).
    pub resolve_links: bool,
}

async fn send_event(
    store: &Store,
    outbox: &Outbox,
    event: &RecordedEvent,
    format: Format,
) -> Result<(), Gone> {
    let message = if format.resolve_links && event.event_type.as_str() == LINK_EVENT_TYPE {
        let target = store.link_target(event).await;
        resolved_link(target.as_ref(), event, format.string_ids)
    } else {
        read_event(event, format.string_ids)
    };
    outbox.send(Ok(message)).await.map_err(|_| Gone)
}

/// A bounded (non-subscription) read: up to `count` events from `from`.
pub async fn read(
    store: Store,
    selection: Selection,
    from: u64,
    direction: Direction,
    count: u64,
    format: Format,
    outbox: Outbox,
) {
    if count == 0 {
        return;
    }
    let result = match selection {
        Selection::All { filter } => {
            read_all(&store, filter, from, direction, count, format, &outbox).await
        }
        Selection::Stream { name } => {
            read_stream(&store, name, from, direction, count, format, &outbox).await
        }
    };
    if let Ok(Err(status)) = result {
        let _ = outbox.send(Err(status)).await;
    }
}

async fn read_all(
    store: &Store,
    filter: Option<EventFilter>,
    from: u64,
    direction: Direction,
    mut remaining: u64,
    format: Format,
    outbox: &Outbox,
) -> Outcome {
    let mut ahead = Some(read_all_ahead(store, from, direction));
    while let Some(pending) = ahead.take() {
        let page = match pending.await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => return Ok(Err(status_from_store(e))),
            Err(_) => return Ok(Err(Status::internal("a read task failed"))),
        };
        if let Some(next) = next_all_from(&page, direction) {
            ahead = Some(read_all_ahead(store, next, direction));
        }
        for event in &page {
            if filter.as_ref().is_none_or(|f| f.matches(event)) {
                send_event(store, outbox, event, format).await?;
                remaining -= 1;
                if remaining == 0 {
                    return Ok(Ok(()));
                }
            }
        }
    }
    Ok(Ok(()))
}

type PageRead = JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

/// Starts reading an `$all` page on the blocking pool, so the next page is read from disk while
/// the current one is encoded and sent: a replay keeps both cores busy.
fn read_all_ahead(store: &Store, from: u64, direction: Direction) -> PageRead {
    let store = store.clone();
    tokio::spawn(async move { store.read_all(from, direction, PAGE_EVENTS).await })
}

/// A page shorter than asked is the last one, unless its byte limit cut it short.
fn is_last_page(page: &[RecordedEvent], asked: usize) -> bool {
    let bytes: usize = page
        .iter()
        .map(|e| e.data.len() + e.custom_metadata.len())
        .sum();
    page.len() < asked && bytes < PAGE_BYTES_MAX
}

/// Where the page after this one starts, if there can be one.
fn next_all_from(page: &[RecordedEvent], direction: Direction) -> Option<u64> {
    if is_last_page(page, PAGE_EVENTS) {
        return None;
    }
    let last = page.last()?.position;
    match direction {
        Direction::Forwards => Some(last + 1),
        Direction::Backwards => (last > 1).then_some(last),
    }
}

async fn read_stream(
    store: &Store,
    name: String,
    mut from: u64,
    direction: Direction,
    mut remaining: u64,
    format: Format,
    outbox: &Outbox,
) -> Outcome {
    let mut first_page = true;
    while remaining > 0 {
        let page_size = remaining.min(PAGE_EVENTS as u64) as usize;
        let page = match store
            .read_stream(name.clone(), from, direction, page_size)
            .await
        {
            Ok(StreamPage::Events(page)) => page,
            Ok(StreamPage::NotFound) if first_page => {
                let identifier = StreamIdentifier {
                    stream_name: name.into_bytes().into(),
                };
                let not_found = read_resp::StreamNotFound {
                    stream_identifier: Some(identifier),
                };
                send(outbox, Content::StreamNotFound(not_found)).await?;
                return Ok(Ok(()));
            }
            Ok(StreamPage::NotFound) => break,
            Err(e) => return Ok(Err(status_from_store(e))),
        };
        first_page = false;
        for event in &page {
            send_event(store, outbox, event, format).await?;
            remaining -= 1;
        }
        let Some(last) = page.last() else { break };
        if is_last_page(&page, page_size) {
            break;
        }
        from = match direction {
            Direction::Forwards => last.revision + 1,
            Direction::Backwards if last.revision == 0 => break,
            Direction::Backwards => last.revision - 1,
        };
    }
    Ok(Ok(()))
}

/// Counts live subscriptions against the limit; the slot is given back on drop.
pub struct SubscriptionSlot(Arc<AtomicUsize>);

impl SubscriptionSlot {
    pub fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<SubscriptionSlot> {
        let taken = active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| SubscriptionSlot(Arc::clone(active)))
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BackToDisk {
    FellBehind,
    LargeCommit,
}

/// Where a subscription starts: after `cursor` (exclusive), or at the live end.
pub enum Start {
    After(u64),
    Beginning,
    End,
}

/// A catch-up subscription; runs until the client goes away or the stream is tombstoned.
pub async fn subscribe(
    store: Store,
    selection: Selection,
    start: Start,
    format: Format,
    outbox: Outbox,
    slot: SubscriptionSlot,
    stats: Arc<Stats>,
) {
    let mut subscription = Subscription {
        store,
        selection,
        format,
        outbox,
        considered: 0,
        stats,
    };
    let result = subscription.run(start).await;
    if let Ok(Err(status)) = result {
        let _ = subscription.outbox.send(Err(status)).await;
    }
    drop(slot);
}

struct Subscription {
    store: Store,
    selection: Selection,
    format: Format,
    outbox: Outbox,
    /// Events considered since the last checkpoint (filtered `$all` only).
    considered: u64,
    stats: Arc<Stats>,
}

impl Subscription {
    async fn run(&mut self, start: Start) -> Outcome {
        let confirmation = read_resp::SubscriptionConfirmation {
            subscription_id: uuid::Uuid::new_v4().to_string(),
        };
        send(&self.outbox, Content::Confirmation(confirmation)).await?;
        let mut live = self.store.live();
        // The cursor: for $all the last position considered, for a stream the next revision.
        let mut cursor = match (start, &self.selection) {
            (Start::Beginning, _) => 0,
            (Start::After(position), Selection::All { .. }) => position,
            (Start::After(revision), Selection::Stream { .. }) => revision.saturating_add(1),
            (Start::End, Selection::All { .. }) => self.store.last_position(),
            (Start::End, Selection::Stream { name }) => {
                match self.store.stream_last_revision(name.clone()).await {
                    Ok(last) => last.map_or(0, |r| r + 1),
                    Err(e) => return Ok(Err(status_from_store(e))),
                }
            }
        };
        let mut caught_up = false;
        loop {
            if let Err(status) = self.catch_up(&mut cursor).await? {
                return Ok(Err(status));
            }
            if !caught_up {
                send(&self.outbox, Content::CaughtUp(read_resp::CaughtUp {})).await?;
                caught_up = true;
            }
            match self.follow(&mut live, &mut cursor).await? {
                Ok(back_to_disk) => {
                    if back_to_disk == BackToDisk::FellBehind {
                        self.stats
                            .subscriptions_fell_behind
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    // Re-subscribe first, then read the gap from disk.
                    live = self.store.live();
                }
                Err(status) => return Ok(Err(status)),
            }
        }
    }

    /// Sends everything on disk after the cursor.
    async fn catch_up(&mut self, cursor: &mut u64) -> Outcome {
        let Selection::Stream { name } = &self.selection else {
            return self.catch_up_all(cursor).await;
        };
        let name = name.clone();
        loop {
            let page = self
                .store
                .read_stream(name.clone(), *cursor, Direction::Forwards, PAGE_EVENTS)
                .await;
            let page = match page {
                Ok(StreamPage::Events(events)) => events,
                // A stream that does not exist yet is simply waited for.
                Ok(StreamPage::NotFound) => Vec::new(),
                Err(e) => return Ok(Err(status_from_store(e))),
            };
            for event in &page {
                self.offer(event, cursor).await?;
            }
            if is_last_page(&page, PAGE_EVENTS) {
                return Ok(Ok(()));
            }
        }
    }

    async fn catch_up_all(&mut self, cursor: &mut u64) -> Outcome {
        let mut ahead = Some(read_all_ahead(
            &self.store,
            cursor.saturating_add(1),
            Direction::Forwards,
        ));
        while let Some(pending) = ahead.take() {
            let page = match pending.await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return Ok(Err(status_from_store(e))),
                Err(_) => return Ok(Err(Status::internal("a read task failed"))),
            };
            if let Some(next) = next_all_from(&page, Direction::Forwards) {
                ahead = Some(read_all_ahead(&self.store, next, Direction::Forwards));
            }
            for event in &page {
                self.offer(event, cursor).await?;
            }
        }
        Ok(Ok(()))
    }

    /// Follows the live feed until it must go back to disk (it fell behind the bounded feed, or
    /// a commit came without its events because it was too large for the feed).
    async fn follow(
        &mut self,
        live: &mut broadcast::Receiver<Arc<Committed>>,
        cursor: &mut u64,
    ) -> Result<Result<BackToDisk, Status>, Gone> {
        loop {
            let committed = tokio::select! {
                received = live.recv() => received,
                _ = self.outbox.closed() => return Err(Gone),
            };
            let committed = match committed {
                Ok(committed) => committed,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Ok(Ok(BackToDisk::FellBehind))
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Ok(Err(Status::unavailable("the event store is shutting down")))
                }
            };
            if committed.elided {
                return Ok(Ok(BackToDisk::LargeCommit));
            }
            // Events of the commit first: some may precede a tombstone in the same commit.
            for event in &committed.events {
                self.offer(event, cursor).await?;
            }
            if let Selection::Stream { name } = &self.selection {
                let mine: Vec<RecordedEvent> = committed
                    .links
                    .iter()
                    .filter(|link| link.stream == *name)
                    .map(|link| link.event())
                    .collect();
                for link in &mine {
                    self.offer(link, cursor).await?;
                }
            }
            if let Selection::Stream { name } = &self.selection {
                if committed.tombstoned.iter().any(|s| s == name) {
                    let error = crate::storage::StoreError::StreamDeleted(name.clone());
                    return Ok(Err(status_from_store(error)));
                }
            }
        }
    }

    /// Sends the event if it is past the cursor and selected, and advances the cursor.
    async fn offer(&mut self, event: &RecordedEvent, cursor: &mut u64) -> Result<(), Gone> {
        match &self.selection {
            Selection::All { filter } => {
                if event.position <= *cursor {
                    return Ok(());
                }
                *cursor = event.position;
                let Some(filter) = filter else {
                    return send_event(&self.store, &self.outbox, event, self.format).await;
                };
                if filter.matches(event) {
                    send_event(&self.store, &self.outbox, event, self.format).await?;
                }
                self.considered += 1;
                if self.considered >= filter.checkpoint_every_events {
                    self.considered = 0;
                    let checkpoint = read_resp::Checkpoint {
                        commit_position: event.position,
                        prepare_position: event.position,
                    };
                    send(&self.outbox, Content::Checkpoint(checkpoint)).await?;
                }
                Ok(())
            }
            Selection::Stream { name } => {
                // A tombstone's own record is not an event of the stream: its subscribers are
                // told the stream is deleted instead.
                if event.stream.as_str() != name
                    || event.revision < *cursor
                    || event.revision == TOMBSTONE_REVISION
                {
                    return Ok(());
                }
                *cursor = event.revision + 1;
                send_event(&self.store, &self.outbox, event, self.format).await
            }
        }
    }
}
