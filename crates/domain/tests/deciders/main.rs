//! The deciders' rules, each read as: given these events, when this command, then these events
//! (or this error).

mod contract;
mod delivery;
mod helpers;
mod order;
mod payment;
mod product;
mod reservation;
mod saga;
mod stock_properties;
