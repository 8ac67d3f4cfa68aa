//! `/api/v1/recordings...` and `/api/v1/calls/{call_id}/recording/{action}`: list recordings,
//! read their metadata, stream their decrypted audio, delete them, and control a live call's
//! recording. Guarded like the patient endpoints ([`Caller`] and the permission table); a
//! recording is about the patient its call was linked to (`PatientStore::link_call`), which is
//! what a clinician's on-call or break-glass scope is checked against. Every access, allowed,
//! refused or failed, is in the audit trail with the recording and call ids.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{ApiError, ApiState, Caller};
use super::extract::QueryParams;
use super::range;
use crate::audit::{Event, action};
use crate::auth::Action;
use crate::call::{CallCommand, CallServices};
use crate::db::rfc3339;
use crate::recording::encode::WAV_HEADER_LEN;
use crate::recording::export::{Export, ExportError, plaintext_len, wav_data_len};
use crate::recording::format::{AudioFormat, RecordingId};
use crate::recording::index::{Row, State as RecState};
use crate::recording::reader::Reader;
use crate::recording::service::RecordingError;
use crate::recording::{Participants, RecordingControl};

/// What the recording routes share: the API's users, audit and patients, and the calls (whose
/// recorder holds the archive and whose table reaches live calls).
#[derive(Clone)]
pub struct RecordingApi {
    pub api: Arc<ApiState>,
    pub calls: Arc<CallServices>,
}

impl FromRef<RecordingApi> for Arc<ApiState> {
    fn from_ref(s: &RecordingApi) -> Arc<ApiState> {
        s.api.clone()
    }
}

type S = State<RecordingApi>;

pub(crate) fn router(api: Arc<ApiState>, calls: Arc<CallServices>) -> Router {
    Router::new()
        .route("/api/v1/recordings", get(list))
        .route("/api/v1/recordings/{id}", get(metadata).delete(delete))
        .route("/api/v1/recordings/{id}/audio", get(audio))
        .route("/api/v1/calls/{call_id}/recording/{action}", post(control))
        .with_state(RecordingApi { api, calls })
}

fn recording_error(e: RecordingError) -> ApiError {
    match e {
        RecordingError::NotFound(_) => ApiError::not_found(e.to_string()),
        RecordingError::Deleted(..) => ApiError::new(StatusCode::GONE, e.to_string()),
        RecordingError::Busy(..) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        RecordingError::Store(_) => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
        other => ApiError::internal(other),
    }
}

fn parse_id(text: &str) -> Result<RecordingId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request("not a recording id (rec- and 32 hex digits)"))
}

/// The recording's index row, deleted ones included (their deletion stays on record).
fn find(s: &RecordingApi, id: RecordingId) -> Result<Option<Row>, ApiError> {
    s.calls
        .recorder
        .archive
        .index
        .get(id)
        .map_err(|e| recording_error(e.into()))
}

/// The patient a recording is about: linked by its own id, else by its call.
async fn patient_of(
    s: &RecordingApi,
    id: RecordingId,
    call_id: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let patients = &s.api.patients;
    if let Some(p) = patients.patient_of_recording(&id.to_string()).await? {
        return Ok(Some(p));
    }
    match call_id {
        Some(c) => Ok(patients.patient_of_call(c).await?),
        None => Ok(None),
    }
}

/// Metadata only: no location, nothing decrypted.
fn view(row: &Row, patient: Option<&str>) -> Value {
    let state = match row.state {
        RecState::Recording => "recording",
        RecState::Sealed => "sealed",
        RecState::Deleted => "deleted",
    };
    json!({
        "id": row.id,
        "call_id": row.call_id,
        "patient_id": patient,
        "started": rfc3339(row.started_ms as i64),
        "ended": row.ended_ms.map(|t| rfc3339(t as i64)),
        "duration_ms": row.duration_ms,
        "participants": row.participants,
        "format": row.format,
        "sample_rate": row.sample_rate,
        "state": state,
        "uploaded": row.uploaded,
        "recovered": row.recovered,
        "size": row.size,
        "sha256": row.sha256,
        "chunks": row.chunks,
        "key_id": row.key_id,
        "deleted": row.deleted_ms.map(|t| rfc3339(t as i64)),
        "deleted_reason": row.deleted_reason,
    })
}

