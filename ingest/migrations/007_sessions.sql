-- Sessions: the key that signs tokens when none is configured, tokens that count no more, and
-- the moment before which a person's tokens stop counting.

-- One random key, made by the first API process that starts without GRIDWATCH_API_SECRET and
-- read by every replica after it.
CREATE TABLE api_signing_key (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret     text NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Tokens issued before this count no more: moved by a password change and by disabling.
ALTER TABLE people ADD COLUMN valid_after timestamptz NOT NULL DEFAULT '-infinity';

-- Signed-out access tokens and used live tickets, by token id; a row is useless once the token
-- would have expired anyway, and is pruned then.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    person_id  text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

-- The sign-in throttle counts recent failures per address and per person id in the audit log.
CREATE INDEX audit_log_failed_sign_in_client ON audit_log (client, at)
    WHERE action = 'sign_in.failed';
CREATE INDEX audit_log_failed_sign_in_person ON audit_log (person_id, at)
    WHERE action = 'sign_in.failed';
