//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, built from [`ROUTES`], the list
//! of every guarded and public `/api/v1` route with the permission-table action guarding it.

use serde_json::{Map, Value, json};

use crate::auth::Action;
use crate::auth::permission::{PERMISSIONS, Scope};

pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: public (no credentials).
    pub action: Option<Action>,
    pub summary: &'static str,
    /// Path parameters (besides those in braces, which are listed automatically) and query
    /// parameters, as (name, description).
    pub query: &'static [(&'static str, &'static str)],
    pub body: Option<&'static str>,
}

/// Every `/api/v1` route. The role × endpoint matrix test walks this list.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/api/v1/me",
        action: Some(Action::SelfRead),
        summary: "Who the credentials belong to",
        query: &[],
        body: None,
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
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/{id}/summary",
        action: Some(Action::PatientSummary),
        summary: "Screen-pop summary: demographics, allergies, active medications and conditions, care plans, care team, coverage, upcoming appointments, last contacts, clinical alerts",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/{id}/contacts",
        action: Some(Action::PatientSummary),
        summary: "Contact history, newest first",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/patients/{id}/contacts",
        action: Some(Action::ContactAppend),
        summary: "Append a contact record {channel, time?, duration_secs?, reason?, outcome?, notes?, recording_id?, call_id?}",
        query: &[],
        body: Some("ContactRecord"),
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/patients/{id}/bundle",
        action: Some(Action::PatientExport),
        summary: "The patient's record as a FHIR R4 collection Bundle",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/patients/{id}/break-glass",
        action: Some(Action::BreakGlass),
        summary: "Declare emergency access to a patient with a reason {reason}; flagged in the audit trail",
        query: &[],
        body: Some("BreakGlass"),
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/fhir",
        action: Some(Action::PatientImport),
        summary: "Import a FHIR R4 transaction or collection Bundle (atomic, idempotent)",
        query: &[],
        body: Some("Bundle"),
    },
    RouteDoc {
        method: "put",
        path: "/api/v1/calls/{call_id}/contact",
        action: Some(Action::ActiveContactSet),
        summary: "Associate a live call with a patient and the user handling it {patient_id, user}",
        query: &[],
        body: Some("ActiveContact"),
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/calls/{call_id}/contact",
        action: Some(Action::ActiveContactSet),
        summary: "End a live call's association",
        query: &[],
        body: None,
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
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users",
        action: Some(Action::UserManage),
        summary: "Create a user {name, role, password?}; returns a bearer token shown once",
        query: &[],
        body: Some("NewUser"),
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/users",
        action: Some(Action::UserManage),
        summary: "Every user: name, role, created, disabled, whether a password is set",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users/{name}/disable",
        action: Some(Action::UserManage),
        summary: "Disable a user: their tokens and sessions stop working at once, sign-in fails; the account and its history stay (answers 204; 409 for one's own account)",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users/{name}/enable",
        action: Some(Action::UserManage),
        summary: "Enable a disabled user again (answers 204)",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/users/{name}/tokens",
        action: Some(Action::OwnTokens),
        summary: "A user's API tokens (id, created, expires, revoked, last used; never the secret). One's own; admins anyone's.",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/users/{name}/tokens",
        action: Some(Action::OwnTokens),
        summary: "Issue a new API token (shown once; expires after [auth] token_lifetime_days). Rotation: issue, switch, then revoke the old one. One's own; admins anyone's.",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/tokens/{id}",
        action: Some(Action::OwnTokens),
        summary: "Revoke an API token at once (answers 204). One's own; admins anyone's.",
        query: &[],
        body: None,
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
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/recordings/{id}",
        action: Some(Action::RecordingRead),
        summary: "One recording's metadata: call, patient, start, end, duration, participants, format, state, size, SHA-256, key id; a deleted recording says when and why",
        query: &[],
        body: None,
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
    },
    RouteDoc {
        method: "delete",
        path: "/api/v1/recordings/{id}",
        action: Some(Action::RecordingDelete),
        summary: "Delete a recording's audio (answers 204); the index keeps the deletion, who and why, like a retention deletion; 409 while it is still being recorded or uploaded",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/calls/{call_id}/recording/{action}",
        action: Some(Action::RecordingControl),
        summary: "Control a live call's recording; action is start, pause, resume or stop (answers 202; 404 when the call is not live). A pause is not stored; start after stop makes a new recording.",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/openapi.json",
        action: None,
        summary: "This document",
        query: &[],
        body: None,
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

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(r.query.iter().map(|(name, desc)| {
            json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "string"}})
        }));
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "401": {"description": "no or invalid credentials"},
                "403": {"description": "denied by the permission table (reason in the body)"},
            },
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
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Careline API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Patients, recordings, access and audit. Every request needs a bearer token (careline user add) or a browser session (POST /login); the one permission table decides, deny by default; every PHI access is audited.",
        },
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::access::SESSION_COOKIE},
            },
            "schemas": {
                "ContactRecord": {"type": "object", "required": ["channel"], "properties": {
                    "channel": {"type": "string"}, "time": {"type": "string", "format": "date-time"},
                    "duration_secs": {"type": "integer"}, "reason": {"type": "string"},
                    "outcome": {"type": "string"}, "notes": {"type": "string"},
                    "recording_id": {"type": "string"}, "call_id": {"type": "string"}}},
                "BreakGlass": {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}},
                "ActiveContact": {"type": "object", "required": ["patient_id", "user"], "properties": {
                    "patient_id": {"type": "string"}, "user": {"type": "string"}}},
                "NewUser": {"type": "object", "required": ["name", "role"], "properties": {
                    "name": {"type": "string"},
                    "role": {"enum": ["admin", "supervisor", "clinician", "agent", "auditor", "service"]},
                    "password": {"type": "string", "minLength": 12}}},
                "Bundle": {"type": "object", "description": "FHIR R4 Bundle (type transaction, batch or collection)"},
            },
        },
    })
}
