//! Media streaming (StartMediaStreaming / UpdateContactMediaStreamingBehavior): the call's
//! audio to a WebSocket endpoint from config, so a transcriber or a voice bot can listen.
//!
//! Protocol: one text message `{"event":"start","contact_id":...,"format":"L16","rate":8000,
//! "tracks":["from_customer","to_customer"]}`, then binary messages of one 20 ms frame each:
//! one byte track (0 = from the customer, 1 = to the customer) followed by 160 little-endian
//! i16 samples at 8 kHz; `{"event":"stop"}` at the end.
//!
//! A dead or slow endpoint never disturbs the call: frames go through a bounded channel with
//! `try_send` (dropped when full), and the connection lives in its own task.

use std::time::Duration;

use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub(crate) use crate::media::tap::{TapFrame, TapSender};

/// Frames buffered toward a slow endpoint before new ones are dropped (2 s of both tracks).
const BUFFER_FRAMES: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts streaming to `url`; returns the sender for the leg's tap. The task ends when the
/// sender is dropped (stop, call end) or the endpoint goes away.
pub(crate) fn start(url: String, contact_id: String) -> TapSender {
    let (tx, mut rx) = mpsc::channel::<TapFrame>(BUFFER_FRAMES);
    tokio::spawn(async move {
        let connect = tokio_tungstenite::connect_async(url.as_str());
        let mut ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "media streaming endpoint refused; the call goes on without it");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "media streaming endpoint did not answer; the call goes on without it"
                );
                return;
            }
        };
        let start = serde_json::json!({
            "event": "start", "contact_id": contact_id, "format": "L16", "rate": 8000,
            "tracks": ["from_customer", "to_customer"],
        });
        if ws.send(Message::text(start.to_string())).await.is_err() {
            return;
        }
        let mut buf = Vec::with_capacity(321);
        while let Some(frame) = rx.recv().await {
            buf.clear();
            buf.push(frame.track as u8);
            for s in frame.pcm {
                buf.extend_from_slice(&s.to_le_bytes());
            }
            if ws.send(Message::binary(buf.clone())).await.is_err() {
                tracing::warn!("media streaming endpoint went away; the call goes on without it");
                return;
            }
        }
        let _ = ws
            .send(Message::text(r#"{"event":"stop"}"#.to_string()))
            .await;
        let _ = ws.close(None).await;
    });
    tx
}
