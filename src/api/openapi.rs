//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, built from [`ROUTES`], the list
//! of every guarded and public `/api/v1` route with the permission-table action guarding it.

use serde_json::{Map, Value, json};

use crate::auth::Action;
use crate::auth::permission::{PERMISSIONS, Scope};

pub(crate) struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: public (no credentials).
    pub action: Option<Action>,
    pub summary: &'static str,
    /// Path parameters (besides those in braces, which are listed automatically) and query
    /// parameters, as (name, description).
    pub query: &'static [(&'static str, &'static str)],
    pub body: Option<&'static str>,
    /// The success status.
    pub ok: u16,
    /// The success body's schema (in `components.schemas`); empty: no body.
    pub returns: &'static str,
    /// The success body's media type.
    pub media: &'static str,
    /// Error statuses besides those every route of its kind can answer (see [`errors_of`]).
    pub also: &'static [u16],
}

const JSON: &str = "application/json";
const FHIR: &str = "application/fhir+json";
const NDJSON: &str = "application/x-ndjson";
const AUDIO: &str = "audio/*";
const SDP: &str = "application/sdp";

/// The other media a route answers with when its `format` asks for them: the media type
/// and the schema (the route's own `media` is the default).
fn other_media(path: &str) -> &'static [(&'static str, &'static str)] {
    match path {
        "/api/v1/call-records" => &[("text/csv", "CallRecordsCsv")],
        "/api/v1/audit" => &[(FHIR, "Bundle")],
        _ => &[],
    }
}

/// Request bodies that are not JSON: their schema name and media type.
fn body_media(body: &str) -> &'static str {
    match body {
        "Sdp" => SDP,
        "TrickleIce" => "application/trickle-ice-sdpfrag",
        _ => JSON,
    }
}

