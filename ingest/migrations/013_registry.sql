-- The registry as data (issue 12): what a registry file describes, with a version per record
-- (a stale update is refused), disabled instead of deleted (history stays), node secrets that
-- the broker reconcile can set, one-time enrolment codes, per-node configuration versions and
-- the broker's refused connects.

-- Every registry record carries a version, bumped by this trigger on every real change, so a
-- writer cannot forget it: an update made against an older version is a conflict.
CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

-- Territory: a boundary polygon (GeoJSON geometry) for maps; disabled areas keep their history.
ALTER TABLE territory
    ADD COLUMN boundary   jsonb,
    ADD COLUMN disabled   boolean NOT NULL DEFAULT false,
    ADD COLUMN version    integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Venues: where they are and who runs them.
ALTER TABLE venues
    ADD COLUMN address    text NOT NULL DEFAULT '',
    ADD COLUMN latitude   double precision CHECK (latitude BETWEEN -90 AND 90),
    ADD COLUMN longitude  double precision CHECK (longitude BETWEEN -180 AND 180),
    ADD COLUMN unstaffed  boolean NOT NULL DEFAULT false,
    ADD COLUMN disabled   boolean NOT NULL DEFAULT false,
    ADD COLUMN version    integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CHECK ((latitude IS NULL) = (longitude IS NULL));

-- Edge nodes: a node registered from a file has no secret until it is enrolled or one is issued.
-- `secret_sealed` is the secret encrypted to the broker reconcile's key (the API and the command
-- line hold only its public half), so the leader can give the broker the plain secret at any
-- time while the database alone reveals nothing. (A node given a secret before 013 has only the
-- hash: the broker keeps it from its initial state, and a rotation seals the next one.) `config_version` is the configuration the
-- node should run (bumped when its devices change); `config_published` the one sent to it.
ALTER TABLE edge_nodes
    ALTER COLUMN password_hash DROP NOT NULL,
    ADD COLUMN name              text NOT NULL DEFAULT '',
    ADD COLUMN secret_sealed     bytea,
    ADD COLUMN secret_issued_at  timestamptz,
    ADD COLUMN config_version    integer NOT NULL DEFAULT 1,
    ADD COLUMN config_published  integer NOT NULL DEFAULT 0,
    ADD COLUMN version           integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now();

-- What a node last said about its configuration: the version its birth reports, and the answer
-- to the last configuration it was sent (applied, or refused with the reason).
ALTER TABLE node_presence
    ADD COLUMN config_version integer,
    ADD COLUMN config_error   text;

-- Devices: the driver that reads them at the edge and its settings (no secrets: a device
-- password is named in settings as an environment variable of the edge, never stored here).
ALTER TABLE devices
    ADD COLUMN driver     text NOT NULL DEFAULT 'simulated',
    ADD COLUMN settings   jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN disabled   boolean NOT NULL DEFAULT false,
    ADD COLUMN version    integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- People: contact points for notifications (phone stays its own column), language.
ALTER TABLE people
    ADD COLUMN email      text,
    ADD COLUMN wecom_id   text,
    ADD COLUMN dingtalk_id text,
    ADD COLUMN language   text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en')),
    ADD COLUMN version    integer NOT NULL DEFAULT 1,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- Duty: weekly shifts in the grid's venues' time zone, each with a stable id from the registry
-- (days 1 = Monday .. 7 = Sunday; a shift whose end is not after its start runs past midnight),
-- optionally bounded by dates. The dated periods of duty_roster stay for one-off cover.
CREATE TABLE duty_shifts (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    grid_id    text NOT NULL REFERENCES territory (id),
    person_id  text NOT NULL REFERENCES people (id),
    days       smallint[] NOT NULL CHECK (days <@ ARRAY[1, 2, 3, 4, 5, 6, 7]::smallint[]
                                          AND cardinality(days) > 0),
    starts     time NOT NULL,
    ends       time NOT NULL,
    timezone   text NOT NULL DEFAULT 'Asia/Shanghai',
    valid_from date,
    valid_to   date,
    disabled   boolean NOT NULL DEFAULT false,
    version    integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to >= valid_from)
);
CREATE INDEX duty_shifts_grid ON duty_shifts (grid_id) WHERE NOT disabled;
CREATE INDEX duty_shifts_person ON duty_shifts (person_id);