/// One audit entry about recordings.
fn event(
    caller: &Caller,
    what: &'static str,
    outcome: &'static str,
    patient: Option<&str>,
    detail: Value,
) -> Event {
    let mut e = Event::new(caller.name(), what, outcome).detail(detail);
    if let Some(p) = patient {
        e = e.patient(p);
    }
    e
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub call_id: Option<String>,
    /// Only this patient's recordings (what a clinician on a call with them may list).
    pub patient: Option<String>,
    /// Started at or after: RFC 3339, `YYYY-MM-DD`, or a duration back from now (`24h`).
    pub since: Option<String>,
    pub until: Option<String>,
    /// `recording`, `sealed`, `deleted` or `all` (default: all but deleted).
    pub state: Option<String>,
    /// Newest first, at most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /api/v1/recordings`: metadata, newest first.
pub(crate) async fn list(
    State(s): S,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let about = json!({"view": "list", "call_id": q.call_id});
    let grant = match s
        .api
        .require_about(&caller, Action::RecordingRead, q.patient.as_deref(), about)
        .await
    {
        Err(mut e) if q.patient.is_none() && e.status == StatusCode::FORBIDDEN => {
            e.message += "; list one patient's recordings with ?patient=ID";
            return Err(e);
        }
        other => other?,
    };
    let since = super::audit::time_param("since", &q.since)?;
    let until = super::audit::time_param("until", &q.until)?;
    let state = match q.state.as_deref() {
        None => None,
        Some("all") => Some(None),
        Some("recording") => Some(Some(RecState::Recording)),
        Some("sealed") => Some(Some(RecState::Sealed)),
        Some("deleted") => Some(Some(RecState::Deleted)),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state `{other}` is not recording, sealed, deleted or all"
            )));
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let linked: Option<(HashSet<String>, HashSet<String>)> = match &q.patient {
        Some(p) => {
            let links = s.api.patients.calls_of_patient(p).await?;
            Some((
                links
                    .iter()
                    .filter_map(|l| l.recording_id.clone())
                    .collect(),
                links.into_iter().map(|l| l.call_id).collect(),
            ))
        }
        None => None,
    };
    let rows = s.calls.recorder.archive.list().map_err(recording_error)?;
    let mut out = Vec::new();
    for row in rows.iter().rev() {
        if out.len() >= limit {
            break;
        }
        let state_ok = match state {
            None => row.state != RecState::Deleted,
            Some(None) => true,
            Some(Some(want)) => row.state == want,
        };
        let started = row.started_ms as i64;
        if !state_ok
            || q.call_id.as_ref().is_some_and(|c| *c != row.call_id)
            || since.is_some_and(|t| started < t)
            || until.is_some_and(|t| started >= t)
        {
            continue;
        }
        if let Some((recs, calls)) = &linked
            && !recs.contains(&row.id.to_string())
            && !calls.contains(&row.call_id)
        {
            continue;
        }
        let patient = patient_of(&s, row.id, Some(&row.call_id)).await?;
        if q.patient.is_some() && patient != q.patient {
            continue;
        }
        out.push(view(row, patient.as_deref()));
    }
    s.api
        .audit
        .append(event(
            &caller,
            action::RECORDING_READ,
            "success",
            q.patient.as_deref(),
            json!({
                "view": "list", "call_id": q.call_id, "returned": out.len(),
                "break_glass": grant.break_glass, "via": caller.via,
            }),
        ))
        .await?;
    Ok(axum::Json(json!({ "recordings": out })).into_response())
}

/// Finds the recording (deleted ones too) and its patient, and checks the permission table
/// first (a refusal is audited with the ids), so only those allowed learn whether it exists.
async fn guarded(
    s: &RecordingApi,
    caller: &Caller,
    id: &str,
    what: Action,
    view: &str,
) -> Result<(Option<Row>, Option<String>, bool), ApiError> {
    let id = parse_id(id)?;
    let row = find(s, id)?;
    let patient = patient_of(s, id, row.as_ref().map(|r| r.call_id.as_str())).await?;
    let call_id = row.as_ref().map(|r| r.call_id.clone());
    let about = json!({"recording": id, "call_id": call_id, "view": view});
    let grant = s
        .api
        .require_about(caller, what, patient.as_deref(), about)
        .await?;
    Ok((row, patient, grant.break_glass))
}

fn audit_action(what: Action) -> &'static str {
    match what {
        Action::RecordingDelete => action::RECORDING_DELETE,
        _ => action::RECORDING_READ,
    }
}

/// The row, or 404 (audited as a failure).
async fn existing(
    s: &RecordingApi,
    caller: &Caller,
    id: &str,
    row: Option<Row>,
    what: Action,
) -> Result<Row, ApiError> {
    match row {
        Some(r) => Ok(r),
        None => {
            s.api
                .audit
                .append(event(
                    caller,
                    audit_action(what),
                    "failure",
                    None,
                    json!({"recording": id, "error": "not found"}),
                ))
                .await?;
            Err(ApiError::not_found(format!("no recording `{id}`")))
        }
    }
}

