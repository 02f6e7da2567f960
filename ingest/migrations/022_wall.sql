-- The control room's wall (issue 14): view-only tokens, one area each. An admin makes one (shown
-- once; only its SHA-256 is kept: it is 256 random bits, so a fast hash reveals nothing), it may
-- expire or not, and it is revoked rather than deleted so the audit trail keeps its name.
CREATE TABLE wall_tokens (
    id           bigserial PRIMARY KEY,
    area_id      text NOT NULL REFERENCES territory (id),
    name         text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    revoked_by   text,
    last_used_at timestamptz,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX wall_tokens_area ON wall_tokens (area_id);
