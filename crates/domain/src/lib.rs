//! minimall's business rules, as pure functions of events: the Order, Payment, Product (catalogue
//! and stock), Reservation (an order's hold on a product's stock) and Delivery aggregates, each a
//! decider —
//! `decide(&State, Command) -> Result<Vec<Event>, Error>` and `evolve(State, &Event) -> State`.
//!
//! It owns: commands, events (fixed type names, never renamed), the rules that turn one
//! into the other, and value types that can only hold valid values.
//!
//! It must not: do I/O, be async, or know about HTTP, the event store or the clock. Anything a
//! decision needs from outside (a price, the current time, who acts) comes in the command.

pub mod catalogue;
pub mod contract;
pub mod delivery;
pub mod order;
pub mod payment;
pub mod product;
pub mod reservation;
pub mod saga;
pub mod status;
pub mod values;

pub use contract::EventError;
pub use status::{CancelReason, OrderStatus};
pub use values::{CustomerId, Money, OrderId, ProductId, ProductName, Quantity, ValueError};

/// An aggregate as a decider: the state is a fold of its events.
pub trait Decider {
    type State: Default;
    type Command;
    type Event: Event;
    type Error;

    fn decide(state: &Self::State, command: Self::Command)
        -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Whether `event` holds the aggregate's whole state (a snapshot): loading reads the stream
    /// back to the latest one, not to its start. Aggregates that keep none answer `false`.
    fn is_snapshot(_event: &Self::Event) -> bool {
        false
    }

    /// The snapshot of `state`, written beside the events every so often (the event store layer
    /// says when); `None` for aggregates that keep none.
    fn snapshot(_state: &Self::State) -> Option<Self::Event> {
        None
    }

    /// Whether `command` starts the aggregate's stream (placing an order, opening a payment):
    /// the event store layer then decides it on the empty state and appends expecting no
    /// stream, without reading first; only if the stream exists after all (a repeated command)
    /// does it read the stream and decide again. `false` by default.
    fn starts_stream(_command: &Self::Command) -> bool {
        false
    }

    /// The state after `events`, from the beginning.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .fold(Self::State::default(), Self::evolve)
    }
}

/// The contract of a stored event: its type name and its JSON data.
pub trait Event: Sized {
    /// Every type this aggregate's stream holds, as stored (`contract`'s constants).
    const TYPES: &'static [&'static str];
    /// The event type as stored: a fixed name, never renamed.
    fn event_type(&self) -> &'static str;
    /// The event's data as stored: JSON carrying `orderId` and `orderStatus` where an order is
    /// involved, and `schemaVersion` past version 1.
    fn to_json(&self) -> serde_json::Value;
    /// Reads a stored event back, of any version (upcast to the current one); a type this
    /// aggregate does not know is an error, never skipped.
    fn from_json(event_type: &str, data: serde_json::Value) -> Result<Self, EventError>;
}

/// Implements [`Event`] for an enum whose variants each wrap one serde data struct, stored as
/// the type named by a `contract` constant.
macro_rules! event_contract {
    ($enum:ident { $($variant:ident = $name:path),+ $(,)? }) => {
        impl $crate::Event for $enum {
            const TYPES: &'static [&'static str] = &[$($name),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => $name,)+
                }
            }

            fn to_json(&self) -> serde_json::Value {
                let data = match self {
                    $($enum::$variant(data) => serde_json::to_value(data),)+
                };
                // Plain data structs of strings, numbers and ids always serialize.
                $crate::contract::stamp(self.event_type(), data.unwrap_or(serde_json::Value::Null))
            }

            fn from_json(
                event_type: &str,
                data: serde_json::Value,
            ) -> Result<Self, $crate::EventError> {
                let data = $crate::contract::upcast(event_type, data)?;
                match event_type {
                    $(t if t == $name => Ok(serde_json::from_value(data).map($enum::$variant)?),)+
                    other => Err($crate::EventError::UnknownType(other.to_string())),
                }
            }
        }
    };
}
pub(crate) use event_contract;
