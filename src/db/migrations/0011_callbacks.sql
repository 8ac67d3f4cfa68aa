-- Queued callbacks (issue 23): a caller who asked to be called back keeps their place in the
-- queue, across restarts. The number to call is PHI: sealed with the data keys (context
-- `callback:<id>`), and so is the patient the IVR identified (`callback-patient:<id>`), whose
-- record pops up for the agent who calls back. Times are epoch milliseconds.
--   status: queued (waits for its turn), dialing (an agent took it and the patient is being
--   called), reached (the patient answered), given_up (every attempt failed, or cancelled).
CREATE TABLE callbacks (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    number TEXT NOT NULL,
    priority BIGINT NOT NULL,
    time_adjustment_ms BIGINT NOT NULL,
    since_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    retry_delay_secs BIGINT NOT NULL,
    flow TEXT,
    language TEXT,
    patient TEXT,
    origin_call TEXT NOT NULL,
    status TEXT NOT NULL,
    last_cause TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX callbacks_status ON callbacks (status);