CREATE TRIGGER territory_version BEFORE UPDATE ON territory
    FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER venues_version BEFORE UPDATE ON venues
    FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER devices_version BEFORE UPDATE ON devices
    FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER duty_shifts_version BEFORE UPDATE ON duty_shifts
    FOR EACH ROW EXECUTE FUNCTION bump_version();

-- Edge nodes: the version moves with what a person edits, not with the publishing bookkeeping.
CREATE FUNCTION bump_node_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.venue_id, NEW.name, NEW.disabled, NEW.password_hash)
       IS DISTINCT FROM (OLD.venue_id, OLD.name, OLD.disabled, OLD.password_hash) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER edge_nodes_version BEFORE UPDATE ON edge_nodes
    FOR EACH ROW EXECUTE FUNCTION bump_node_version();

-- People: the version moves with the record, not with sign-in bookkeeping (valid_after, password).
CREATE FUNCTION bump_person_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.name, NEW.role, NEW.scope_id, NEW.phone, NEW.email, NEW.wecom_id, NEW.dingtalk_id,
        NEW.language, NEW.active)
       IS DISTINCT FROM (OLD.name, OLD.role, OLD.scope_id, OLD.phone, OLD.email, OLD.wecom_id,
        OLD.dingtalk_id, OLD.language, OLD.active) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER people_version BEFORE UPDATE ON people
    FOR EACH ROW EXECUTE FUNCTION bump_person_version();

-- A node's devices changed (added, edited, disabled, moved): the node needs a new configuration.
CREATE FUNCTION bump_node_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.node_id <> NEW.node_id THEN
        UPDATE edge_nodes SET config_version = config_version + 1 WHERE id = OLD.node_id;
    END IF;
    UPDATE edge_nodes SET config_version = config_version + 1 WHERE id = NEW.node_id;
    PERFORM pg_notify('gridwatch_registry', 'node:' || NEW.node_id);
    RETURN NULL;
END $$;
CREATE TRIGGER devices_node_config AFTER INSERT OR UPDATE ON devices
    FOR EACH ROW EXECUTE FUNCTION bump_node_config();

-- A node switched off or on, given a secret or moved: the leader's broker reconcile hears it at
-- once (LISTEN gridwatch_registry) and cuts or admits the node's session within a second.
CREATE FUNCTION notify_node_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gridwatch_registry', 'broker:' || NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER edge_nodes_broker AFTER INSERT OR UPDATE OF disabled, password_hash, venue_id
    ON edge_nodes FOR EACH ROW EXECUTE FUNCTION notify_node_change();

-- Enrolment codes: single use, valid for hours; only a hash of the code is kept.
CREATE TABLE enrolment_codes (
    code_hash  bytea PRIMARY KEY,
    node_id    text NOT NULL REFERENCES edge_nodes (id),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    used_from  text,
    CHECK (expires_at > created_at)
);
CREATE INDEX enrolment_codes_node ON enrolment_codes (node_id);

-- The broker's refused connects, counted per account (client) name: unknown and disabled nodes
-- knocking, and nodes with an old secret. Kept by the ingest leader, shown to admins.
CREATE TABLE broker_refusals (
    client     text PRIMARY KEY,
    node_id    text REFERENCES edge_nodes (id),
    reason     text NOT NULL,
    count      bigint NOT NULL DEFAULT 1,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX broker_refusals_last_seen ON broker_refusals (last_seen DESC);

-- What the broker reconcile changed, run by run (only runs that changed something, or failed).
CREATE TABLE broker_reconciles (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    changes jsonb NOT NULL,
    error   text
);
CREATE INDEX broker_reconciles_at ON broker_reconciles (at DESC);

-- The key pair the broker reconcile seals node secrets with: the public half for whoever issues
-- secrets (API, command line); the private half never here (the ingest's settings hold it).
CREATE TABLE platform_keys (
    name       text PRIMARY KEY,
    public_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
