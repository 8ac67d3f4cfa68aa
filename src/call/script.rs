//! The contract between a call and what it runs (the built-in menu today, contact flows
//! next): a sans-IO script fed [`ScriptEvent`]s that answers with [`Action`]s. The call task
//! executes the actions with real media and signaling and reports back.

use std::sync::Arc;

use super::collect::{CollectOutcome, CollectSpec};
use crate::media::prompt::Prompt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptEvent {
    /// The call is answered and confirmed (ACK): media flows.
    Started,
    /// The last `Play` ended, fully or cut short (barge-in).
    PlayDone { interrupted: bool },
    /// The last `Collect` ended.
    Collected(CollectOutcome),
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Play prompts back to back. With `barge_in`, a keypress stops playback (the digit is
    /// kept for the next `Collect`).
    Play {
        prompts: Vec<Arc<Prompt>>,
        barge_in: bool,
    },
    /// Collect digits; digits pressed since the last collection (type-ahead) count first.
    Collect(CollectSpec),
    /// End the call (BYE).
    Hangup,
    /// Start/pause/resume/stop recording (UpdateContactRecordingBehavior).
    Recording(crate::recording::RecordingControl),
}

/// Something a call runs. Implementations never block, sleep or touch I/O.
pub trait Script: Send {
    fn handle(&mut self, event: ScriptEvent);
    fn poll_action(&mut self) -> Option<Action>;
}
