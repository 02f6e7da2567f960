-- Territory, registry, presence, time series and rejected messages.
-- Runs on plain PostgreSQL 15+; 001_foundation.timescale.sql adds hypertables when TimescaleDB is there.

CREATE EXTENSION IF NOT EXISTS ltree;

-- The territory tree: city > district > subdistrict > community > grid.
-- `path` makes "everything under X" one indexed query: WHERE path <@ 'c.d.s'.
CREATE TYPE territory_level AS ENUM ('city', 'district', 'subdistrict', 'community', 'grid');

CREATE TABLE territory (
    id        text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_]{1,64}$'),
    parent_id text REFERENCES territory (id),
    level     territory_level NOT NULL,
    name      text NOT NULL,
    path      ltree NOT NULL UNIQUE,
    CHECK ((level = 'city') = (parent_id IS NULL))
);
CREATE INDEX territory_path_gist ON territory USING gist (path);
CREATE INDEX territory_parent ON territory (parent_id);

-- Venues: the sites edge nodes sit in. Opening hours are per weekday ("mon": [["08:00","20:00"]]).
CREATE TYPE venue_kind AS ENUM (
    'city_centre', 'cluster_centre', 'community_centre', 'grid_station', 'building_corner',
    'self_service_station', 'shelter', 'estate'
);

CREATE TABLE venues (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    grid_id       text NOT NULL REFERENCES territory (id),
    name          text NOT NULL,
    kind          venue_kind NOT NULL,
    capacity      integer CHECK (capacity IS NULL OR capacity > 0),
    is_shelter    boolean NOT NULL DEFAULT false,
    open_24h      boolean NOT NULL DEFAULT false,
    opening_hours jsonb NOT NULL DEFAULT '{}'::jsonb,
    timezone      text NOT NULL DEFAULT 'Asia/Shanghai',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX venues_grid ON venues (grid_id);

-- Edge nodes: one broker account each. Only the Mosquitto-format hash of the secret is kept.
CREATE TABLE edge_nodes (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    venue_id      text NOT NULL REFERENCES venues (id),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX edge_nodes_venue ON edge_nodes (venue_id);

CREATE TYPE device_kind AS ENUM ('door', 'counter', 'camera', 'speaker');

-- Devices: ids are unique platform-wide; a message about a device is accepted only from its node.
CREATE TABLE devices (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    node_id    text NOT NULL REFERENCES edge_nodes (id),
    kind       device_kind NOT NULL,
    name       text NOT NULL DEFAULT '',
    model      text,
    zone       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_node ON devices (node_id);

-- Presence, following the Sparkplug B idea: a death counts only if its bdseq matches the birth.
CREATE TABLE node_presence (
    node_id    text PRIMARY KEY REFERENCES edge_nodes (id),
    online     boolean NOT NULL,
    bdseq      bigint NOT NULL,
    birth_ts   timestamptz,
    death_ts   timestamptz,
    last_seen  timestamptz NOT NULL,
    software   text NOT NULL DEFAULT '',
    inventory  jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_status (
    device_id  text PRIMARY KEY REFERENCES devices (id),
    online     boolean NOT NULL,
    last_seen  timestamptz NOT NULL,
    last_seq   bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The newest message of each type per device, as received (its JSON payload).
CREATE TABLE device_latest (
    device_id text NOT NULL REFERENCES devices (id),
    type      text NOT NULL,
    ts        timestamptz NOT NULL,
    id        uuid NOT NULL,
    payload   jsonb NOT NULL,
    PRIMARY KEY (device_id, type)
);

-- Time series. The primary key (id, ts) makes redelivery harmless (the id is made at the edge)
-- and includes the time column, as TimescaleDB requires of unique indexes on hypertables.
CREATE TABLE presence_events (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL CHECK (type IN ('node.birth', 'node.death')),
    bdseq       bigint NOT NULL,
    stale       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id, ts)
);
CREATE INDEX presence_events_node_ts ON presence_events (node_id, ts DESC);

CREATE TABLE door_events (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL CHECK (type IN ('door.access', 'door.forced', 'door.held_open', 'door.state')),
    result      text,
    credential  text,
    direction   text,
    reason      text,
    open_s      double precision,
    is_open     boolean,
    locked      boolean,
    mode        text,
    PRIMARY KEY (id, ts)
);
CREATE INDEX door_events_device_ts ON door_events (device_id, ts DESC);

CREATE TABLE occupancy (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    zone        text NOT NULL,
    count       integer NOT NULL,
    entered     integer NOT NULL,
    exited      integer NOT NULL,
    PRIMARY KEY (id, ts)
);
CREATE INDEX occupancy_device_ts ON occupancy (device_id, ts DESC);

CREATE TABLE camera_alerts (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    alert_id    uuid NOT NULL,
    phase       text NOT NULL,
    kind        text NOT NULL,
    zone        text,
    score       double precision NOT NULL,
    objects     integer,
    snapshot    text,
    PRIMARY KEY (id, ts)
);
CREATE INDEX camera_alerts_device_ts ON camera_alerts (device_id, ts DESC);
CREATE INDEX camera_alerts_alert ON camera_alerts (alert_id);

CREATE TABLE speaker_status (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    online      boolean NOT NULL,
    volume      integer NOT NULL,
    playing     boolean NOT NULL,
    clip        text,
    fault       text,
    PRIMARY KEY (id, ts)
);
CREATE INDEX speaker_status_device_ts ON speaker_status (device_id, ts DESC);

CREATE TABLE command_results (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    command_id  uuid NOT NULL,
    status      text NOT NULL,
    detail      text,
    PRIMARY KEY (id, ts)
);
CREATE INDEX command_results_command ON command_results (command_id);

-- What could not be stored, with the reason and the raw bytes (capped). The same bytes on the
-- same topic are one row with a count, so a redelivery or a device repeating itself cannot flood it.
CREATE TABLE rejected_messages (
    id           bigserial PRIMARY KEY,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    occurrences  integer NOT NULL DEFAULT 1,
    topic        text NOT NULL,
    node_id      text,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload      bytea NOT NULL,
    payload_size integer NOT NULL,
    digest       bytea NOT NULL,
    UNIQUE (topic, digest)
);
CREATE INDEX rejected_messages_last_seen ON rejected_messages (last_seen DESC);
CREATE INDEX rejected_messages_reason ON rejected_messages (reason, last_seen DESC);
