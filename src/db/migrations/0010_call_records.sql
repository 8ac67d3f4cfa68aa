-- Call records (issue 23): one per answered call, written when it ends, for reports. Names
-- no patient and no caller number (PHI): whether the IVR identified the caller, not whom.
-- Times are epoch milliseconds; queue_stays and recordings are JSON arrays.
CREATE TABLE call_records (
    call_id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    direction TEXT NOT NULL,
    channel TEXT NOT NULL,
    end_cause TEXT NOT NULL,
    identified BIGINT NOT NULL,
    queue TEXT,
    agent TEXT,
    queue_stays TEXT NOT NULL,
    recordings TEXT NOT NULL
);
CREATE INDEX call_records_started ON call_records (started_at);

-- The outcome the agent chose at wrap-up (a code from [routing] wrap_up_codes), once per
-- call; apart from call_records because a wrap-up may come before the call has ended.
CREATE TABLE call_dispositions (
    call_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    agent TEXT NOT NULL,
    at BIGINT NOT NULL
);
