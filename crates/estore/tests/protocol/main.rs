//! Protocol tests: the embedded store driven by the official `eventstore` client over real h2c
//! on 127.0.0.1, with a real on-disk log in a temporary directory.

mod helpers;

mod append;
mod bad_input;
mod batch_append;
mod delete;
mod metadata;
mod persistent;
mod read;
mod subscribe;
mod system_streams;
