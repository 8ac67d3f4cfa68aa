-- Which patient a call (and each recording made on it) is about: the basis of patient-scoped
-- access to recordings (a clinician opens a recording only of a patient they are on a call with,
-- or after break-glass) and of the patient id in recording audit entries. Only opaque ids: the
-- SIP Call-ID, the patient's resource id, the recording id; nothing that identifies a person.
-- `recording_id` is '' for a call-level link (PostgreSQL allows no NULL in a primary key).
CREATE TABLE call_patients (
    call_id TEXT NOT NULL,
    recording_id TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (call_id, recording_id)
);
CREATE INDEX call_patients_recording ON call_patients (recording_id);
CREATE INDEX call_patients_patient ON call_patients (patient_id, linked_at);
