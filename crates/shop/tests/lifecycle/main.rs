//! The order lifecycle end to end, black box over HTTP: the whole shop on 127.0.0.1 port 0 with
//! the real embedded event store (issue 3, tests 1-12).

mod bad_input;
mod cancel;
mod contract;
mod gateway;
mod graceful_stop;
mod happy_path;
mod helpers;
mod hot_product;
mod on_call;
mod outages;
mod read_model;
mod receipt_and_overdue;
mod stock;
mod telemetry;