/// `GET /api/v1/recordings/{id}`: one recording's metadata (a deleted one says when and why).
pub(crate) async fn metadata(
    State(s): S,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (row, patient, glass) =
        guarded(&s, &caller, &id, Action::RecordingRead, "metadata").await?;
    let row = existing(&s, &caller, &id, row, Action::RecordingRead).await?;
    s.api
        .audit
        .append(event(
            &caller,
            action::RECORDING_READ,
            "success",
            patient.as_deref(),
            json!({"recording": row.id, "call_id": row.call_id, "view": "metadata",
                   "break_glass": glass, "via": caller.via}),
        ))
        .await?;
    Ok(axum::Json(view(&row, patient.as_deref())).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AudioQuery {
    /// `ogg` (or `opus`) or `wav`; default: as stored, streamed.
    pub format: Option<String>,
}

/// `GET /api/v1/recordings/{id}/audio[?format=ogg|wav]`: the decrypted audio, streamed
/// chunk by chunk whatever the format: as stored, as Ogg Opus, or as a 16-bit PCM WAV
/// (transcoded on the way; nothing buffered beyond one chunk and the codec, nothing written
/// to disk). A WAV must give its sizes before its audio: for a sealed recording stored as a
/// WAV they are known from the index (and sent as `Content-Length` too); otherwise the
/// header has the open-ended sizes stored WAVs use, and players read to the end.
///
/// Where the whole size is known ahead (a sealed recording as stored, or a WAV of it as
/// above), a `Range` is honoured, so a browser's player can seek: only the chunks from the
/// one holding the first byte asked for are decrypted. Each request, range or not, is
/// audited as a read of the recording.
pub(crate) async fn audio(
    State(s): S,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<AudioQuery>,
    headers: header::HeaderMap,
) -> Result<Response, ApiError> {
    let want = match q.format.as_deref() {
        None => None,
        Some("ogg") | Some("opus") => Some(AudioFormat::Opus),
        Some("wav") => Some(AudioFormat::Wav),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format `{other}` is not ogg or wav"
            )));
        }
    };
    // A conditional range needs a validator this endpoint does not give: the whole body.
    let range = headers
        .get(header::RANGE)
        .filter(|_| !headers.contains_key(header::IF_RANGE))
        .and_then(|v| v.to_str().ok());
    let (row, patient, glass) = guarded(&s, &caller, &id, Action::RecordingRead, "audio").await?;
    let row = existing(&s, &caller, &id, row, Action::RecordingRead).await?;
    let format = want.unwrap_or(row.format);
    let (content_type, ext) = match format {
        AudioFormat::Opus => ("audio/ogg", "ogg"),
        AudioFormat::Wav | AudioFormat::Mulaw | AudioFormat::Alaw => ("audio/wav", "wav"),
    };
    let result = match &row.state {
        RecState::Deleted => Err(RecordingError::Deleted(
            row.id,
            row.deleted_reason.clone().unwrap_or_default(),
        )),
        _ => stream(&s, &row, want, range).await,
    };
    let mut d = json!({"recording": row.id, "call_id": row.call_id, "view": "audio",
                       "format": format, "break_glass": glass, "via": caller.via});
    let outcome = match &result {
        Ok(a) => {
            match a.part {
                Some(Ok((first, last))) => d["range"] = json!([first, last]),
                Some(Err(())) => d["range"] = json!("not satisfiable"),
                None => {}
            }
            "success"
        }
        Err(e) => {
            d["error"] = json!(e.to_string());
            "failure"
        }
    };
    s.api
        .audit
        .append(event(
            &caller,
            action::RECORDING_READ,
            outcome,
            patient.as_deref(),
            d,
        ))
        .await?;
    let a = result.map_err(recording_error)?;
    let mut resp = a.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // PHI: never kept by a browser or proxy cache.
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Ok(v) =
        header::HeaderValue::from_str(&format!("attachment; filename=\"{}.{ext}\"", row.id))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(total) = a.total {
        h.insert(
            header::ACCEPT_RANGES,
            header::HeaderValue::from_static("bytes"),
        );
        let (status, content_range, length) = match a.part {
            None => (StatusCode::OK, None, total),
            Some(Ok((first, last))) => (
                StatusCode::PARTIAL_CONTENT,
                Some(format!("bytes {first}-{last}/{total}")),
                last - first + 1,
            ),
            Some(Err(())) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Some(format!("bytes */{total}")),
                0,
            ),
        };
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, length.into());
        if let Some(v) = content_range.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// What the audio endpoint sends.
