-- Care-coordination workflow executions (issue 22). Every state transition of an execution
-- is one transaction over these tables: its snapshot, the history it recorded and the task
-- invocations it asked for are stored together, so a process killed at any point resumes
-- with no step lost and every invocation under the idempotency key it was first given.

-- Each definition text an execution ran under: an execution keeps its definition when the
-- file is edited later (as Step Functions pins an execution to its version).
CREATE TABLE workflow_definitions (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    added_at BIGINT NOT NULL
);

CREATE TABLE workflow_executions (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES workflow_definitions (digest),
    -- RUNNING, SUCCEEDED or FAILED
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    -- Sealed: the execution's data holds the patient's.
    snapshot TEXT NOT NULL,
    -- The execution's timer (a Wait, a retry's back-off): waits of days live here.
    wake_at BIGINT,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    transitions BIGINT NOT NULL,
    -- Sealed outcome once finished: the output, or the error and cause.
    outcome TEXT,
    -- The patient the input named, for the audit trail and access rules (NULL if none).
    patient_id TEXT,
    -- A keyed digest (blind index) of the input: a start repeated under the same name is
    -- recognised as the same start only with the same input, which stays sealed.
    input_digest TEXT NOT NULL
);
CREATE INDEX workflow_executions_due ON workflow_executions (status, wake_at);

CREATE TABLE workflow_history (
    execution_id TEXT NOT NULL REFERENCES workflow_executions (id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT,
    PRIMARY KEY (execution_id, seq)
);

-- Task invocations asked for and not yet answered (the outbox): carried out again after a
-- restart under the same key; deleted in the transaction that applies their answer.
CREATE TABLE workflow_tasks (
    idempotency_key TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES workflow_executions (id),
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    resource TEXT NOT NULL,
    -- Sealed task input.
    input TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    -- The state's TimeoutSeconds (NULL: [workflows] task_timeout_secs).
    timeout_secs BIGINT
);
CREATE INDEX workflow_tasks_execution ON workflow_tasks (execution_id);

-- The care team's work list: what a workflow's built-in notification tasks ask of a
-- physician or the care team. One row per task invocation (its idempotency key), however
-- often the invocation is delivered.
CREATE TABLE care_tasks (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    execution_id TEXT NOT NULL,
    patient_id TEXT,
    -- physician or care_team
    kind TEXT NOT NULL,
    -- The task input's urgency (HIGH, MEDIUM, ...), if any.
    urgency TEXT,
    -- Sealed: the task input (reason, patient data).
    detail TEXT NOT NULL,
    -- OPEN or DONE
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    done_at BIGINT,
    done_by TEXT
);
CREATE INDEX care_tasks_status ON care_tasks (status, created_at);
