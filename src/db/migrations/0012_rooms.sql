-- Telehealth rooms (issue 24). A room is a scheduled visit run by a clinician (`host`, a user
-- name); `patient` is the patient it is about (a patient id, sealed: context
-- `room-patient:<id>`), and the title is sealed too (`room-title:<id>`): both may say who is
-- being seen for what. Times are epoch milliseconds.
CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    host TEXT NOT NULL,
    patient TEXT,
    scheduled_at BIGINT NOT NULL,
    waiting_room BIGINT NOT NULL,
    max_participants BIGINT NOT NULL,
    host_leaves TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
-- Who is invited: each invitee has their own signed link (see rooms::link), which names the
-- invitee. The label (a name, "Interpreter") is sealed: `room-invitee:<room>:<id>`.
CREATE TABLE room_invitees (
    room_id TEXT NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, id)
);
