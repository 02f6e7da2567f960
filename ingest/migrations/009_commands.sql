-- Commands that must reach their door (locks, lockdowns, an emergency's shelter unlocks) are
-- re-published until the device answers; a newer door command supersedes older unanswered
-- ones; one undelivered too long raises an incident (alarmed_at).
ALTER TABLE commands
    ADD COLUMN must_deliver  boolean NOT NULL DEFAULT false,
    ADD COLUMN attempts      integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_at      timestamptz,
    ADD COLUMN superseded_by uuid REFERENCES commands (id),
    ADD COLUMN alarmed_at    timestamptz;
-- The leader's retry and alarm scans, and superseding at queue time.
CREATE INDEX commands_undelivered ON commands (created_at)
    WHERE must_deliver AND superseded_by IS NULL AND state IN ('queued', 'sent', 'expired');
CREATE INDEX commands_unanswered ON commands (device_id)
    WHERE state IN ('queued', 'sent');

-- Emergencies a rule proposed, waiting for a person to confirm them: a rule alone must not
-- open every shelter of an area on one reading. Each is shown as a red incident (incident_id);
-- source_id is the incident of the rule that proposed it.
CREATE TABLE emergency_proposals (
    id           bigserial PRIMARY KEY,
    territory_id text NOT NULL REFERENCES territory (id),
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    source_id    bigint NOT NULL REFERENCES incidents (id),
    rule         text NOT NULL,
    reason       text NOT NULL,
    proposed_at  timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz,
    decided_by   text,
    confirmed    boolean,
    emergency_id bigint REFERENCES emergencies (id)
);
CREATE UNIQUE INDEX emergency_proposals_one_open ON emergency_proposals (territory_id)
    WHERE decided_at IS NULL;
