//! The saga's bookkeeping, stored in the event store itself (`saga-checkpoint`), so the saga
//! keeps no local state and restarts anywhere: how far it has read, and the deposit timers
//! running. A restart re-arms the timers from here and reads on from the checkpoint; it does
//! not replay the log back to the oldest order still awaiting its deposit.
//!
//! The stream is an aggregate with snapshots: `DepositTimersCounted` (every timer and the
//! checkpoint) once `SNAPSHOT_EVERY_EVENTS` have followed the last, `DepositTimersChanged` and
//! `CheckpointStored` in between; the store keeps the latest `CHECKPOINTS_KEPT`, which always
//! includes the latest count.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::{Decider, OrderId};
use eventlog::LogPosition;
use serde::{Deserialize, Serialize};

pub const CHECKPOINT_STREAM: &str = "saga-checkpoint";
/// Events the store keeps of the stream (`$maxCount`): more than lie between two counts.
pub const CHECKPOINTS_KEPT: u64 = 4 * eventlog::SNAPSHOT_EVERY_EVENTS as u64;
/// Timers one count holds at most (a count is one event, and one append is at most 1 MiB on a
/// KurrentDB node; a timer takes about 75 bytes). With more orders awaiting their deposit at
/// once, the bookkeeping is not stored until fewer are: the checkpoint then stays where it was,
/// and a restart replays from there (re-arming the timers it finds on the way).
pub const DEPOSIT_TIMERS_MAX: usize = 10_000;

/// Every event at or before this position was fully handled, and the timers it armed are
/// recorded before it or with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStored {
    pub commit: u64,
    pub prepare: u64,
}

impl From<LogPosition> for CheckpointStored {
    fn from(p: LogPosition) -> CheckpointStored {
        CheckpointStored {
            commit: p.commit,
            prepare: p.prepare,
        }
    }
}

impl From<CheckpointStored> for LogPosition {
    fn from(c: CheckpointStored) -> LogPosition {
        LogPosition {
            commit: c.commit,
            prepare: c.prepare,
        }
    }
}

/// A deposit timer: the order's deposit is due then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositTimer {
    pub order_id: OrderId,
    pub due_at: DateTime<Utc>,
}

/// Timers armed and timers ended (the deposit came, the order was cancelled, the payment
/// expired) since the last change recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositTimersChanged {
    pub armed: Vec<DepositTimer>,
    pub ended: Vec<OrderId>,
}

/// Every timer running, and the checkpoint (a snapshot: loading starts here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositTimersCounted {
    pub checkpoint: Option<CheckpointStored>,
    pub timers: Vec<DepositTimer>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BookkeepingEvent {
    CheckpointStored(CheckpointStored),
    DepositTimersChanged(DepositTimersChanged),
    DepositTimersCounted(DepositTimersCounted),
}

/// The bookkeeping's event types, as stored.
pub const CHECKPOINT_STORED: &str = "CheckpointStored";
pub const DEPOSIT_TIMERS_CHANGED: &str = "DepositTimersChanged";
pub const DEPOSIT_TIMERS_COUNTED: &str = "DepositTimersCounted";

impl domain::Event for BookkeepingEvent {
    const TYPES: &'static [&'static str] = &[
        CHECKPOINT_STORED,
        DEPOSIT_TIMERS_CHANGED,
        DEPOSIT_TIMERS_COUNTED,
    ];

    fn event_type(&self) -> &'static str {
        match self {
            BookkeepingEvent::CheckpointStored(_) => CHECKPOINT_STORED,
            BookkeepingEvent::DepositTimersChanged(_) => DEPOSIT_TIMERS_CHANGED,
            BookkeepingEvent::DepositTimersCounted(_) => DEPOSIT_TIMERS_COUNTED,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let data = match self {
            BookkeepingEvent::CheckpointStored(e) => serde_json::to_value(e),
            BookkeepingEvent::DepositTimersChanged(e) => serde_json::to_value(e),
            BookkeepingEvent::DepositTimersCounted(e) => serde_json::to_value(e),
        };
        data.unwrap_or(serde_json::Value::Null)
    }

    fn from_json(event_type: &str, data: serde_json::Value) -> Result<Self, domain::EventError> {
        Ok(match event_type {
            CHECKPOINT_STORED => BookkeepingEvent::CheckpointStored(serde_json::from_value(data)?),
            DEPOSIT_TIMERS_CHANGED => {
                BookkeepingEvent::DepositTimersChanged(serde_json::from_value(data)?)
            }
            DEPOSIT_TIMERS_COUNTED => {
                BookkeepingEvent::DepositTimersCounted(serde_json::from_value(data)?)
            }
            other => return Err(domain::EventError::UnknownType(other.to_string())),
        })
    }
}

/// What the bookkeeping says: where to read on from and which timers run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Books {
    pub checkpoint: Option<LogPosition>,
    pub timers: BTreeMap<OrderId, DateTime<Utc>>,
}

/// Record what changed: timers armed (`Some(due)`) or ended (`None`), and the checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub timers: BTreeMap<OrderId, Option<DateTime<Utc>>>,
    pub checkpoint: Option<LogPosition>,
}

