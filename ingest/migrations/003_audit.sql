-- Every action taken through the API: who, what, when, from where.
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    person_id text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL DEFAULT '',
    detail    jsonb NOT NULL DEFAULT '{}'::jsonb,
    client    text NOT NULL DEFAULT ''    -- the client's address
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_person ON audit_log (person_id, at DESC);
