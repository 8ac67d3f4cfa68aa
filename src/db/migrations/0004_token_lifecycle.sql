-- Token lifecycle and disabled users: a token expires, can be revoked, and notes when it was
-- last used; a disabled user signs in with nothing (tokens and sessions stop working, the
-- account and its history stay).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
