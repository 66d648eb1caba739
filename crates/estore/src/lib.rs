//! minimall's embedded event store: a durable, single-node server speaking the EventStoreDB
//! (KurrentDB) gRPC protocol, so the official clients — and so every minimall service — talk to
//! it exactly as to a real EventStoreDB node, and the same connection string can later point at
//! a real cluster.
//!
//! It owns: the on-disk log (SQLite, see [`storage`]) with stream metadata, the system streams
//! (`$ce-`, `$et-`, `$streams`) and the reclaiming of hidden events, the protocol surface
//! (`Streams`: Append, BatchAppend, Read, catch-up subscriptions, Delete, Tombstone;
//! `PersistentSubscriptions`; `ServerFeatures`), and the limits on client input ([`Limits`]).
//!
//! It must not: know anything about the shop (orders, payments…): it stores opaque events (only
//! the metadata events of `$$` streams are read, as a node reads them); or acknowledge an append
//! before it is on disk.

// tonic's `Status` is the protocol's error and the trait methods return it anyway; boxing it in
// our helpers would only add conversions.
#![allow(clippy::result_large_err)]

pub mod features;
pub mod filter;
pub mod limits;
pub mod persistent;
pub mod proto;
pub mod reading;
pub mod server;
pub mod stats;
pub mod storage;
pub mod streams;
pub mod wire;

pub use limits::Limits;
pub use server::{connection_string, start, start_on, RunningStore, Settings, StartError};
pub use stats::Stats;
