-- Ingest groups (issue 17): a province's brokers are partitioned by district, each broker with
-- its own ingest group, all storing into this one database. Each group's workers record here
-- which areas of the territory the group carries (so that two groups never carry one area), when
-- a worker of the group was last heard from, and since when the group's leader has not reached
-- its broker (node-offline timers wait meanwhile, whichever group's leader fires them).
CREATE TABLE ingest_groups (
    name              text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    areas             text[] NOT NULL DEFAULT '{}',  -- territory ids; none: the whole territory
    paths             ltree[] NOT NULL DEFAULT '{}', -- their paths when the group was started
    heartbeat_at      timestamptz NOT NULL DEFAULT now(),
    broker_down_since timestamptz
);

-- Worker slots are numbered per group: each group's broker has its own ingest-0..N accounts.
ALTER TABLE ingest_workers ADD COLUMN ingest_group text NOT NULL DEFAULT 'main';
ALTER TABLE ingest_workers DROP CONSTRAINT ingest_workers_pkey;
ALTER TABLE ingest_workers ADD PRIMARY KEY (ingest_group, client_id);
