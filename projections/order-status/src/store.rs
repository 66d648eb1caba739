//! The read model's database (SQLite, WAL): a row per order (JSON, with the columns queries
//! filter on), its timeline, product names, and the checkpoint — written in one transaction per
//! batch of events, so the view and the position it reflects never disagree (exactly-once
//! effect, even after a crash mid-batch).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use domain::product::ProductEvent;
use domain::{OrderId, OrderStatus};
use eventlog::{LogPosition, Seen};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::view::{evolve, moment, Fact, Moment, OrderRow};

/// Most orders one list query returns.
pub const LIST_ROWS_MAX: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read model database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("a stored row cannot be read: {0}")]
    Corrupt(String),
}

pub use api::order_status::{OrderDetail, OrderSummary};

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    placed_at TEXT NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, placed_at);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, placed_at);
CREATE TABLE IF NOT EXISTS timeline (
    order_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    moment TEXT NOT NULL,
    PRIMARY KEY (order_id, event_id)
);
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    commit_position INTEGER NOT NULL,
    prepare_position INTEGER NOT NULL
);
";

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let writer = Connection::open(path).map_err(sqlite)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(sqlite)?;
        writer.execute_batch(SCHEMA).map_err(sqlite)?;
        let reader = Connection::open(path).map_err(sqlite)?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(sqlite)?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file self-contained (WAL folded in and removed), so it can be moved; the store
    /// is then closed.
    pub fn seal(self) -> Result<PathBuf, StoreError> {
        // Leaving WAL mode needs the only connection.
        drop(self.reader);
        let writer = self.writer.into_inner().unwrap_or_else(|e| e.into_inner());
        writer
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        drop(writer);
        Ok(self.path)
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The position of the last event applied.
    pub fn checkpoint(&self) -> Result<Option<LogPosition>, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        reader
            .query_row(
                "SELECT commit_position, prepare_position FROM checkpoint WHERE id = 0",
                [],
                |r| {
                    Ok(LogPosition {
                        commit: r.get::<_, i64>(0)? as u64,
                        prepare: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Applies a batch of events and moves the checkpoint to the last one, in one transaction.
    /// Returns the orders that changed.
    pub fn apply(&self, batch: &[Seen]) -> Result<Vec<OrderRow>, StoreError> {
        let Some(last) = batch.last() else {
            return Ok(Vec::new());
        };
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = writer.transaction().map_err(|e| self.sqlite(e))?;
        let mut changed: HashMap<OrderId, OrderRow> = HashMap::new();
        for seen in batch {
            let Some(fact) = Fact::of(seen) else { continue };
            if let Fact::Product(ProductEvent::ProductRegistered(e)) = &fact {
                tx.execute(
                    "INSERT OR IGNORE INTO products (product_id, name) VALUES (?1, ?2)",
                    params![e.product_id.to_string(), e.name.as_str()],
                )
                .map_err(|e| self.sqlite(e))?;
                continue;
            }
            let Some(order_id) = fact.order_id() else {
                continue;
            };
            let before = match changed.remove(&order_id) {
                Some(row) => Some(row),
                None => load_row(&tx, order_id).map_err(|e| self.sqlite(e))??,
            };
            let status_before = before.as_ref().map(|r| r.status);
            let Some(after) = evolve(before, &fact, seen.revision) else {
                continue;
            };
            let line = moment(status_before, &after, seen);
            tx.execute(
                "INSERT OR IGNORE INTO timeline (order_id, event_id, position, moment) VALUES (?1, ?2, ?3, ?4)",
                params![
                    order_id.to_string(),
                    seen.id.to_string(),
                    seen.position.commit as i64,
                    to_json(&line)?
                ],
            )
            .map_err(|e| self.sqlite(e))?;
            changed.insert(order_id, after);
        }
        for row in changed.values() {
            tx.execute(
                "INSERT INTO orders (order_id, customer_id, status, placed_at, row) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, row = excluded.row",
                params![
                    row.order_id.to_string(),
                    row.customer_id,
                    status_name(row.status),
                    row.placed_at.to_rfc3339(),
                    to_json(row)?
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.execute(
            "INSERT INTO checkpoint (id, commit_position, prepare_position) VALUES (0, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET commit_position = excluded.commit_position, prepare_position = excluded.prepare_position",
            params![last.position.commit as i64, last.position.prepare as i64],
        )
        .map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(changed.into_values().collect())
    }

    pub fn order(&self, order_id: OrderId) -> Result<Option<OrderDetail>, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let Some(row) = load_row(&reader, order_id).map_err(|e| self.sqlite(e))?? else {
            return Ok(None);
        };
        let product_name = product_name(&reader, &row).map_err(|e| self.sqlite(e))?;
        let mut statement = reader
            .prepare_cached(
                "SELECT moment FROM timeline WHERE order_id = ?1 ORDER BY position, rowid",
            )
            .map_err(|e| self.sqlite(e))?;
        let timeline = statement
            .query_map([order_id.to_string()], |r| r.get::<_, String>(0))
            .map_err(|e| self.sqlite(e))?
            .map(|text| from_json(&text.map_err(|e| self.sqlite(e))?))
            .collect::<Result<Vec<Moment>, _>>()?;
        Ok(Some(OrderDetail {
            row,
            product_name,
            timeline,
        }))
    }

    /// A customer's orders, newest first.
    pub fn customer_orders(&self, customer_id: &str) -> Result<Vec<OrderSummary>, StoreError> {
        self.list(
            "SELECT row FROM orders WHERE customer_id = ?1 ORDER BY placed_at DESC LIMIT ?2",
            customer_id,
        )
    }

    /// Orders in a status (the seller's queues), oldest first.
    pub fn orders_in(&self, status: OrderStatus) -> Result<Vec<OrderSummary>, StoreError> {
        self.list(
            "SELECT row FROM orders WHERE status = ?1 ORDER BY placed_at LIMIT ?2",
            status_name(status),
        )
    }

    fn list(&self, sql: &str, key: &str) -> Result<Vec<OrderSummary>, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut statement = reader.prepare_cached(sql).map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params![key, LIST_ROWS_MAX as i64], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.sqlite(e))?
            .map(|text| from_json::<OrderRow>(&text.map_err(|e| self.sqlite(e))?))
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|row| {
                let product_name = product_name(&reader, &row).map_err(|e| self.sqlite(e))?;
                Ok(OrderSummary { row, product_name })
            })
            .collect()
    }
}

fn load_row(
    connection: &Connection,
    order_id: OrderId,
) -> Result<Result<Option<OrderRow>, StoreError>, rusqlite::Error> {
    let text: Option<String> = connection
        .query_row(
            "SELECT row FROM orders WHERE order_id = ?1",
            [order_id.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.map(|t| from_json(&t)).transpose())
}

fn product_name(
    connection: &Connection,
    row: &OrderRow,
) -> Result<Option<String>, rusqlite::Error> {
    connection
        .query_row(
            "SELECT name FROM products WHERE product_id = ?1",
            [row.product_id.to_string()],
            |r| r.get(0),
        )
        .optional()
}

pub fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::OrderPlaced => "OrderPlaced",
        OrderStatus::AwaitingDeposit => "AwaitingDeposit",
        OrderStatus::DepositConfirmed => "DepositConfirmed",
        OrderStatus::Preparing => "Preparing",
        OrderStatus::Shipping => "Shipping",
        OrderStatus::Closed => "Closed",
        OrderStatus::Cancelled => "Cancelled",
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}
