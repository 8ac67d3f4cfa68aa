//! Calls: the session table and one task per call, which runs the call's contact flow.

pub mod collect;
pub mod table;
pub mod task;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::config::InbandDtmf;
use crate::media::codec::Codec;
use crate::media::engine::MediaEngine;
use crate::metrics::Metrics;
use crate::sip::SipServer;

/// Call settings taken from the configuration once at start.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub max_calls: usize,
    pub retry_after_secs: u32,
    /// Let the phone ring this long before answering (0 = answer at once).
    pub ring: Duration,
    pub menu_timeout: Duration,
    pub codecs: Vec<Codec>,
    pub inband: InbandDtmf,
    pub jitter_ms: u32,
    pub rtp_timeout: Duration,
}

/// What every call task shares.
pub struct CallServices {
    pub settings: CallSettings,
    pub media: MediaEngine,
    pub sip: Arc<SipServer>,
    /// Contact flows, speech, Lambda endpoints and queues.
    pub flows: crate::flow::engine::FlowEngine,
    pub table: table::CallTable,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: new calls are refused with 503.
    pub draining: AtomicBool,
    pub recorder: Arc<crate::recording::Recorder>,
    /// Told when a call starts and ends (audit trail, active contacts); `None` in tools and
    /// tests that run calls without a database.
    pub hooks: Option<Arc<dyn CallHooks>>,
}

/// What the rest of Careline hears about a call's life. Must not block: implementations hand
/// the work to their own task.
pub trait CallHooks: Send + Sync {
    fn call_started(&self, call_id: &str);
    fn call_ended(&self, call_id: &str, cause: &str);
}

/// Commands from outside a call (API, shutdown) to its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCommand {
    Hangup {
        cause: &'static str,
    },
    /// Start, pause, resume or stop recording the call (API, flows).
    Recording(crate::recording::RecordingControl),
}
