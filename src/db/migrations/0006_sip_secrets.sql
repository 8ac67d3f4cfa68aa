-- SIP secrets (issue 20): what a user's phone answers digest challenges with. A digest needs
-- the secret itself, so it is sealed with a data key (context `sip-secret/<user>`), not hashed;
-- it is generated, shown once, and separate from the user's password.
CREATE TABLE sip_secrets (
    user_name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    set_at BIGINT NOT NULL
);