/// Every `/api/v1` route. The role × endpoint matrix test walks this list.
pub(crate) const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/api/v1/me",
        action: Some(Action::SelfRead),
        summary: "Who the credentials belong to",
        query: &[],
        body: None,
        ok: 200,
        returns: "Me",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/lookup",
        action: Some(Action::PatientLookup),
        summary: "Identify a caller: by phone, by MRN and date of birth (verified), or by date of birth and family name. Returns id, preferred language, verified; no clinical data.",
        query: &[
            ("phone", "calling number, any format (normalized to E.164)"),
            ("mrn", "medical record number"),
            ("dob", "date of birth: YYYY-MM-DD, YYYYMMDD or MMDDYYYY"),
            ("family", "family name (with dob)"),
        ],
        body: None,
        ok: 200,
        returns: "Lookup",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/{id}/summary",
        action: Some(Action::PatientSummary),
        summary: "Screen-pop summary: demographics, allergies, active medications and conditions, care plans, care team, coverage, upcoming appointments, last contacts, clinical alerts",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/{id}/contacts",
        action: Some(Action::PatientSummary),
        summary: "Contact history, newest first",
        query: &[],
        body: None,
        ok: 200,
        returns: "Contacts",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/patients/{id}/contacts",
        action: Some(Action::ContactAppend),
        summary: "Append a contact record {channel, duration_secs?, reason?, outcome?, notes?, recording_id?, call_id?}; its author is the caller and its time the server's clock",
        query: &[],
        body: Some("NewContact"),
        ok: 201,
        returns: "ContactRecord",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/{id}/bundle",
        action: Some(Action::PatientExport),
        summary: "The patient's record as a FHIR R4 collection Bundle",
        query: &[],
        body: None,
        ok: 200,
        returns: "Bundle",
        media: FHIR,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/patients/{id}/break-glass",
        action: Some(Action::BreakGlass),
        summary: "Declare emergency access to a patient with a reason {reason}; flagged in the audit trail",
        query: &[],
        body: Some("BreakGlass"),
        ok: 200,
        returns: "BreakGlassGrant",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/fhir",
        action: Some(Action::PatientImport),
        summary: "Import a FHIR R4 transaction or collection Bundle (atomic, idempotent)",
        query: &[],
        body: Some("Bundle"),
        ok: 200,
        returns: "ImportReport",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "put",
        path: "/api/v1/calls/{call_id}/contact",
        action: Some(Action::ActiveContactSet),
        summary: "Link a live call to a patient and the user handling it {patient_id, user?}: the service role for any live call, the handling user for their own (404 for a call that is not live)",
        query: &[],
        body: Some("ActiveContact"),
        ok: 204,
        returns: "",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/calls/{call_id}/contact",
        action: Some(Action::ActiveContactSet),
        summary: "The patient a call is about and the user handling it {call_id, patient_id, user, wrap_up_until}: for that user (the agent console's screen-pop starts here) and services; 404 when the call has no patient",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/calls/{call_id}/contact",
        action: Some(Action::ActiveContactSet),
        summary: "End a live call's association",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/audit",
        action: Some(Action::AuditRead),
        summary: "Audit trail entries, oldest first",
        query: &[
            ("patient", "patient id"),
            ("user", "user name"),
            (
                "since",
                "RFC 3339, YYYY-MM-DD, or a duration back from now (24h, 7d)",
            ),
            ("until", "as since"),
            ("format", "jsonl (default) or fhir (Bundle of AuditEvent)"),
            ("limit", "at most this many entries (default 10000)"),
        ],
        body: None,
        ok: 200,
        returns: "AuditLines",
        media: NDJSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users",
        action: Some(Action::UserManage),
        summary: "Create a user {name, role, password?}; returns a bearer token shown once",
        query: &[],
        body: Some("NewUser"),
        ok: 201,
        returns: "NewToken",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/users",
        action: Some(Action::UserManage),
        summary: "Every user: name, role, created, disabled, whether a password is set",
        query: &[],
        body: None,
        ok: 200,
        returns: "Users",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users/{name}/disable",
        action: Some(Action::UserManage),
        summary: "Disable a user: their tokens and sessions stop working at once, sign-in fails; the account and its history stay (answers 204; 409 for one's own account)",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users/{name}/enable",
        action: Some(Action::UserManage),
        summary: "Enable a disabled user again (answers 204)",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/users/{name}/tokens",
        action: Some(Action::OwnTokens),
        summary: "A user's API tokens (id, created, expires, revoked, last used; never the secret). One's own; admins anyone's.",
        query: &[],
        body: None,
        ok: 200,
        returns: "Tokens",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users/{name}/tokens",
        action: Some(Action::OwnTokens),
        summary: "Issue a new API token (shown once; expires after [auth] token_lifetime_days). Rotation: issue, switch, then revoke the old one. One's own; admins anyone's.",
        query: &[],
        body: None,
        ok: 201,
        returns: "NewToken",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/tokens/{id}",
        action: Some(Action::OwnTokens),
        summary: "Revoke an API token at once (answers 204). One's own; admins anyone's.",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/recordings",
        action: Some(Action::RecordingRead),
        summary: "Recordings' metadata (no audio), newest first. Roles limited to particular patients (clinicians) list one patient's recordings with ?patient=ID.",
        query: &[
            ("call_id", "only this call's recordings (SIP Call-ID)"),
            ("patient", "only this patient's recordings"),
            (
                "since",
                "started at or after: RFC 3339, YYYY-MM-DD, or a duration back from now (24h, 7d)",
            ),
            ("until", "started before; as since"),
            (
                "state",
                "recording, sealed, deleted or all (default: all but deleted)",
            ),
            ("limit", "at most this many (default 100, at most 1000)"),
        ],
        body: None,
        ok: 200,
        returns: "Recordings",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/recordings/{id}",
        action: Some(Action::RecordingRead),
        summary: "One recording's metadata: call, patient, start, end, duration, participants, format, state, size, SHA-256, key id; a deleted recording says when and why",
        query: &[],
        body: None,
        ok: 200,
        returns: "Recording",
        media: JSON,
        also: &[410],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/recordings/{id}/audio",
        action: Some(Action::RecordingRead),
        summary: "The decrypted audio (stereo: left the caller, right what the caller heard), streamed as stored, or transcoded with ?format; 410 once deleted. A sealed recording as stored, or as wav from a WAV-stored one, has a known size (Content-Length, Accept-Ranges: bytes) and honours a single Range (206, or 416 past the end), so players can seek",
        query: &[(
            "format",
            "ogg (Ogg Opus) or wav (16-bit PCM; exact sizes when known, else open-ended); default: as stored, streamed",
        )],
        body: None,
        ok: 200,
        returns: "Audio",
        media: AUDIO,
        also: &[206, 409, 410, 416, 502],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/recordings/{id}",
        action: Some(Action::RecordingDelete),
        summary: "Delete a recording's audio (answers 204); the index keeps the deletion, who and why, like a retention deletion; 409 while it is still being recorded or uploaded",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[409, 410, 502],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/{call_id}/recording/{action}",
        action: Some(Action::RecordingControl),
        summary: "Control a live call's recording; action is start, pause, resume or stop (answers 202; 404 when the call is not live). A pause is not stored; start after stop makes a new recording.",
        query: &[],
        body: None,
        ok: 202,
        returns: "RecordingControl",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/workflows",
        action: Some(Action::WorkflowRead),
        summary: "The care-coordination workflows (Amazon States Language state machines) this server runs, by name",
        query: &[],
        body: None,
        ok: 200,
        returns: "Workflows",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/workflows/{name}/executions",
        action: Some(Action::WorkflowStart),
        summary: "Start an execution of a workflow with this input (a JSON object; `patient_id` names the patient, who must exist). It is stored before the answer (201, Location) and survives restarts; each task invocation carries an Idempotency-Key header (execution/state/attempt). With ?name, a repeated start with the same input answers 200 with the first execution (nothing new starts), one with another input 409. Audited with the patient.",
        query: &[(
            "name",
            "the execution's name (1 to 40 letters, digits, hyphens); its id is WORKFLOW.NAME",
        )],
        body: Some("WorkflowInput"),
        ok: 201,
        returns: "WorkflowExecution",
        media: JSON,
        also: &[200, 409],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/workflows/executions",
        action: Some(Action::WorkflowRead),
        summary: "Executions, newest first, without their outcomes (read one for it). Audited as one read, with the patient when one is asked for.",
        query: &[
            (
                "status",
                "RUNNING, SUCCEEDED, FAILED, ABORTED or all (default)",
            ),
            ("patient", "patient id"),
            ("limit", "at most this many (default 100)"),
        ],
        body: None,
        ok: 200,
        returns: "WorkflowExecutions",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/workflows/executions/{id}/stop",
        action: Some(Action::WorkflowStart),
        summary: "Stop a running execution (ABORTED, ExecutionAborted in its history): no further step is taken, a task being called now has its answer dropped; 409 when it already ended. Audited with the patient.",
        query: &[],
        body: None,
        ok: 200,
        returns: "WorkflowExecution",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/workflows/executions/{id}",
        action: Some(Action::WorkflowRead),
        summary: "An execution: status (RUNNING, SUCCEEDED, FAILED), current state, its timer, the outcome once finished, and the history in Step Functions' event names. Audited with the patient.",
        query: &[],
        body: None,
        ok: 200,
        returns: "WorkflowExecution",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/care-tasks",
        action: Some(Action::CareTaskRead),
        summary: "The care team's work list: what workflows asked of a physician or the care team (NotifyPhysician, NotifyCareteam), oldest first, with the reason. Each patient listed is audited as read.",
        query: &[
            ("status", "OPEN (default), DONE or all"),
            ("patient", "patient id"),
            ("limit", "at most this many (default 100)"),
        ],
        body: None,
        ok: 200,
        returns: "CareTasks",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/care-tasks/{id}/done",
        action: Some(Action::CareTaskDone),
        summary: "Mark a work-list item done (answers 204); 409 when it was done already. Audited with the patient.",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/care-tasks/{id}/decision",
        action: Some(Action::CareTaskDecide),
        summary: "A clinician approves or declines a refill request on the work list (CheckMedicationRefills' item). Approved: the refills become MedicationRequests (intent order) in the patient's record and, with [workflows.pharmacy] url, a FHIR transaction queued for the pharmacy (conditional creates; retried until taken). 409 when the item is no refill request or was decided already. Audited with the patient.",
        query: &[],
        body: Some("RefillDecision"),
        ok: 200,
        returns: "RefillDecided",
        media: JSON,
        also: &[409, 422],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/notifications",
        action: Some(Action::NotificationManage),
        summary: "The notices Careline owes or sent to people and systems outside it (care-task webhooks and e-mail, pharmacy orders), newest first: id, channel, recipients, status (pending, sent, failed), tries and the last error. Bodies are not shown.",
        query: &[
            ("status", "pending, sent, failed or all (default)"),
            ("limit", "at most this many (default 100)"),
        ],
        body: None,
        ok: 200,
        returns: "Notifications",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/notifications/{id}/retry",
        action: Some(Action::NotificationManage),
        summary: "Send a notice that was given up on again, with a fresh round of tries (answers 204): after the relay or endpoint is fixed. 409 when it was not given up on.",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/whip",
        action: Some(Action::CallPlace),
        summary: "Place a call from a browser (WHIP, RFC 9725): the body is the browser's SDP offer; the call runs a contact flow as a phone call does (?flow= names one, ?to= maps a number as a dialed number; else the default flow). Answers 201 with the SDP answer (ICE-lite, DTLS-SRTP) and the session's Location, whose URL is its capability: DELETE it to hang up. With [webrtc] public_calls = true anyone may place a call, without credentials.",
        query: &[
            ("flow", "the contact flow to run, by name"),
            ("to", "the number called: its flow, as for a dialed number"),
        ],
        body: Some("Sdp"),
        ok: 201,
        returns: "Sdp",
        media: SDP,
        also: &[404, 429, 503],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls",
        action: Some(Action::CallPlace),
        summary: "Call a phone: Careline sends the INVITE through a trunk ([sip.trunks.NAME] proxy; `trunk` names one, else the only one) and, once the phone answers, runs a contact flow (`flow`, else flows.default) with `attributes` as its $.Attributes. Answers 201 with the call's id as soon as the INVITE is out; how it ended (answered, busy, no_answer, ...) is in /metrics (careline_outbound_calls_total) and the audit trail. 422 for a number that is not one, an unknown flow or trunk; 503 when Careline, the trunk (max_calls) or the media ports are full. The number is never logged or audited.",
        query: &[],
        body: Some("NewCall"),
        ok: 201,
        returns: "PlacedCall",
        media: JSON,
        also: &[422, 502, 503],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/calls/{call_id}",
        action: Some(Action::CallPlace),
        summary: "Where a call Careline placed stands: state dialing, ringing, answered, or ended with its outcome (answered, busy, no_answer, ...), cause and talk time. Ended calls are kept for the last thousand; neither the number nor the patient's answers are shown.",
        query: &[],
        body: None,
        ok: 200,
        returns: "PlacedCallState",
        media: JSON,
        also: &[404],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/calls/{call_id}",
        action: Some(Action::CallPlace),
        summary: "Hang up a call Careline placed: CANCEL while it rings, BYE once answered (204); 404 when no such call runs. Audited.",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/queues",
        action: Some(Action::CallAnswer),
        summary: "The configured queues, each with how many callers wait (those an agent is connecting to included), how long the longest has waited, and how many of its agents are available, taking contacts (online) and signed in (staffed): {\"queues\": [{\"name\", \"waiting\", \"oldest_wait_secs\", \"agents_available\", \"agents_online\", \"agents_staffed\"}]}. What the agent console (/agent) shows.",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/queues/{name}/answer",
        action: Some(Action::CallAnswer),
        summary: "Answer from the browser (WHIP, RFC 9725): the body is the agent's SDP offer; the caller who has waited longest in queue `name` (and whom no other agent is taking) is joined to the agent once the agent's media is up, and keeps hearing the hold flow until then (and their place, if the agent never connects). Answers 201 with the SDP answer, the session's Location (DELETE it to hang up, which ends the call) and the call's id in Careline-Call-Id; 409 when nobody is waiting.",
        query: &[],
        body: Some("Sdp"),
        ok: 201,
        returns: "Sdp",
        media: SDP,
        also: &[409, 503],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/ws",
        action: Some(Action::CallAnswer),
        summary: "The agent console's live channel: a WebSocket (upgrade; 426 without one) over which the server pushes the agent's state, offers of calls ringing for them (with how long they ring) and their withdrawal, and takes the agent's choices (available, unavailable with a reason, offline, decline, wrap-up done). JSON messages, schema in docs/signaling.md. The agent is at the desk while a channel is open, and signed out after [routing] reconnect_grace_secs without one.",
        query: &[],
        body: None,
        ok: 101,
        returns: "",
        media: JSON,
        also: &[426],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/{call_id}/accept",
        action: Some(Action::CallAnswer),
        summary: "Accept the call ringing for this agent (offered over /api/v1/ws), from the browser (WHIP, RFC 9725): the body is the agent's SDP offer; the caller is joined to the agent once the agent's media is up. 201 with the SDP answer, the session's Location (DELETE it to hang up) and the call's id in Careline-Call-Id; 409 when the call is not (or no longer) offered to this agent.",
        query: &[],
        body: Some("Sdp"),
        ok: 201,
        returns: "Sdp",
        media: SDP,
        also: &[409, 503],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/{call_id}/monitor",
        action: Some(Action::CallMonitor),
        summary: "Listen in on a call where an agent talks with a caller (silent monitoring), from the browser (WHIP, RFC 9725): the body is the supervisor's SDP offer. 201 with the SDP answer and the session's Location: nobody hears the supervisor; POST Location/barge and the caller and the agent hear them too, POST Location/listen back to listening, DELETE Location to leave. Ends when the agent leaves the call. Audited (call.monitor, with the call's patient when identified). 404 for no such call in progress, 409 when it is not with an agent or someone listens in already.",
        query: &[],
        body: Some("Sdp"),
        ok: 201,
        returns: "Sdp",
        media: SDP,
        also: &[409, 503],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms",
        action: Some(Action::RoomManage),
        summary: "Book a telehealth room (docs/rooms.md): {title, scheduled_at? (RFC 3339; now), patient_id? (the patient the visit is about), waiting_room? (default true: patients and guests wait to be let in), max_participants? (2 to 16; [rooms] max_participants), host_leaves? (hand_over: another clinician present hosts; end), invitees? [{label, role: patient|guest}] (15 at most)}. 201 with the room (as GET), each invitee's signed link (/room/ID?t=TOKEN, valid until [rooms] link_valid_hours after the scheduled time). The caller is the room's booked host. Audited (room.create, with the patient).",
        query: &[],
        body: Some("NewRoom"),
        ok: 201,
        returns: "Room",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/rooms",
        action: Some(Action::RoomManage),
        summary: "The caller's rooms not ended, soonest first (a service: everyone's): {\"rooms\": [{\"id\", \"title\", \"host\", \"scheduled_at\", \"join_url\"}]}.",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/rooms/{id}",
        action: Some(Action::RoomManage),
        summary: "A room, for the clinician who booked it (or a service): the booking, its invitees with their links (none once withdrawn), and who is in it now (live: {host, participants: [{id, label, role, channel, presence: waiting|present|away, muted}], talking: [ids]}, null when nobody has entered). 403 for another clinician's room.",
        query: &[],
        body: None,
        ok: 200,
        returns: "Room",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/invitees",
        action: Some(Action::RoomManage),
        summary: "Invite one more person: {label, role: patient|guest}. 201 {id, label, role, expires, link}. 403 for another clinician's room, 409 past 15 invitations, 410 for a visit that is over; 422 for role clinician (colleagues enter signed in). Audited (room.invite).",
        query: &[],
        body: Some("NewInvitee"),
        ok: 201,
        returns: "Object",
        media: JSON,
        also: &[409, 410],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/rooms/{id}/invitees/{invitee}",
        action: Some(Action::RoomManage),
        summary: "Withdraw an invitation: its link opens nothing more (403 to whoever follows it). 204; 404 for no such invitation. Audited (room.invite, revoked).",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/join",
        action: Some(Action::RoomJoin),
        summary: "Enter a room from the browser (WHIP, RFC 9725): the body is the SDP offer. With ?t=TOKEN (the invitation link's) no other credentials are needed; without it, a signed-in clinician enters. 201 with the SDP answer and the participant's session Location (GET it: where they stand; DELETE it: leave). Clinicians enter the room at once (the first hosts it); patients and guests wait until the host lets them in (unless the room has no waiting room). 403 for a forged, expired, withdrawn or other room's link (audited) or a participant turned away; 409 when the room is full; 410 when the visit is over. Someone entering again while in (a reloaded page, another device) takes their own place on the new connection, the old one closed; within [rooms] rejoin_grace_secs of losing their connection they are back in the room without a second wait. Each entry is audited (room.join, with the patient).",
        query: &[("t", "the invitation link's token")],
        body: Some("Sdp"),
        ok: 201,
        returns: "Sdp",
        media: SDP,
        also: &[409, 410, 503],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/rooms/{id}/sessions/{session}",
        action: None,
        summary: "Where a participant stands (their session URL from join is the credential): {participant, presence (waiting, present, away), muted, host (whether they host), host_participant, participants: [{id, label, role, channel, presence, muted}], talking: [ids of those talking now], recording (the visit is being recorded)}; for a clinician in the visit also title and patient_id (whose summary then opens to them: being in the visit with the patient is what the permission table asks, as being on a call). 404 once they left, were taken out or the visit ended.",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/rooms/{id}/sessions/{session}",
        action: None,
        summary: "Leave the room (the session URL is the credential). 204. A host leaving hands the room to the clinician there longest, or ends it (host_leaves).",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/participants/{pid}/{action}",
        action: Some(Action::RoomManage),
        summary: "The host runs the visit: admit (let a waiting participant in), deny (turn them away: they may not come back), mute, unmute, remove (take out), host (hand the room to another clinician present). 204; 403 for anyone but the room's host now; 404 for nobody by that number or an empty room; 409 when it does not apply (admit someone not waiting, remove the host).",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/recording/{action}",
        action: Some(Action::RoomManage),
        summary: "The room's host starts or stops recording the visit. The recording follows the patient's leg (left channel: the patient; right: everyone else, as the patient hears them), or the host's when no patient is in the room's audio; it is linked to the visit's patient (GET /api/v1/recordings?patient=) and ends when the recorded person leaves or the visit ends. Everyone in the room is shown that it is recorded. start: 201 {recording, left: patient|host}; stop: 200 {recording, left}. 403 for anyone but the host; 404 when nobody is in the room; 409 when recording already (start), not recording (stop) or nobody to record; 503 when recording is not available. Audited (recording.control, with the patient).",
        query: &[],
        body: None,
        ok: 201,
        returns: "Object",
        media: JSON,
        also: &[200, 409, 503],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/participants",
        action: Some(Action::RoomManage),
        summary: "The room's host calls a number into the visit through the trunk (an interpreter's line, a patient whose browser failed): {number, label, role: patient|guest}. 202 once the call is placed; when it answers the participant is in the room at once (channel phone), and their phone is hung up when they are taken out or the visit ends; their hanging up is their leaving. 403 for anyone but the host; 422 for a number that is none or no trunk; 503 when the trunk or Careline is at its limit. Audited (room.invite, called).",
        query: &[],
        body: Some("CallOut"),
        ok: 202,
        returns: "Object",
        media: JSON,
        also: &[502, 503],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/call-me",
        action: None,
        summary: "We will call your phone: an invitee whose browser cannot join (?t=TOKEN, their invitation link's) asks to be called at {number} through the trunk; answered, they are in the visit by phone as their invitation (back in the room if the host had let them in, else the waiting room). 202 once the call is placed. 403 for a forged, expired or withdrawn link; 409 while no clinician hosts the visit; 410 once it is over; 422 for a number that is none or no trunk; 429 past three calls per invitation. Audited (room.invite, called_back); the number is neither logged nor kept.",
        query: &[("t", "the invitation link's token")],
        body: Some("CallMe"),
        ok: 202,
        returns: "Object",
        media: JSON,
        also: &[401, 403, 409, 410, 429, 502, 503],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/rooms/{id}/end",
        action: Some(Action::RoomManage),
        summary: "End the visit for everyone (the room's host now, or the clinician who booked it): participants are out and the links open nothing. 204; 410 when it is over already. Audited (room.end).",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[410],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/{call_id}/decline",
        action: Some(Action::CallAnswer),
        summary: "Decline the call ringing for this agent: it goes back to its place for the next agent, and the agent is in the missed state until they make themselves available again. 204; 409 when it does not ring for them.",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[409],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/call-records",
        action: Some(Action::CallRecordsRead),
        summary: "Call records, one per answered call, oldest first: times, direction, channel (phone or browser), how it ended, each queue stay with the agent who answered it and when, the wait, recordings and the wrap-up code. No patient data (only whether the caller was identified). JSON, or CSV (RFC 4180) with format=csv.",
        query: &[
            (
                "since",
                "RFC 3339, YYYY-MM-DD, or a duration back from now (24h, 7d)",
            ),
            ("until", "as since"),
            ("queue", "the queue the call was last in"),
            ("agent", "the last agent who talked with the caller"),
            ("format", "json (default) or csv"),
            ("limit", "at most this many (1 to 10000, the default)"),
        ],
        body: None,
        ok: 200,
        returns: "CallRecords",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/callbacks",
        action: Some(Action::CallbackManage),
        summary: "Queued callbacks callers asked for (CreateCallbackContact), oldest place first: {\"callbacks\": [{\"id\", \"queue\", \"status\" (queued, dialing, reached, given_up), \"waiting_since\" (the place kept), \"not_before\" (when next offered), \"attempts\", \"max_attempts\", \"retry_delay_secs\", \"last_cause\" (no_answer, busy, cancelled, restart, ...), \"origin_call\"}]}. No number and no patient.",
        query: &[
            (
                "status",
                "queued, dialing, reached, given_up or all (default: queued and dialing)",
            ),
            ("limit", "at most this many (1 to 1000, default 100)"),
        ],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/callbacks/{id}",
        action: Some(Action::CallbackManage),
        summary: "Cancel a queued callback: it leaves routing at once (a ringing offer of it is withdrawn), audited (callback.cancel). 204; 404 for no such callback; 409 when it is not queued (the patient is being called, or it is settled).",
        query: &[],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[404, 409],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/{call_id}/wrap-up",
        action: Some(Action::CallAnswer),
        summary: "Wrap up a call this agent handled (on it, or in its after-contact work), once: {code, notes?}. With a patient identified, a contact record (channel voice, the code as outcome, the notes) goes into their contact history, audited. 201 {call_id, code, contact_record}; 409 when the call is not theirs or is wrapped up already; 422 for a code not in [routing] wrap_up_codes (the console's hello lists them).",
        query: &[],
        body: Some("WrapUp"),
        ok: 201,
        returns: "Object",
        media: JSON,
        also: &[409, 422],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/desk",
        action: Some(Action::DeskRead),
        summary: "The supervisor's live view: {\"queues\": [{\"name\", \"waiting\", \"oldest_wait_secs\", \"agents_available\", \"agents_online\", \"agents_staffed\", \"answered\", \"abandoned\", \"average_speed_of_answer_secs\", \"service_level\" (answered within service_level_secs over answered and abandoned), \"service_level_secs\"}], \"agents\": [{\"name\", \"state\", \"for_secs\", and reason, contact, queue as the state has them}]}. Figures since the start; no patient data. The console channel (/api/v1/ws) pushes the same to supervisors as it changes.",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/calls/whip/{id}",
        action: None,
        summary: "Hang up a browser call (RFC 9725 §4.3): the session URL from its Location is the credential",
        query: &[],
        body: None,
        ok: 200,
        returns: "",
        media: JSON,
        also: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/whip/{id}/{action}",
        action: None,
        summary: "On a supervisor's session from POST /api/v1/calls/{call_id}/monitor: barge (the caller and the agent hear the supervisor) or listen (nobody does). An agent's control of the call they answered, on their session from POST /api/v1/queues/{name}/answer or /api/v1/calls/{call_id}/accept (its URL is the credential): hold (the caller hears music, the agent nothing), resume, mute (the caller hears silence from the agent), unmute, transfer?queue=NAME (a blind transfer: the caller waits in that queue, hearing its hold flow, and is offered to the next agent; the agent's session ends and they wrap up; 404 for an unknown queue, 409 when it is full), or transfer?to=NUMBER (the outside number is called through the trunk while the caller hears music; answered, the two are joined; busy or unanswered, the caller goes back to their queue; 422 for a number that is none or no trunk, 409 when the trunk is at its limit), or transfer?agent=NAME (the caller waits in their queue for that agent alone, offered to them first; back to the queue if they do not take it; 409 when they are not at the desk). Consult, then transfer (warm): consult?to=NUMBER rings an outside number while the caller waits on hold with music (409 when a consultation is under way; 422, 409 as for transfer?to), conference brings the caller in once it answered (all three talk), complete hands the caller over to it (the agent's session ends; the agent hanging up does the same), cancel drops it and takes the caller off hold (409 when there is none). 204 when done, 409 while the caller is not yet joined to the agent.",
        query: &[
            (
                "queue",
                "with action transfer: the queue to send the caller to",
            ),
            (
                "to",
                "with action transfer: the outside number to send the caller to (instead of a queue)",
            ),
            (
                "agent",
                "with action transfer: the agent at the desk to send the caller to (instead of a queue)",
            ),
        ],
        body: None,
        ok: 204,
        returns: "",
        media: JSON,
        also: &[400, 409, 422],
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/whip/{id}/reconnect",
        action: None,
        summary: "A caller's or agent's page is back after a reload (or a lost network) with a new peer connection for the same call: the body is its SDP offer, sent to the session URL (the credential, as for DELETE) from the address the session came from. 200 with the SDP answer; the call (its flow, its place in a queue, its agent, its recording) goes on through the new connection once it is up; an agent's caller, on hold meanwhile, talks with them again (unless the agent had put them on hold). Within [webrtc] reconnect_grace_secs of the old connection going silent; 403 from another address, 404 for a call that ended, 409 before the session first connected or past 10 reconnects.",
        query: &[],
        body: Some("Sdp"),
        ok: 200,
        returns: "Sdp",
        media: SDP,
        also: &[403, 409],
    },
    RouteDoc {
        method: "patch",
        path: "/api/v1/calls/whip/{id}",
        action: None,
        summary: "Trickled ICE candidates of a browser call (RFC 8840 fragment). Careline is ICE-lite and learns the browser's address from its checks, so a fragment is accepted with nothing to do; ICE restarts are not supported.",
        query: &[],
        body: Some("TrickleIce"),
        ok: 204,
        returns: "",
        media: JSON,
        also: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/openapi.json",
        action: None,
        summary: "This document",
        query: &[],
        body: None,
        ok: 200,
        returns: "Object",
        media: JSON,
        also: &[],
    },
];

