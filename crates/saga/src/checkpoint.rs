//! How far the saga has read, stored in the event store itself (`saga-checkpoint`), so the saga
//! keeps no local state and restarts anywhere.

use eventlog::LogPosition;
use serde::{Deserialize, Serialize};

pub const CHECKPOINT_STREAM: &str = "saga-checkpoint";
/// Checkpoints the store keeps (`$maxCount` of the stream): only the latest is ever read; a
/// few more show an operator how it moved.
pub const CHECKPOINTS_KEPT: u64 = 16;

/// Every event at or before this position was fully handled (and no deposit timer depends on
/// an earlier one).
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

/// The checkpoint's event type, as stored.
pub const CHECKPOINT_STORED: &str = "CheckpointStored";

impl domain::Event for CheckpointStored {
    const TYPES: &'static [&'static str] = &[CHECKPOINT_STORED];

    fn event_type(&self) -> &'static str {
        CHECKPOINT_STORED
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn from_json(event_type: &str, data: serde_json::Value) -> Result<Self, domain::EventError> {
        match event_type {
            CHECKPOINT_STORED => Ok(serde_json::from_value(data)?),
            other => Err(domain::EventError::UnknownType(other.to_string())),
        }
    }
}
