//! Reclaiming space (a node's scavenge): events that no stream read can show any more — below
//! `$tb`, beyond `$maxCount`, older than `$maxAge`, older metadata events, everything of a
//! tombstoned stream but its tombstone — are deleted from the log, so `$all` no longer returns
//! them and SQLite reuses their pages for new events.
//!
//! The last event of a stream is always kept: it holds the stream's revision, so appends go on
//! from where they were. Work is done in small passes (`RECLAIM_EVENTS_PER_PASS`) on the writer
//! thread when it has nothing else queued, each pass one short transaction.

use rusqlite::{params, Connection, OptionalExtension};

use super::metadata::{metastream_of, TOMBSTONE_REVISION};
use super::{now_ticks, stream_head};

/// Events one pass deletes at most.
pub const RECLAIM_EVENTS_PER_PASS: u64 = 4_096;
/// Streams with metadata one pass looks at most.
const RECLAIM_STREAMS_PER_PASS: i64 = 256;

/// Where a round of passes is (streams are visited in name order) and what it has done.
#[derive(Debug, Default)]
pub(super) struct Reclaimer {
    /// Name of the last stream visited; empty at the start of a round.
    after: String,
}

impl Reclaimer {
    /// One pass; returns the events deleted and whether the round has more to do.
    pub fn pass(&mut self, conn: &mut Connection) -> rusqlite::Result<(u64, bool)> {
        let tx = conn.transaction()?;
        let names: Vec<String> = tx
            .prepare_cached("SELECT name FROM streams WHERE name > ?1 ORDER BY name LIMIT ?2")?
            .query_map(params![self.after, RECLAIM_STREAMS_PER_PASS], |row| {
                row.get(0)
            })?
            .collect::<Result<_, _>>()?;
        let mut budget = RECLAIM_EVENTS_PER_PASS;
        let mut deleted = 0;
        for name in &names {
            let cut = reclaim_stream(&tx, name, budget)? + reclaim_metastream(&tx, name)?;
            deleted += cut;
            budget = budget.saturating_sub(cut);
            if budget == 0 {
                break;
            }
            self.after.clone_from(name);
        }
        tx.commit()?;
        let round_over = budget > 0 && (names.len() as i64) < RECLAIM_STREAMS_PER_PASS;
        if round_over {
            self.after.clear();
        }
        Ok((deleted, !round_over))
    }
}

/// Deletes up to `budget` of the stream's hidden events, oldest first.
fn reclaim_stream(tx: &Connection, name: &str, budget: u64) -> rusqlite::Result<u64> {
    let Some(head) = stream_head(tx, name)? else {
        return Ok(0);
    };
    let Some(last) = head.last_revision else {
        return Ok(0);
    };
    let keep_from = if head.tombstoned {
        TOMBSTONE_REVISION
    } else {
        let by_age = match head.max_age_s {
            None => 0,
            Some(_) => tx
                .prepare_cached(
                    "SELECT MIN(revision) FROM events WHERE stream = ?1 AND created >= ?2",
                )?
                .query_row(
                    params![name, head.oldest_visible_ticks(now_ticks())],
                    |row| row.get::<_, Option<i64>>(0),
                )?
                .map_or(last, |r| r as u64),
        };
        head.first_visible(last).max(by_age).min(last)
    };
    let oldest: Option<i64> = tx
        .prepare_cached("SELECT MIN(revision) FROM events WHERE stream = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?
        .flatten();
    let Some(oldest) = oldest.map(|r| r as u64) else {
        return Ok(0);
    };
    let below = keep_from.min(oldest.saturating_add(budget));
    if below <= oldest {
        return Ok(0);
    }
    let deleted = tx
        .prepare_cached("DELETE FROM events WHERE stream = ?1 AND revision < ?2")?
        .execute(params![name, below.min(i64::MAX as u64) as i64])?;
    Ok(deleted as u64)
}

/// A metastream shows only its latest event: the ones before it go.
fn reclaim_metastream(tx: &Connection, name: &str) -> rusqlite::Result<u64> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM events WHERE stream = ?1
             AND revision < (SELECT MAX(revision) FROM events WHERE stream = ?1)",
        )?
        .execute([metastream_of(name)])?;
    Ok(deleted as u64)
}
