//! The event contract: every event type's name as stored (fixed, never renamed), the version of
//! each type's data shape, and the upcasters that read an older shape as the current one.
//!
//! The same contract, language-neutral, is `contracts/` at the repository's root: a JSON Schema
//! per type and version, and an AsyncAPI document of the streams. Tests hold the two together.
//!
//! A change of an event's shape bumps its version here (`VERSIONS`), writes the new shape with
//! `schemaVersion` in its data, and adds a step to `upcast` from the version before; an event
//! without `schemaVersion` is version 1.

use serde_json::Value;

use crate::values::OrderId;

pub const ORDER_PLACED: &str = "OrderPlaced";
pub const ORDER_SHIPPED: &str = "OrderShipped";
pub const ORDER_CANCELED: &str = "OrderCanceled";
pub const ORDER_CLOSED: &str = "OrderClosed";
pub const PAY_PLACED: &str = "PayPlaced";
pub const PAY_CHECKED: &str = "PayChecked";
pub const PAY_CANCELED: &str = "PayCanceled";
pub const PRODUCT_REGISTERED: &str = "ProductRegistered";
pub const STOCK_ADDED: &str = "StockAdded";
pub const QTY_DECREASED: &str = "QtyDecreased";
pub const QTY_INCREASED: &str = "QtyIncreased";
pub const STOCK_COUNTED: &str = "StockCounted";
pub const STOCK_MOVE_PLANNED: &str = "StockMovePlanned";
pub const DELIVERY_STARTED: &str = "DeliveryStarted";
pub const DELIVERY_COMPLETED: &str = "DeliveryCompleted";
pub const PAYMENT_REQUESTED: &str = "PaymentRequested";
pub const DEPOSIT_AWAITED: &str = "DepositAwaited";
pub const STOCK_REQUESTED: &str = "StockRequested";
pub const DELIVERY_REQUESTED: &str = "DeliveryRequested";
pub const SHIPMENT_RECORDED: &str = "ShipmentRecorded";
pub const SAGA_COMPLETED: &str = "SagaCompleted";
pub const COMPENSATION_STARTED: &str = "CompensationStarted";
pub const STOCK_RETURN_REQUESTED: &str = "StockReturnRequested";
pub const TRIGGER_RETRIED: &str = "TriggerRetried";

/// The data member that says which version of its type's shape an event has.
pub const SCHEMA_VERSION_FIELD: &str = "schemaVersion";

/// The types whose shape changed, with their current version; every other type is at 1.
pub const VERSIONS: &[(&str, u64)] = &[
    // 2: the deposit reference the money came with, so the revenue of a day can be matched
    // against the bank statement from the event alone.
    (PAY_CHECKED, 2),
];

/// The version `event_type` is written in today.
pub fn version_of(event_type: &str) -> u64 {
    VERSIONS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map_or(1, |(_, version)| *version)
}

/// Why a stored event cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unknown event type {0}: not one of this stream's aggregate")]
    UnknownType(String),
    #[error("{0}")]
    Data(#[from] serde_json::Error),
    #[error("version {found} of {event_type} is newer than this shop reads (at most {known})")]
    TooNew {
        event_type: String,
        found: u64,
        known: u64,
    },
    #[error("version {version} of {event_type} cannot be upcast: {reason}")]
    Upcast {
        event_type: String,
        version: u64,
        reason: String,
    },
}

/// The data as written today: the current version is stated where it is past 1.
pub fn stamp(event_type: &str, mut data: Value) -> Value {
    let version = version_of(event_type);
    if let (true, Some(object)) = (version > 1, data.as_object_mut()) {
        object.insert(SCHEMA_VERSION_FIELD.to_string(), Value::from(version));
    }
    data
}

/// Stored data of any version read as the current one, one step at a time.
pub fn upcast(event_type: &str, mut data: Value) -> Result<Value, EventError> {
    let known = version_of(event_type);
    let mut version = data
        .get(SCHEMA_VERSION_FIELD)
        .and_then(Value::as_u64)
        .unwrap_or(1);
    if version > known {
        return Err(EventError::TooNew {
            event_type: event_type.to_string(),
            found: version,
            known,
        });
    }
    while version < known {
        data = step(event_type, version, data).map_err(|reason| EventError::Upcast {
            event_type: event_type.to_string(),
            version,
            reason,
        })?;
        version += 1;
    }
    Ok(data)
}

/// One upcast: data of `version` to `version + 1`.
fn step(event_type: &str, version: u64, mut data: Value) -> Result<Value, String> {
    let object = data.as_object_mut().ok_or("the data is not an object")?;
    match (event_type, version) {
        (PAY_CHECKED, 1) => {
            // Version 1 did not carry the reference; the shop has always given an order the
            // one derived from its id.
            let order_id = object
                .get("orderId")
                .and_then(Value::as_str)
                .and_then(|id| OrderId::parse(id).ok())
                .ok_or("no orderId")?;
            let reference = crate::payment::deposit_reference(order_id);
            object.insert("depositReference".to_string(), Value::from(reference));
        }
        _ => return Err("no upcaster".to_string()),
    }
    object.insert(SCHEMA_VERSION_FIELD.to_string(), Value::from(version + 1));
    Ok(data)
}
