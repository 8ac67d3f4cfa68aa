//! Shared test harness: a real server process, a raw SIP phone, an RTP endpoint.
#![allow(dead_code)]

pub mod aiortc;
pub mod audio;
pub mod browser;
pub mod console;
pub mod fixtures;
pub mod http;
pub mod postgres;
pub mod rtp;
pub mod server;
pub mod sip;
pub mod smtp;
pub mod speech;
pub mod tls;
