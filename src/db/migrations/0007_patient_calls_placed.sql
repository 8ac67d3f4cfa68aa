-- Calls the CallPatient workflow task placed (issue 22), one per task invocation: keyed by the
-- invocation's idempotency key (execution, state, attempt), written before the INVITE goes
-- out, so an invocation delivered again after a crash never calls the patient a second time.
-- The row also counts a patient's calls per day (`max_calls_per_day`).
CREATE TABLE patient_calls_placed (
    idempotency_key TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    -- NULL while the call runs (or when the process stopped during it).
    outcome TEXT,
    -- Sealed: the task's answer (the flow's answers are the patient's).
    result TEXT
);
CREATE INDEX patient_calls_placed_patient ON patient_calls_placed (patient_id, placed_at);
