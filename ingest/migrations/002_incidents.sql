-- People, rules, incidents, grid tasks, timers, emergencies and platform commands.

CREATE TYPE person_role AS ENUM ('admin', 'operator', 'dispatcher', 'grid_worker', 'department', 'viewer');

-- Everyone who uses the platform, each scoped to a subtree of the territory.
CREATE TABLE people (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name          text NOT NULL,
    role          person_role NOT NULL,
    scope_id      text NOT NULL REFERENCES territory (id),
    phone         text,
    password_hash text,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Who is on duty in a grid, when.
CREATE TABLE duty_roster (
    id        bigserial PRIMARY KEY,
    grid_id   text NOT NULL REFERENCES territory (id),
    person_id text NOT NULL REFERENCES people (id),
    starts    timestamptz NOT NULL,
    ends      timestamptz NOT NULL CHECK (ends > starts)
);
CREATE INDEX duty_roster_grid ON duty_roster (grid_id, starts, ends);

-- Rule settings that differ from the built-in defaults, per venue kind or per venue.
CREATE TABLE rule_overrides (
    id         bigserial PRIMARY KEY,
    venue_kind venue_kind,
    venue_id   text REFERENCES venues (id),
    rule       text NOT NULL,
    settings   jsonb NOT NULL,
    CHECK ((venue_kind IS NULL) <> (venue_id IS NULL)),
    UNIQUE NULLS NOT DISTINCT (venue_kind, venue_id, rule)
);

-- Maintenance: no incidents for a venue or a device between starts and ends.
CREATE TABLE maintenance_windows (
    id         bigserial PRIMARY KEY,
    venue_id   text REFERENCES venues (id),
    device_id  text REFERENCES devices (id),
    starts     timestamptz NOT NULL,
    ends       timestamptz NOT NULL CHECK (ends > starts),
    reason     text NOT NULL DEFAULT '',
    created_by text,
    CHECK ((venue_id IS NULL) <> (device_id IS NULL))
);
CREATE INDEX maintenance_windows_ends ON maintenance_windows (ends);

CREATE TYPE severity AS ENUM ('red', 'yellow', 'green');
CREATE TYPE incident_status AS ENUM ('open', 'acknowledged', 'resolved');

CREATE TABLE incidents (
    id           bigserial PRIMARY KEY,
    dedup_key    text NOT NULL,
    rule         text NOT NULL,
    severity     severity NOT NULL,
    status       incident_status NOT NULL DEFAULT 'open',
    title        text NOT NULL,
    venue_id     text NOT NULL REFERENCES venues (id),
    device_id    text,
    node_id      text,
    grid_id      text NOT NULL REFERENCES territory (id),
    path         ltree NOT NULL,            -- the grid's path: scoping is `path <@ area`
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurrences  integer NOT NULL DEFAULT 1,
    first_seen   timestamptz NOT NULL,      -- device time of the first event
    last_seen    timestamptz NOT NULL,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    resolved_by  text
);
-- One open incident per dedup key, whichever worker raises it.
CREATE UNIQUE INDEX incidents_one_open ON incidents (dedup_key) WHERE status <> 'resolved';
CREATE INDEX incidents_path ON incidents USING gist (path);
CREATE INDEX incidents_opened ON incidents (opened_at DESC);

CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents (id),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,   -- opened, repeated, acknowledged, resolved, task, silenced…
    actor       text NOT NULL,   -- a person id, or 'system'
    note        text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at);

CREATE TYPE task_state AS ENUM (
    'reported', 'dispatched', 'accepted', 'handling', 'feedback', 'checking', 'closed',
    'returned', 'rework', 'suspended'
);

CREATE TABLE tasks (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL UNIQUE REFERENCES incidents (id),
    title           text NOT NULL,
    severity        severity NOT NULL,
    grid_id         text NOT NULL REFERENCES territory (id),
    path            ltree NOT NULL,          -- the grid's path
    level_id        text NOT NULL REFERENCES territory (id),  -- who answers for it now
    state           task_state NOT NULL DEFAULT 'reported',
    suspended_from  task_state,
    assignee        text REFERENCES people (id),
    emergency       boolean NOT NULL DEFAULT false,
    stage_started   timestamptz NOT NULL DEFAULT now(),
    deadline_at     timestamptz,             -- of the current stage; NULL when none runs
    flagged         boolean NOT NULL DEFAULT false,  -- 80% of the deadline passed
    escalations     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
CREATE INDEX tasks_path ON tasks USING gist (path);
CREATE INDEX tasks_assignee ON tasks (assignee, state);
CREATE INDEX tasks_open ON tasks (state) WHERE state <> 'closed';

CREATE TABLE task_events (
    id          bigserial PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES tasks (id),
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,           -- create, dispatch, accept, …, warn, escalate, extend
    from_state  task_state,
    to_state    task_state,
    actor       text NOT NULL,           -- a person id, or 'system'
    reason      text NOT NULL DEFAULT '',
    note        text NOT NULL DEFAULT '',
    evidence    jsonb NOT NULL DEFAULT '[]'::jsonb,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX task_events_task ON task_events (task_id, at);
CREATE INDEX task_events_action ON task_events (action, at);

-- Who must hear about what: escalations and deadline warnings, per territory level.
CREATE TABLE notifications (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    territory_id text NOT NULL REFERENCES territory (id),
    task_id      bigint REFERENCES tasks (id),
    kind         text NOT NULL,
    message      text NOT NULL,
    read_at      timestamptz
);
CREATE INDEX notifications_territory ON notifications (territory_id, at DESC);

-- Durable timers: rules with durations and task deadlines. One row per (kind, key); the leader
-- takes due rows with SKIP LOCKED and deletes them in the transaction that acts on them.
CREATE TABLE timers (
    kind    text NOT NULL,
    key     text NOT NULL,
    due_at  timestamptz NOT NULL,
    data    jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (kind, key)
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE emergencies (
    id           bigserial PRIMARY KEY,
    territory_id text NOT NULL REFERENCES territory (id),
    path         ltree NOT NULL,
    reason       text NOT NULL,
    message      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    started_by   text NOT NULL,
    ended_at     timestamptz,
    ended_by     text
);
CREATE UNIQUE INDEX emergencies_one_active ON emergencies (territory_id) WHERE ended_at IS NULL;

-- Commands the platform sends to devices: queued here, published by the leader, tracked to
-- their result (the edge's command.result).
CREATE TYPE command_state AS ENUM ('queued', 'sent', 'done', 'failed', 'rejected', 'expired');

CREATE TABLE commands (
    id          uuid PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id),
    action      jsonb NOT NULL,
    state       command_state NOT NULL DEFAULT 'queued',
    detail      text,
    issued_by   text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    emergency_id bigint REFERENCES emergencies (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deadline    timestamptz NOT NULL,
    sent_at     timestamptz,
    result_at   timestamptz
);
CREATE INDEX commands_queued ON commands (created_at) WHERE state = 'queued';
CREATE INDEX commands_emergency ON commands (emergency_id);
