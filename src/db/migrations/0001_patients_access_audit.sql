-- Patients, users and the audit trail. Written once for both SQLite and PostgreSQL: only TEXT
-- and BIGINT columns, ON CONFLICT upserts, no engine-specific types. Every value that could
-- identify a patient is sealed (AES-256-GCM, see keys.rs) or a keyed HMAC (blind index).

-- FHIR resources, one row each. `patient_id` is the patient compartment the resource belongs
-- to (NULL for shared resources such as Practitioner and Organization).
CREATE TABLE fhir_resources (
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    patient_id TEXT,
    sealed TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (rtype, rid)
);
CREATE INDEX fhir_resources_patient ON fhir_resources (patient_id, rtype);

-- Blind indexes: kind is phone | mrn | dob_name | identifier; digest is an HMAC.
CREATE TABLE fhir_index (
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    PRIMARY KEY (kind, digest, rtype, rid)
);
CREATE INDEX fhir_index_resource ON fhir_index (rtype, rid);

-- Contact history: one row per call or message about a patient (the record itself sealed).
CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    sealed TEXT NOT NULL
);
CREATE INDEX contacts_patient ON contacts (patient_id, started_at);

-- Calls in progress and the patient and user they are about: the basis of "an agent sees a
-- patient only while on a call with that patient". Written by the routing layer.
CREATE TABLE active_contacts (
    call_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
CREATE INDEX active_contacts_user ON active_contacts (user_name, patient_id);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT,
    locked_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- API bearer tokens: `clt_<id>_<secret>`; only an argon2 hash of the secret is kept.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Browser sessions, by the SHA-256 of the cookie value.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

CREATE TABLE login_failures (
    user_name TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (user_name, at);

-- Break-glass grants: a clinician's time-limited access to one patient, with a reason (the
-- reason itself is in the audit trail, sealed).
CREATE TABLE break_glass (
    user_name TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_name, patient_id)
);

-- The audit trail: append-only, each entry's `hash` is an HMAC over its content and the
-- previous entry's hash. `sealed` holds free text that may carry PHI (a break-glass reason).
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    patient_id TEXT,
    detail TEXT NOT NULL,
    sealed TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX audit_log_at ON audit_log (at);

-- Small facts the server keeps between starts (e.g. the hash of the last configuration).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
