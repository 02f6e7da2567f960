-- Ordering and trust of what nodes report (the hardening issue):
-- * the latest state of a device is ordered by its timestamp, then the node's sequence, so a
--   message arriving late cannot stand for the present;
-- * a node whose clock runs ahead is recorded (its messages are taken as sent when received);
-- * a birth dated in the future, stored before this check existed, no longer outranks every
--   real birth that follows it.
ALTER TABLE device_latest ADD COLUMN seq bigint;
ALTER TABLE node_presence ADD COLUMN clock_ahead_s double precision;
ALTER TABLE node_presence ADD COLUMN clock_checked_at timestamptz;
UPDATE node_presence SET birth_ts = now() WHERE birth_ts > now() + interval '5 minutes';

-- Rejected messages are counted per node, so one node cannot fill the table (a cap per node),
-- and old rows are pruned by the ingest leader.
CREATE INDEX rejected_messages_node ON rejected_messages (node_id, last_seen DESC);

-- The platform's own outages (its broker unreachable) are incidents of the whole territory for
-- the operators, tied to no venue and opening no task.
ALTER TABLE incidents ALTER COLUMN venue_id DROP NOT NULL;
