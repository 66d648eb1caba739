//! The log's WAL file kept written out ahead of SQLite's last frame, a step at a time.
//!
//! A commit whose frames go past the end of the WAL file makes the file longer, and its sync
//! must then persist the new size as well (a journal commit: about a second fsync). Where the
//! blocks were written before, the sync persists the frames alone. So the writer writes zeros
//! ahead of SQLite: one step when the log opens, the next step each time SQLite has written
//! past what was written out, up to a little more than the WAL's size at a checkpoint (past
//! that the WAL starts over from its beginning). SQLite reads frames only up to the first whose
//! salt and checksum do not match its header, so zeros past the last frame are never taken for
//! frames; bytes already in the file are never touched. Only a speed-up: where zeros cannot be
//! written (a nearly full disk) the file is cut back to its old size and commits extend it as
//! SQLite does.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes written out at a time, when the log opens and whenever SQLite has passed them.
pub const WAL_AHEAD_STEP_BYTES: u64 = 4 * 1024 * 1024;
/// The WAL is written out to at most this size, in bytes: a little more than the WAL holds when
/// it is checkpointed (see `WAL_CHECKPOINT_PAGES`: frames of 4 KiB and a 24-byte header).
pub const WAL_AHEAD_BYTES_MAX: u64 = 42 * 1024 * 1024;
/// Zeros written per `write` call, in bytes.
const ZEROS_CHUNK_BYTES: usize = 1024 * 1024;

/// The writer's handle on the WAL file: how far it is written out.
pub struct WalAhead {
    /// `None` once writing out failed: the file is then left to SQLite.
    file: Option<File>,
    written_out: u64,
}

impl WalAhead {
    /// Opens the WAL of the log at `log` (SQLite has opened it in WAL mode and may not have
    /// written to it yet) and writes out the first step.
    pub fn open(log: &Path) -> WalAhead {
        let wal = log.with_extension("sqlite-wal");
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&wal);
        let mut ahead = match opened {
            Ok(file) => WalAhead {
                file: Some(file),
                written_out: 0,
            },
            Err(e) => {
                tracing::warn!(wal = %wal.display(), "cannot open the WAL to write it out ahead: {e}");
                WalAhead {
                    file: None,
                    written_out: 0,
                }
            }
        };
        ahead.step();
        ahead
    }

    /// After a commit: writes out the next step if SQLite has written past the last one.
    pub fn keep_ahead(&mut self) {
        let Some(size) = self.size() else { return };
        if size < self.written_out {
            // A checkpoint cut the WAL back (to its kept size): what is left is written.
            self.written_out = size;
        }
        if size > self.written_out {
            self.step();
        }
    }

    fn size(&self) -> Option<u64> {
        self.file.as_ref()?.metadata().ok().map(|m| m.len())
    }

    /// Writes zeros from the file's end for one step, up to `WAL_AHEAD_BYTES_MAX`.
    fn step(&mut self) {
        let Some(size) = self.size() else { return };
        let target = (size + WAL_AHEAD_STEP_BYTES).min(WAL_AHEAD_BYTES_MAX);
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if size >= target {
            self.written_out = size;
            return;
        }
        match extend_with_zeros(file, size, target) {
            Ok(()) => self.written_out = target,
            Err(e) => {
                let _ = file.set_len(size);
                tracing::warn!("cannot write the WAL out ahead, commits will extend it: {e}");
                self.file = None;
            }
        }
    }
}

fn extend_with_zeros(file: &mut File, from: u64, to: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(from))?;
    let zeros = vec![0u8; ZEROS_CHUNK_BYTES];
    let mut left = to - from;
    while left > 0 {
        let chunk = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..chunk])?;
        left -= chunk as u64;
    }
    file.sync_data()
}