struct AudioBody {
    body: Body,
    /// The whole file's size, when known ahead: then it is sent as `Content-Length`, and a
    /// range of it can be asked for.
    total: Option<u64>,
    /// The range asked for, when there is a whole size to take it from (see
    /// [`range::requested`]).
    part: Option<Result<(u64, u64), ()>>,
}

/// The recording's plaintext as a streamed body, decrypted chunk by chunk: as stored
/// (`want` None), or exported to `want` on the way, whole or the part `range` asks for.
///
/// Transcoding runs on the blocking pool a chunk at a time (encoding a 64 KiB chunk of
/// G.711 as Opus takes milliseconds, too long to hold a runtime worker). A body whose
/// length was announced (a WAV's header, `Content-Length`) and that comes out shorter or
/// longer (the recording is not what the index says) ends with an error, so a client never
/// takes a part for the whole; otherwise a recording still being written, or cut short by a
/// crash, streams up to where it ends and the server logs the cut.
async fn stream(
    s: &RecordingApi,
    row: &Row,
    want: Option<AudioFormat>,
    range: Option<&str>,
) -> Result<AudioBody, RecordingError> {
    let archive = &s.calls.recorder.archive;
    let failed = |e: ExportError| RecordingError::Export(e.to_string());
    let sealed = row.state == RecState::Sealed;
    let (mut export, total) = match want {
        Some(AudioFormat::Opus) if row.format != AudioFormat::Opus => {
            let export = Export::new(
                row.format,
                AudioFormat::Opus,
                row.sample_rate,
                rand::random(),
            );
            (Some(export.map_err(failed)?), None)
        }
        Some(AudioFormat::Wav) => {
            let data_len = sealed
                .then(|| wav_data_len(row.format, row.size, row.chunks))
                .flatten();
            let export = Export::new(row.format, AudioFormat::Wav, row.sample_rate, 0)
                .map_err(failed)?
                .streamed(data_len);
            let total = export.announced_size();
            (Some(export), total)
        }
        // As stored.
        _ => (
            None,
            sealed
                .then(|| plaintext_len(row.size, row.chunks))
                .flatten(),
        ),
    };
    let part = range.zip(total).and_then(|(r, t)| range::requested(r, t));
    // Where the body starts: the plaintext to skip, then the output to drop and to send.
    let mut prefix = Bytes::new();
    let (mut from, mut window) = (0, range::Window::ALL);
    match part {
        None => {}
        Some(Err(())) => {
            return Ok(AudioBody {
                body: Body::empty(),
                total,
                part,
            });
        }
        Some(Ok((first, last))) => match export.take() {
            // As stored: plaintext offsets are the file's.
            None => {
                from = first;
                window.left = Some(last - first + 1);
            }
            // An exact WAV: its own header, then samples converted from the stored ones.
            Some(mut e) => {
                let head = WAV_HEADER_LEN as u64;
                // The header the whole file starts with, as the export writes it.
                let mut header = Vec::new();
                e.push(&[], &mut header).map_err(failed)?;
                prefix = Bytes::from(header)
                    .slice(first.min(head) as usize..(last + 1).min(head) as usize);
                if last < head {
                    return Ok(AudioBody {
                        body: Body::from(prefix),
                        total,
                        part,
                    });
                }
                // Output byte `d` of the data is byte `d / 2` of a G.711 WAV's samples, or
                // of the sample starting at `d` rounded down to even in a 16-bit one.
                let d = first.max(head) - head;
                let stored = if row.format == AudioFormat::Wav {
                    d / 2 * 2
                } else {
                    d / 2
                };
                from = head + stored;
                window = range::Window {
                    skip: d % 2,
                    left: Some(last - first.max(head) + 1),
                };
                export = Some(e.data_only());
            }
        },
    }
    let mut pieces = archive.store.read(row).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    if !prefix.is_empty() {
        let _ = tx.send(Ok(prefix)).await;
    }
    let s2 = s.clone();
    let id = row.id;
    let whole = part.is_none();
    tokio::spawn(async move {
        let ring = &s2.calls.recorder.archive.ring;
        let mut reader = Reader::new(ring);
        reader.skip_to(from);
        let mut out = Vec::new();
        let refuse = |what: &str, e: String| {
            tracing::warn!(recording = %id, error = %e, "{what}");
            std::io::Error::other(e)
        };
        while let Some(piece) = pieces.next().await {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            out.clear();
            if let Err(e) = reader.push(&piece, &mut out) {
                let e = refuse("recording refused while streaming", e.to_string());
                let _ = tx.send(Err(e)).await;
                return;
            }
            let bytes = match export.take() {
                None => Bytes::copy_from_slice(&out),
                Some(mut e) => {
                    let plain = std::mem::take(&mut out);
                    let done = tokio::task::spawn_blocking(move || {
                        let mut file = Vec::new();
                        let r = e.push(&plain, &mut file).map(|()| file);
                        (e, plain, r)
                    })
                    .await;
                    let Ok((e, plain, r)) = done else {
                        let _ = tx
                            .send(Err(std::io::Error::other("transcoding stopped")))
                            .await;
                        return;
                    };
                    export = Some(e);
                    out = plain;
                    match r {
                        Ok(file) => Bytes::from(file),
                        Err(e) => {
                            let e = refuse("transcoding failed while streaming", e.to_string());
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            };
            let bytes = window.cut(bytes);
            if !bytes.is_empty() && tx.send(Ok(bytes)).await.is_err() {
                return;
            }
            if window.is_full() {
                return;
            }
        }
        if let Err(e) = reader.finish() {
            // Still being recorded, or cut short by a crash: what is there was sent (the
            // header a streamed response would carry comes too late). A body whose length
            // was announced fails below instead of ending short.
            tracing::warn!(recording = %id, error = %e, "recording streamed up to its end");
        }
        if !whole {
            let owed = window.owed();
            let e = refuse(
                "range cut short",
                format!("{owed} bytes of the range missing"),
            );
            let _ = tx.send(Err(e)).await;
            return;
        }
        if let Some(e) = export {
            let end = tokio::task::spawn_blocking(move || {
                let mut file = Vec::new();
                e.finish_stream(&mut file).map(|_| file)
            })
            .await;
            let end = match end {
                Ok(Ok(file)) => Ok(Bytes::from(file)),
                Ok(Err(e)) => Err(refuse("transcoding did not finish", e.to_string())),
                Err(_) => Err(std::io::Error::other("transcoding stopped")),
            };
            let _ = tx.send(end).await;
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Ok(AudioBody { body, total, part })
}

/// `DELETE /api/v1/recordings/{id}`: deletes the audio through the archive's deletion path
/// (the index keeps the deletion, who and why, as it does for retention).
pub(crate) async fn delete(
    State(s): S,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (row, patient, _) = guarded(&s, &caller, &id, Action::RecordingDelete, "delete").await?;
    let row = existing(&s, &caller, &id, row, Action::RecordingDelete).await?;
    let reason = format!("deleted by {} through the API", caller.name());
    let result = s.calls.recorder.archive.delete(row.id, &reason).await;
    let mut detail = json!({"recording": row.id, "call_id": row.call_id, "via": caller.via});
    let outcome = match &result {
        Ok(_) => {
            detail["reason"] = json!(reason);
            "success"
        }
        Err(e) => {
            detail["error"] = json!(e.to_string());
            "failure"
        }
    };
    s.api
        .audit
        .append(event(
            &caller,
            action::RECORDING_DELETE,
            outcome,
            patient.as_deref(),
            detail,
        ))
        .await?;
    result.map_err(recording_error)?;
    tracing::info!(recording = %row.id, user = %caller.name(), "recording deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/calls/{call_id}/recording/{start|pause|resume|stop}`: `start` records both
/// participants (starting after a stop makes a new recording; a pause is not stored).
pub(crate) async fn control(
    State(s): S,
    caller: Caller,
    Path((call_id, what)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let patient = match s.api.patients.patient_of_call(&call_id).await? {
        Some(p) => Some(p),
        None => s
            .api
            .auth
            .active_contact(&call_id)
            .await?
            .map(|c| c.patient_id),
    };
    let about = json!({"call_id": call_id, "control": what});
    s.api
        .require_about(&caller, Action::RecordingControl, patient.as_deref(), about)
        .await?;
    let ctl = match what.as_str() {
        "start" => RecordingControl::Start(Participants::BOTH),
        "stop" => RecordingControl::Stop,
        "pause" => RecordingControl::Pause,
        "resume" => RecordingControl::Resume,
        other => {
            return Err(ApiError::bad_request(format!(
                "`{other}` is not start, stop, pause or resume"
            )));
        }
    };
    let delivered = s.calls.table.send(&call_id, CallCommand::Recording(ctl));
    s.api
        .audit
        .append(event(
            &caller,
            action::RECORDING_CONTROL,
            if delivered { "success" } else { "failure" },
            patient.as_deref(),
            json!({"call_id": call_id, "control": what, "live": delivered, "via": caller.via}),
        ))
        .await?;
    if !delivered {
        return Err(ApiError::not_found(format!("no live call `{call_id}`")));
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "call_id": call_id, "recording": what })),
    )
        .into_response())
}
