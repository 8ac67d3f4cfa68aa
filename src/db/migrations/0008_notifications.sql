-- Notices Careline owes someone outside it (issue 22: a new care task told by webhook and
-- e-mail; later room invitations): written before anything is sent, sent by the postman
-- (src/notify), retried with backoff until delivered or refused for good. Keyed by what the
-- notice is about and the channel, so a task invocation delivered again after a crash
-- queues nothing twice; a restart sends what was still owed.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    -- webhook or mail
    channel TEXT NOT NULL,
    -- The webhook's URL, or the recipients' addresses (comma separated).
    target TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- Never patient data: a notice says that something waits, the signed-in pages say what.
    body TEXT NOT NULL,
    -- pending, sent or failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX notifications_due ON notifications (status, next_at);
