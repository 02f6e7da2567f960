-- Notifications (issue 13): events written by triggers in the transaction of what causes them,
-- one delivery per event × person × channel, people's preferences, policies as data, and the
-- short links that open a task. The ingest leader's notify duty (notify/) routes new events to
-- people and sends due deliveries; the API shows them.

-- What happened that someone must hear about. Written only by the triggers below (they run as
-- the owner, see privileges.sql); routed_at is set by the router once its deliveries exist.
CREATE TABLE notify_events (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL,        -- task.dispatched, task.deadline, task.escalated, …
    severity     severity,
    territory_id text REFERENCES territory (id),   -- the area (a task's level, a venue's grid)
    path         ltree,                -- that area's path, for "in your area"
    task_id      bigint REFERENCES tasks (id),
    incident_id  bigint REFERENCES incidents (id),
    person_id    text,                 -- the one person it is about (an assignee), if any
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- what titles are rendered from
    routed_at    timestamptz
);
CREATE INDEX notify_events_unrouted ON notify_events (id) WHERE routed_at IS NULL;
CREATE INDEX notify_events_task ON notify_events (task_id);
CREATE INDEX notify_events_kind ON notify_events (kind, at DESC);

CREATE TYPE delivery_state AS ENUM ('pending', 'sent', 'failed', 'cancelled', 'digested');

