//! Careline: a self-hosted voice platform for healthcare contact centers.
//!
//! The library holds every module of the server; `main.rs` is only the command line.
//! See DESIGN.md (in `shared/`) for the map.

// What only the crate uses is `pub(crate)`: the public surface is what the binary, the tests,
// the benches and the load tester use.
#![warn(unreachable_pub)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod call;
pub mod call_records;
pub mod config;
pub mod db;
pub mod flow;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod notify;
pub mod patient;
pub mod recording;
pub mod rooms;
pub mod routing;
pub mod server;
pub mod shipped;
pub mod sip;
pub mod workflow;
