-- A call's link to its patient outlives the call by a bounded wrap-up time (the handling user
-- finishes notes): `ends_at` is NULL while the call lasts, then the time the link ends.
ALTER TABLE active_contacts ADD COLUMN ends_at BIGINT;