-- The outbox: one row per event, person and channel, taken by the sender when due (next_at)
-- with FOR UPDATE SKIP LOCKED; settled rows are pruned by the leader after
-- GRIDWATCH_NOTIFY_RETENTION_DAYS. A digest is a delivery too (kind 'digest', no event); the
-- deliveries it gathers are 'digested' and point at it.
CREATE TABLE deliveries (
    id           bigserial PRIMARY KEY,
    event_id     bigint REFERENCES notify_events (id),
    person_id    text NOT NULL REFERENCES people (id),
    channel      text NOT NULL,
    state        delivery_state NOT NULL DEFAULT 'pending',
    kind         text NOT NULL,
    severity     severity,
    task_id      bigint REFERENCES tasks (id),
    incident_id  bigint REFERENCES incidents (id),
    title        text NOT NULL,
    body         text NOT NULL DEFAULT '',
    link         text,
    fallback     text[] NOT NULL DEFAULT '{}',  -- the person's channels to try if this one fails
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    next_at      timestamptz NOT NULL DEFAULT now(),
    tried_at     timestamptz,
    sent_at      timestamptz,
    last_error   text,
    provider_ref text,
    digest_id    bigint REFERENCES deliveries (id) ON DELETE SET NULL,
    read_at      timestamptz,                   -- console: read in the notification centre
    UNIQUE (event_id, person_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending';
CREATE INDEX deliveries_person ON deliveries (person_id, channel, created_at DESC);
CREATE INDEX deliveries_task ON deliveries (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX deliveries_incident ON deliveries (incident_id) WHERE incident_id IS NOT NULL;
CREATE INDEX deliveries_tried ON deliveries (channel, tried_at);

-- Each person's channels in order, quiet hours (never for red) in their time zone.
CREATE TABLE notify_prefs (
    person_id  text PRIMARY KEY REFERENCES people (id),
    channels   text[] NOT NULL,
    quiet_from time,
    quiet_to   time,
    timezone   text NOT NULL DEFAULT 'Asia/Shanghai',
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_from IS NULL) = (quiet_to IS NULL))
);

-- Policies that differ from the built-in ones (notify/policy.py): per event kind and severity
-- (NULL: any), who hears and on which channels.
CREATE TABLE notify_policies (
    kind     text NOT NULL,
    severity severity,
    rules    jsonb NOT NULL,
    UNIQUE NULLS NOT DISTINCT (kind, severity)
);

-- Short links that open a task for one person: only a hash of the token is kept.
CREATE TABLE notify_links (
    token_hash bytea PRIMARY KEY,
    task_id    bigint NOT NULL REFERENCES tasks (id),
    person_id  text NOT NULL REFERENCES people (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX notify_links_expires ON notify_links (expires_at);

-- The live stream carries a console notification only to its person.
ALTER TABLE changes ADD COLUMN person_id text;

CREATE FUNCTION notify_event(
    e_kind text, e_severity severity, e_territory text, e_task bigint, e_incident bigint,
    e_person text, e_params jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_events (kind, severity, territory_id, path, task_id, incident_id,
                               person_id, params)
    VALUES (e_kind, e_severity, e_territory,
            (SELECT path FROM territory WHERE id = e_territory), e_task, e_incident, e_person,
            e_params);
END $$;

-- Tasks: dispatched to someone, flagged at 80%, escalated a level, taken (paging stops).
CREATE FUNCTION notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    params jsonb := jsonb_build_object('task_id', NEW.id, 'title', NEW.title,
        'level_id', NEW.level_id, 'grid_id', NEW.grid_id, 'assignee', NEW.assignee,
        'state', NEW.state, 'deadline_at', NEW.deadline_at);
BEGIN
    IF NEW.assignee IS NOT NULL AND NEW.state = 'dispatched'
       AND (TG_OP = 'INSERT' OR OLD.assignee IS DISTINCT FROM NEW.assignee
            OR OLD.state IS DISTINCT FROM NEW.state) THEN
        PERFORM notify_event('task.dispatched', NEW.severity, NEW.level_id, NEW.id,
                             NEW.incident_id, NEW.assignee, params);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.flagged AND NOT OLD.flagged THEN
            PERFORM notify_event('task.deadline', NEW.severity, NEW.level_id, NEW.id,
                                 NEW.incident_id, NEW.assignee, params);
        END IF;
        IF NEW.escalations > OLD.escalations THEN
            PERFORM notify_event('task.escalated', NEW.severity, NEW.level_id, NEW.id,
                                 NEW.incident_id, NEW.assignee,
                                 params || jsonb_build_object('from', OLD.level_id));
        END IF;
        -- Out of the stage that pages (accepted, closed, handed back, suspended): the paging of
        -- this task stops now, in this transaction.
        IF OLD.state IN ('reported', 'dispatched') AND NEW.state NOT IN ('reported', 'dispatched')
        THEN
            UPDATE deliveries SET state = 'cancelled', last_error = 'task ' || NEW.state
            WHERE task_id = NEW.id AND state = 'pending' AND kind <> 'task.accepted';
            IF NEW.state = 'accepted' THEN
                PERFORM notify_event('task.accepted', NEW.severity, NEW.level_id, NEW.id,
                                     NEW.incident_id, NEW.assignee, params);
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE OF assignee, state, flagged, escalations
    ON tasks FOR EACH ROW EXECUTE FUNCTION notify_task();

-- Incidents: a new red one in an area; a node offline (any colour); a command undelivered.
CREATE FUNCTION notify_incident() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    params jsonb := jsonb_build_object('incident_id', NEW.id, 'title', NEW.title,
        'rule', NEW.rule, 'venue_id', NEW.venue_id, 'device_id', NEW.device_id,
        'node_id', NEW.node_id,
        'venue', (SELECT name FROM venues WHERE id = NEW.venue_id));
BEGIN
    IF NEW.rule = 'node_offline' THEN
        PERFORM notify_event('node.offline', NEW.severity, NEW.grid_id, NULL, NEW.id, NULL,
                             params);
    ELSIF NEW.severity = 'red' THEN
        PERFORM notify_event('incident.red', NEW.severity, NEW.grid_id, NULL, NEW.id, NULL,
                             params);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER incidents_notify AFTER INSERT ON incidents
    FOR EACH ROW EXECUTE FUNCTION notify_incident();

CREATE FUNCTION notify_emergency() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    params jsonb := jsonb_build_object('emergency_id', NEW.id, 'reason', NEW.reason,
        'message', NEW.message, 'area', (SELECT name FROM territory WHERE id = NEW.territory_id));
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM notify_event('emergency.started', 'red', NEW.territory_id, NULL, NULL, NULL,
                             params || jsonb_build_object('by', NEW.started_by));
    ELSIF OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL THEN
        PERFORM notify_event('emergency.ended', 'green', NEW.territory_id, NULL, NULL, NULL,
                             params || jsonb_build_object('by', NEW.ended_by));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER emergencies_notify AFTER INSERT OR UPDATE OF ended_at ON emergencies
    FOR EACH ROW EXECUTE FUNCTION notify_emergency();

-- A door or broadcast command that failed, was refused by the edge, or expired unanswered (one
-- superseded by a newer command for the same door is not a failure).
CREATE FUNCTION notify_command() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grid text;
BEGIN
    IF NEW.state IN ('failed', 'rejected', 'expired') AND OLD.state IS DISTINCT FROM NEW.state
       AND NEW.superseded_by IS NULL THEN
        SELECT v.grid_id INTO grid FROM devices d JOIN edge_nodes n ON n.id = d.node_id
            JOIN venues v ON v.id = n.venue_id WHERE d.id = NEW.device_id;
        PERFORM notify_event('command.failed', 'yellow', grid, NULL, NULL,
            CASE WHEN EXISTS (SELECT 1 FROM people WHERE id = NEW.issued_by)
                 THEN NEW.issued_by END,
            jsonb_build_object('command_id', NEW.id, 'device_id', NEW.device_id,
                'action', NEW.action->>'action', 'state', NEW.state, 'detail', NEW.detail,
                'issued_by', NEW.issued_by));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER commands_notify AFTER UPDATE OF state ON commands
    FOR EACH ROW EXECUTE FUNCTION notify_command();

-- Admins: a node enrolled (the audit row of the enrolment), a disabled node knocking.
CREATE FUNCTION notify_node_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grid text;
BEGIN
    IF NEW.action = 'node.enrol' THEN
        SELECT v.grid_id INTO grid FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
            WHERE n.id = NEW.target;
        PERFORM notify_event('node.enrolled', 'green', grid, NULL, NULL, NULL,
            jsonb_build_object('node_id', NEW.target, 'client', NEW.client));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_log_notify AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION notify_node_audit();

-- At most one event an hour per disabled node: the refusals are counted on every broker log read.
CREATE FUNCTION notify_refusal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grid text;
    off boolean;
BEGIN
    IF NEW.node_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT v.grid_id, n.disabled OR v.disabled INTO grid, off FROM edge_nodes n
        JOIN venues v ON v.id = n.venue_id WHERE n.id = NEW.node_id;
    IF off AND NOT EXISTS (SELECT 1 FROM notify_events WHERE kind = 'node.refused'
                           AND params->>'node_id' = NEW.node_id
                           AND at > now() - interval '1 hour') THEN
        PERFORM notify_event('node.refused', 'yellow', grid, NULL, NULL, NULL,
            jsonb_build_object('node_id', NEW.node_id, 'client', NEW.client, 'count', NEW.count));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER broker_refusals_notify AFTER INSERT OR UPDATE OF count ON broker_refusals
    FOR EACH ROW EXECUTE FUNCTION notify_refusal();

-- A console delivery that is sent shows in its person's notification centre, live.
CREATE FUNCTION notify_console() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF NEW.channel = 'console' AND NEW.state = 'sent'
       AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state) THEN
        INSERT INTO changes (kind, path, person_id, payload)
        SELECT 'notification', t.path, NEW.person_id,
               jsonb_build_object('id', NEW.id, 'at', NEW.created_at, 'kind', NEW.kind,
                   'severity', NEW.severity, 'title', NEW.title, 'body', NEW.body,
                   'link', NEW.link, 'task_id', NEW.task_id, 'incident_id', NEW.incident_id,
                   'read_at', NEW.read_at)
        FROM people p JOIN territory t ON t.id = p.scope_id WHERE p.id = NEW.person_id
        RETURNING id INTO new_id;
        PERFORM pg_notify('gridwatch_changes', new_id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_console AFTER INSERT OR UPDATE OF state ON deliveries
    FOR EACH ROW EXECUTE FUNCTION notify_console();