#[derive(Debug, thiserror::Error)]
pub enum BookkeepingError {
    #[error("{0} orders await their deposit; a count holds at most {DEPOSIT_TIMERS_MAX}")]
    TooManyTimers(usize),
}

pub struct Bookkeeping;

impl Decider for Bookkeeping {
    type State = Books;
    type Command = Record;
    type Event = BookkeepingEvent;
    type Error = BookkeepingError;

    /// Only what is news: timers already so, a checkpoint not moved, record nothing.
    fn decide(books: &Books, record: Record) -> Result<Vec<BookkeepingEvent>, BookkeepingError> {
        let mut changed = DepositTimersChanged {
            armed: vec![],
            ended: vec![],
        };
        for (order_id, due) in record.timers {
            match due {
                Some(due_at) if books.timers.get(&order_id) != Some(&due_at) => {
                    changed.armed.push(DepositTimer { order_id, due_at })
                }
                None if books.timers.contains_key(&order_id) => changed.ended.push(order_id),
                _ => {}
            }
        }
        let running = books.timers.len() + changed.armed.len() - changed.ended.len();
        if running > DEPOSIT_TIMERS_MAX {
            return Err(BookkeepingError::TooManyTimers(running));
        }
        let mut events = Vec::new();
        if !changed.armed.is_empty() || !changed.ended.is_empty() {
            events.push(BookkeepingEvent::DepositTimersChanged(changed));
        }
        match record.checkpoint {
            Some(position) if books.checkpoint != Some(position) => {
                events.push(BookkeepingEvent::CheckpointStored(position.into()))
            }
            _ => {}
        }
        Ok(events)
    }

    fn evolve(mut books: Books, event: &BookkeepingEvent) -> Books {
        match event {
            BookkeepingEvent::CheckpointStored(c) => books.checkpoint = Some((*c).into()),
            BookkeepingEvent::DepositTimersChanged(e) => {
                for timer in &e.armed {
                    books.timers.insert(timer.order_id, timer.due_at);
                }
                for order_id in &e.ended {
                    books.timers.remove(order_id);
                }
            }
            BookkeepingEvent::DepositTimersCounted(e) => {
                books = Books {
                    checkpoint: e.checkpoint.map(Into::into),
                    timers: e.timers.iter().map(|t| (t.order_id, t.due_at)).collect(),
                }
            }
        }
        books
    }

    fn is_snapshot(event: &BookkeepingEvent) -> bool {
        matches!(event, BookkeepingEvent::DepositTimersCounted(_))
    }

    fn snapshot(books: &Books) -> Option<BookkeepingEvent> {
        Some(BookkeepingEvent::DepositTimersCounted(
            DepositTimersCounted {
                checkpoint: books.checkpoint.map(Into::into),
                timers: books
                    .timers
                    .iter()
                    .map(|(order_id, due_at)| DepositTimer {
                        order_id: *order_id,
                        due_at: *due_at,
                    })
                    .collect(),
            },
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A log position whose commit and prepare are `commit`.
    pub(crate) fn at(commit: u64) -> LogPosition {
        LogPosition {
            commit,
            prepare: commit,
        }
    }

    #[test]
    fn timers_armed_and_ended_fold_to_the_running_ones_and_a_count_holds_them_all() {
        let (a, b) = (OrderId::new(), OrderId::new());
        let due = Utc::now();
        let record = Record {
            timers: [(a, Some(due)), (b, Some(due))].into(),
            checkpoint: Some(at(10)),
        };
        let events = Bookkeeping::decide(&Books::default(), record).unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        let books = Bookkeeping::fold(&events);
        assert_eq!(books.timers.len(), 2);
        assert_eq!(books.checkpoint, Some(at(10)));

        let ended = Record {
            timers: [(a, None), (b, Some(due))].into(),
            checkpoint: Some(at(10)),
        };
        let events = Bookkeeping::decide(&books, ended).unwrap();
        let [BookkeepingEvent::DepositTimersChanged(change)] = &events[..] else {
            panic!("only the change is news: {events:?}")
        };
        assert_eq!((change.armed.len(), change.ended.clone()), (0, vec![a]));
        let books = events.iter().fold(books, Bookkeeping::evolve);
        let count = Bookkeeping::snapshot(&books).unwrap();
        assert_eq!(Bookkeeping::fold([&count]), books);
        assert!(Bookkeeping::decide(&books, Record::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn more_timers_than_a_count_holds_are_refused() {
        let books = Books {
            checkpoint: None,
            timers: (0..DEPOSIT_TIMERS_MAX)
                .map(|_| (OrderId::new(), Utc::now()))
                .collect(),
        };
        let one_more = Record {
            timers: [(OrderId::new(), Some(Utc::now()))].into(),
            checkpoint: None,
        };
        assert!(matches!(
            Bookkeeping::decide(&books, one_more),
            Err(BookkeepingError::TooManyTimers(n)) if n == DEPOSIT_TIMERS_MAX + 1
        ));
    }
}