fn roles_for(action: Action) -> Vec<Value> {
    PERMISSIONS
        .iter()
        .filter(|(a, _, _)| *a == action)
        .map(|(_, role, scope)| {
            let scope = match scope {
                Scope::Any => "any",
                Scope::OnCall => "on a call with the patient",
                Scope::OnCallOrBreakGlass => "on a call with the patient, or break-glass",
                Scope::PatientOnAnyCall => "patient on a live call",
                Scope::CallParty => "a live call the user handles",
            };
            json!({"role": role.as_str(), "when": scope})
        })
        .collect()
}

/// The error statuses a route answers: every guarded route 401 and 403; a route with a body
/// 400, 408, 413, 415 and 422; with path parameters 404; with query parameters 400; and its
/// own (`also`).
pub(crate) fn errors_of(r: &RouteDoc) -> Vec<u16> {
    let mut codes: Vec<u16> = Vec::new();
    if r.action.is_some() {
        codes.extend([401, 403]);
    }
    if r.body.is_some() {
        codes.extend([400, 408, 413, 415, 422]);
    }
    if r.path.contains('{') {
        codes.extend([400, 404]);
    }
    if !r.query.is_empty() {
        codes.push(400);
    }
    codes.extend(r.also);
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// What a path parameter looks like (the server answers 400 or 404 for anything else).
fn path_schema(path: &str, name: &str) -> Value {
    match (name, path.starts_with("/api/v1/recordings")) {
        ("id", true) => json!({"type": "string", "pattern": "^(rec-)?[0-9a-f]{32}$"}),
        ("id", false) if path.starts_with("/api/v1/calls/whip") => {
            json!({"type": "string", "pattern": "^[0-9a-f]{32}$"})
        }
        ("id", false) if path.starts_with("/api/v1/rooms") => {
            json!({"type": "string", "pattern": "^[0-9a-f]{16}$"})
        }
        ("session", _) => json!({"type": "string", "pattern": "^[0-9a-f]{32}$"}),
        ("id", false) if path.starts_with("/api/v1/tokens") => {
            json!({"type": "string", "pattern": "^[0-9a-f]{16}$"})
        }
        ("id", false) => json!({"type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}$"}),
        ("name", _) => json!({"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"}),
        ("action", _) if path.starts_with("/api/v1/calls/whip") => {
            json!({"enum": ["hold", "resume", "mute", "unmute", "barge", "listen", "conference", "complete", "cancel"]})
        }
        ("action", _) if path.starts_with("/api/v1/rooms/{id}/recording") => {
            json!({"enum": ["start", "stop"]})
        }
        ("action", _) if path.starts_with("/api/v1/rooms") => {
            json!({"enum": ["admit", "deny", "mute", "unmute", "remove", "host"]})
        }
        ("action", _) => json!({"enum": ["start", "pause", "resume", "stop"]}),
        ("pid", _) => json!({"type": "integer", "minimum": 1}),
        _ => json!({"type": "string", "pattern": "^[!-~]{1,256}$"}),
    }
}

/// What a query parameter takes.
fn query_schema(path: &str, name: &str) -> Value {
    match name {
        "limit" if path == "/api/v1/audit" || path == "/api/v1/call-records" => {
            json!({"type": "integer", "minimum": 1, "maximum": 10000})
        }
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        "format" if path == "/api/v1/audit" => json!({"enum": ["jsonl", "json", "fhir"]}),
        "format" if path == "/api/v1/call-records" => json!({"enum": ["json", "csv"]}),
        "format" => json!({"enum": ["ogg", "wav"]}),
        "status" if path == "/api/v1/care-tasks" => json!({"enum": ["OPEN", "DONE", "all"]}),
        "status" if path == "/api/v1/callbacks" => {
            json!({"enum": ["queued", "dialing", "reached", "given_up", "all"]})
        }
        "status" => json!({"enum": ["RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "all"]}),
        "name" if path.starts_with("/api/v1/workflows") => {
            json!({"type": "string", "pattern": "^[A-Za-z0-9-]{1,40}$"})
        }
        "state" => json!({"enum": ["recording", "sealed", "deleted", "all"]}),
        _ => json!({"type": "string", "minLength": 1}),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "the request is malformed or names an invalid value (which, in `detail`)",
        401 => "no or invalid credentials",
        403 => "denied by the permission table, or a cross-site browser write (reason in `detail`)",
        404 => "no such resource, or (calls) no live call with this id",
        408 => "the request body did not arrive in time",
        409 => "conflicts with the resource's state (in `detail`)",
        410 => "deleted (the recording's audio is gone; its record stays)",
        413 => "the body is larger than this endpoint takes",
        415 => "the body is not of the media type this endpoint takes",
        416 => "the range is outside the recording",
        429 => "too many browser calls from this address are still connecting (see Retry-After)",
        426 => "this endpoint is a WebSocket: send an upgrade",
        422 => "a field is unknown, missing, of the wrong type or too long (named in `detail`)",
        502 => "the recording store did not answer",
        503 => "Careline is shutting down or at its concurrent-call limit (see Retry-After)",
        _ => "error",
    }
}

pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_schema(r.path, name)}))
            .collect();
        params.extend(r.query.iter().map(|(name, desc)| {
            json!({"name": name, "in": "query", "required": false, "description": desc, "schema": query_schema(r.path, name)})
        }));
        let mut responses = Map::new();
        let ok = if r.ok == 101 {
            json!({"description": "switching to the WebSocket (docs/signaling.md)"})
        } else if r.returns.is_empty() {
            json!({"description": "done"})
        } else {
            let mut ok = json!({"description": "OK", "content": {r.media: {"schema": {"$ref": format!("#/components/schemas/{}", r.returns)}}}});
            for (media, schema) in other_media(r.path) {
                ok["content"][*media] =
                    json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
            }
            ok
        };
        responses.insert(r.ok.to_string(), ok);
        for code in errors_of(r) {
            if code == 206 {
                responses.insert(
                    "206".into(),
                    json!({"description": "the requested range", "content": {r.media: {"schema": {"$ref": "#/components/schemas/Audio"}}}}),
                );
                continue;
            }
            if code < 300 {
                // Another success (a start repeated under its name: the first execution).
                let mut other = responses[&r.ok.to_string()].clone();
                other["description"] = json!("OK, nothing new done (a repeat)");
                responses.insert(code.to_string(), other);
                continue;
            }
            responses.insert(
                code.to_string(),
                json!({"description": reason(code), "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
            );
        }
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": Value::Object(responses),
        });
        match r.action {
            Some(a) => {
                op["security"] = json!([{"bearer": []}, {"session": []}]);
                op["x-careline-permission"] =
                    json!({"action": a.as_str(), "allowed": roles_for(a)});
            }
            None => op["security"] = json!([]),
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({"required": true, "content": {body_media(body): {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let text = json!({"type": "string"});
    let opt_text = json!({"type": ["string", "null"]});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Careline API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Patients, recordings, workflows, access and audit. Every request needs a bearer token (careline user add) or a browser session (POST /login); the one permission table decides, deny by default; every PHI access is audited. Errors are problem details (RFC 9457).",
        },
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::access::SESSION_COOKIE},
            },
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
                    "type": text, "title": text, "status": {"type": "integer"}, "detail": text}},
                "Object": {"type": "object"},
                "Sdp": {"type": "string", "description": "an SDP offer or answer (RFC 8866), as WebRTC writes them"},
                "TrickleIce": {"type": "string", "description": "an SDP fragment with ICE candidates (RFC 8840)"},
                "Me": {"type": "object", "required": ["name", "role", "via"], "properties": {
                    "name": text, "role": text, "via": {"enum": ["token", "session"]}}},
                "Lookup": {"type": "object", "required": ["result"], "properties": {
                    "result": {"enum": ["found", "ambiguous", "not_found", "matches"]}}},
                "Contacts": {"type": "object", "required": ["patient_id", "contacts"], "properties": {
                    "patient_id": text, "contacts": {"type": "array", "items": {"$ref": "#/components/schemas/ContactRecord"}}}},
                "NewContact": {"type": "object", "required": ["channel"], "additionalProperties": false, "properties": {
                    "channel": {"type": "string", "minLength": 1, "maxLength": 32},
                    "duration_secs": {"type": ["integer", "null"], "minimum": 0},
                    "reason": {"type": ["string", "null"], "maxLength": 1000},
                    "outcome": {"type": ["string", "null"], "maxLength": 1000},
                    "notes": {"type": ["string", "null"], "maxLength": 16384},
                    "recording_id": {"type": ["string", "null"], "maxLength": 128},
                    "call_id": {"type": ["string", "null"], "maxLength": 256}}},
                "ContactRecord": {"type": "object", "required": ["id", "time", "channel"], "properties": {
                    "id": text, "time": {"type": "string", "format": "date-time"}, "channel": text,
                    "duration_secs": {"type": "integer"}, "reason": text, "outcome": text, "notes": text,
                    "recording_id": text, "call_id": text, "user": text}},
                "BreakGlass": {"type": "object", "required": ["reason"], "additionalProperties": false, "properties": {
                    "reason": {"type": "string", "minLength": 4, "maxLength": 2000}}},
                "BreakGlassGrant": {"type": "object", "required": ["patient_id", "break_glass", "expires"], "properties": {
                    "patient_id": text, "break_glass": {"type": "boolean"}, "expires": text}},
                "ActiveContact": {"type": "object", "required": ["patient_id"], "additionalProperties": false, "properties": {
                    "patient_id": text, "user": {"type": ["string", "null"], "description": "the handling user; the caller when absent"}}},
                "NewUser": {"type": "object", "required": ["name", "role"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"},
                    "role": {"enum": ["admin", "supervisor", "clinician", "agent", "auditor", "service"]},
                    "password": {"type": ["string", "null"], "minLength": 12, "maxLength": 256}}},
                "NewToken": {"type": "object", "required": ["token"], "properties": {
                    "token": text, "id": text, "name": text, "role": text, "expires": opt_text}},
                "Users": {"type": "object", "required": ["users"], "properties": {"users": {"type": "array", "items": {
                    "type": "object", "required": ["name", "role", "created"], "properties": {
                        "name": text, "role": text, "created": text, "disabled": opt_text, "password": {"type": "boolean"}}}}}},
                "Tokens": {"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {
                    "type": "object", "required": ["id", "user", "created", "active"], "properties": {
                        "id": text, "user": text, "created": text, "expires": opt_text, "revoked": opt_text,
                        "last_used": opt_text, "active": {"type": "boolean"}}}}}},
                "ImportReport": {"type": "object", "required": ["patients", "resources"], "properties": {
                    "patients": {"type": "array", "items": text}, "resources": {"type": "integer"}, "by_type": {"type": "object"}}},
                "AuditLines": {"type": "string", "description": "one JSON audit entry per line (or with format=fhir, a FHIR Bundle of AuditEvent as application/fhir+json)"},
                "CallRecordsCsv": {"type": "string", "description": "the call records as CSV (RFC 4180), a header row first (format=csv)"},
                "Recordings": {"type": "object", "required": ["recordings"], "properties": {
                    "recordings": {"type": "array", "items": {"$ref": "#/components/schemas/Recording"}}}},
                "Recording": {"type": "object", "required": ["id", "call_id", "state"], "properties": {
                    "id": text, "call_id": text, "patient_id": opt_text, "state": text}},
                "RecordingControl": {"type": "object", "required": ["call_id", "recording"], "properties": {
                    "call_id": text, "recording": text}},
                "Audio": {"type": "string", "format": "binary"},
                "Bundle": {"type": "object", "required": ["resourceType", "type"], "description": "FHIR R4 Bundle (type transaction, batch or collection)", "properties": {
                    "resourceType": {"const": "Bundle"}, "type": {"enum": ["transaction", "batch", "collection"]},
                    "entry": {"type": "array"}}},
            },
        },
    });
    // Apart: one json! this size passes the macro's recursion limit.
    let workflows = json!({
                "NewCall": {"type": "object", "required": ["to"], "additionalProperties": false, "properties": {
                    "to": {"type": "string", "pattern": "^[+]?[0-9 ().-]{1,48}$", "description": "the number to call"},
                    "flow": {"type": ["string", "null"], "minLength": 1}, "trunk": {"type": ["string", "null"], "minLength": 1},
                    "attributes": {"type": "object", "maxProperties": 32, "additionalProperties": {"type": "string", "maxLength": 1024}}}},
                "PlacedCall": {"type": "object", "required": ["call_id"], "properties": {"call_id": text}},
                "PlacedCallState": {"type": "object", "required": ["call_id", "state"], "properties": {
                    "call_id": text, "state": {"enum": ["dialing", "ringing", "answered", "ended"]},
                    "outcome": text, "cause": text, "talk_time_secs": {"type": "integer"}}},
                "Workflows": {"type": "object", "required": ["workflows"], "properties": {
                    "workflows": {"type": "array", "items": text}}},
                "CareTasks": {"type": "object", "required": ["care_tasks"], "properties": {
                    "care_tasks": {"type": "array", "items": {"type": "object", "required": ["id", "execution_id", "kind", "status", "created", "detail"], "properties": {
                        "id": text, "execution_id": text, "patient_id": opt_text, "kind": {"enum": ["physician", "care_team"]},
                        "urgency": opt_text, "status": {"enum": ["OPEN", "DONE"]}, "created": text, "done": text, "done_by": text,
                        "outcome": {"enum": ["approved", "declined"]},
                        "detail": {"description": "the task input the workflow gave"}}}}}},
                "WorkflowExecutions": {"type": "object", "required": ["executions"], "properties": {
                    "executions": {"type": "array", "items": {"$ref": "#/components/schemas/WorkflowExecution"}}}},
                "WorkflowInput": {"type": "object", "description": "the execution's input, as the state machine reads it", "properties": {
                    "patient_id": {"type": "string", "minLength": 1}}},
                "WorkflowExecution": {"type": "object", "required": ["id", "workflow", "status", "state", "started", "updated"], "properties": {
                    "id": text, "workflow": text, "status": {"enum": ["RUNNING", "SUCCEEDED", "FAILED", "ABORTED"]}, "state": text,
                    "started": text, "updated": text, "patient_id": opt_text, "wakes": text,
                    "outcome": {"description": "the output, or {error, cause}"},
                    "history": {"type": "array", "items": {"type": "object", "required": ["seq", "time", "kind"], "properties": {
                        "seq": {"type": "integer"}, "time": text, "kind": text, "state": text}}}}},
    });
    let refills = json!({
        "Notifications": {"type": "object", "required": ["notifications"], "properties": {
            "notifications": {"type": "array", "items": {"type": "object", "required": ["id", "channel", "target", "status", "attempts", "created"], "properties": {
                "id": {"type": "string"}, "channel": {"enum": ["webhook", "mail", "fhir"]},
                "target": {"type": "array", "items": {"type": "string"}},
                "status": {"enum": ["pending", "sent", "failed"]}, "attempts": {"type": "integer"},
                "created": {"type": "string"}, "sent": {"type": "string"}, "last_error": {"type": "string"}}}}}},
        "RefillDecision": {"type": "object", "required": ["decision"], "additionalProperties": false, "properties": {
            "decision": {"type": "string", "enum": ["approved", "declined"]}}},
        "RefillDecided": {"type": "object", "required": ["care_task", "decision", "orders", "pharmacy"], "properties": {
            "care_task": {"type": "string"},
            "decision": {"type": "string", "enum": ["approved", "declined"]},
            "orders": {"type": "array", "items": {"type": "object", "description": "a FHIR MedicationRequest"}},
            "pharmacy": {"type": "string", "enum": ["queued", "none"]}}},
    });
    let routing = json!({
        "CallRecords": {"type": "object", "required": ["records"], "properties": {
            "records": {"type": "array", "items": {"type": "object", "required": ["call_id", "started", "ended", "duration_secs", "direction", "channel", "end_cause", "identified", "queue_stays", "recordings"], "properties": {
                "call_id": {"type": "string"}, "started": {"type": "string"}, "ended": {"type": "string"},
                "duration_secs": {"type": "integer"}, "direction": {"enum": ["inbound", "outbound"]},
                "channel": {"enum": ["phone", "browser"]}, "end_cause": {"type": "string"},
                "identified": {"type": "boolean"}, "queue": {"type": ["string", "null"]},
                "agent": {"type": ["string", "null"]}, "wait_secs": {"type": ["integer", "null"]},
                "queue_stays": {"type": "array", "items": {"type": "object", "required": ["queue", "enqueued_at"], "properties": {
                    "queue": {"type": "string"}, "enqueued_at": {"type": "string"},
                    "answered_at": {"type": "string"}, "agent": {"type": "string"}}}},
                "recordings": {"type": "array", "items": {"type": "string"}},
                "disposition": {"type": ["string", "null"]}, "wrapped_up_by": {"type": ["string", "null"]}}}}}},
        "NewRoom": {"type": "object", "required": ["title"], "additionalProperties": false, "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$"},
            "scheduled_at": {"type": ["string", "null"], "format": "date-time"},
            "patient_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9.-]+$"},
            "waiting_room": {"type": ["boolean", "null"]},
            "max_participants": {"type": ["integer", "null"], "minimum": 2, "maximum": 16},
            "host_leaves": {"type": ["string", "null"], "enum": ["hand_over", "end", null]},
            "invitees": {"type": "array", "maxItems": 15, "items": {"$ref": "#/components/schemas/NewInvitee"}}}},
        "CallOut": {"type": "object", "required": ["number", "label", "role"], "additionalProperties": false, "properties": {
            "number": {"type": "string", "pattern": "^[+]?[0-9 ().-]{1,48}$", "description": "the number to call"},
            "label": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$"},
            "role": {"enum": ["patient", "guest"]}}},
        "CallMe": {"type": "object", "required": ["number"], "additionalProperties": false, "properties": {
            "number": {"type": "string", "pattern": "^[+]?[0-9 ().-]{1,48}$", "description": "your phone number"}}},
        "NewInvitee": {"type": "object", "required": ["label", "role"], "additionalProperties": false, "properties": {
            "label": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$"},
            "role": {"enum": ["patient", "guest"]}}},
        "Room": {"type": "object", "required": ["id", "title", "host", "scheduled_at", "waiting_room", "max_participants", "host_leaves", "join_url", "invitees"], "properties": {
            "id": {"type": "string"}, "title": {"type": "string"}, "host": {"type": "string"},
            "patient_id": {"type": ["string", "null"]}, "scheduled_at": {"type": "string"},
            "waiting_room": {"type": "boolean"}, "max_participants": {"type": "integer"},
            "host_leaves": {"enum": ["hand_over", "end"]}, "ended_at": {"type": ["string", "null"]},
            "end_reason": {"type": ["string", "null"]}, "join_url": {"type": "string"},
            "invitees": {"type": "array", "items": {"type": "object", "required": ["id", "label", "role", "expires", "revoked"], "properties": {
                "id": {"type": "string"}, "label": {"type": "string"}, "role": {"enum": ["patient", "guest"]},
                "expires": {"type": "string"}, "revoked": {"type": "boolean"}, "link": {"type": ["string", "null"]},
                "pin": {"type": ["string", "null"], "pattern": "^[0-9]{9}$", "description": "the visit PIN to key in on the dial-in line (docs/rooms.md); null once withdrawn"}}}},
            "dial_in": {"type": ["string", "null"], "description": "the number to call with the PIN ([rooms] dial_in_number)"},
            "live": {"type": ["object", "null"]}}},
        "WrapUp": {"type": "object", "required": ["code"], "additionalProperties": false, "properties": {
            "code": {"type": "string", "maxLength": 64}, "notes": {"type": ["string", "null"]}}},
    });
    for more in [workflows, refills, routing] {
        if let (Some(all), Value::Object(more)) =
            (doc["components"]["schemas"].as_object_mut(), more)
        {
            all.extend(more);
        }
    }
    doc
}
