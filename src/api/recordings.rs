//! HTTP access to recordings: stream a recording's decrypted audio, and control a live
//! call's recording. There are no users or roles yet, so these routes exist only when
//! `recording.http_enabled` is set and HTTP listens on loopback (checked at start).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;

use super::format::AudioFormat;
use super::reader::Reader;
use super::service::RecordingError;
use super::tap::{Participants, RecordingControl};
use crate::call::{CallCommand, CallServices};

pub fn router() -> Router<Arc<CallServices>> {
    Router::new()
        .route("/api/v1/recordings/{id}/audio", get(audio))
        .route("/api/v1/calls/{call_id}/recording/{action}", post(control))
}

fn problem(code: StatusCode, msg: String) -> Response {
    (code, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Streams the recording as stored (Ogg Opus, or WAV with open-ended sizes), decrypting
/// chunk by chunk: nothing is buffered beyond one chunk, nothing is written to disk.
async fn audio(State(svc): State<Arc<CallServices>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse() else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a recording id"),
        );
    };
    let archive = &svc.recorder.archive;
    let row = match archive.row(id) {
        Ok(r) => r,
        Err(e @ RecordingError::NotFound(_)) => {
            return problem(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e @ RecordingError::Deleted(..)) => return problem(StatusCode::GONE, e.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut stream = match archive.store.read(&row).await {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let svc2 = svc.clone();
    tokio::spawn(async move {
        let ring = &svc2.recorder.archive.ring;
        let mut reader = Reader::new(ring);
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            out.clear();
            if let Err(e) = reader.push(&piece, &mut out) {
                tracing::warn!(recording = %id, error = %e, "recording refused while streaming");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
            if !out.is_empty() && tx.send(Ok(Bytes::copy_from_slice(&out))).await.is_err() {
                return;
            }
        }
        if let Err(e) = reader.finish() {
            tracing::warn!(recording = %id, error = %e, "recording streamed up to its end");
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let content_type = match row.format {
        AudioFormat::Opus => "audio/ogg",
        AudioFormat::Wav => "audio/wav",
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `start` (both participants; `?customer`/`?agent` not yet), `stop`, `pause`, `resume`.
async fn control(
    State(svc): State<Arc<CallServices>>,
    Path((call_id, action)): Path<(String, String)>,
) -> Response {
    let ctl = match action.as_str() {
        "start" => RecordingControl::Start(Participants::BOTH),
        "stop" => RecordingControl::Stop,
        "pause" => RecordingControl::Pause,
        "resume" => RecordingControl::Resume,
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("`{other}` is not start, stop, pause or resume"),
            );
        }
    };
    if svc.table.send(&call_id, CallCommand::Recording(ctl)) {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "call_id": call_id, "recording": action })),
        )
            .into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "no such call".into())
    }
}
