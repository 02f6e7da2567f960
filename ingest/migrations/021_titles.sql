-- Titles as codes with parameters (issue 14): an incident's or task's title is rendered in its
-- reader's language from `title_code` and `title_params` (ingest/titles.py, and the console's
-- `title.<code>` messages). An incident's code is its rule's name (or the platform's own code),
-- a task's is `task.<rule>`; the parameters name the venue, the device, the node. `title` stays,
-- written as the English rendering, for scripts, logs and the command line.
ALTER TABLE incidents ADD COLUMN title_code text, ADD COLUMN title_params jsonb;
ALTER TABLE tasks ADD COLUMN title_code text, ADD COLUMN title_params jsonb;

-- The rules whose titles have a code (every rule of ingest/rules.py at the time of writing).
CREATE TEMPORARY TABLE titled_rules (rule text PRIMARY KEY) ON COMMIT DROP;
INSERT INTO titled_rules VALUES ('door_forced'), ('door_held_open'), ('denied_burst'),
    ('over_capacity'), ('far_over_capacity'), ('inside_when_closed'), ('camera_intrusion'),
    ('camera_loitering'), ('camera_crowd'), ('camera_tamper'), ('speaker_fault'),
    ('device_offline'), ('node_offline'), ('command_undelivered'), ('emergency_proposed');

-- What every stored incident names: its venue, device and node, by their names now (the demo's
-- names became Chinese since many of these titles were written).
UPDATE incidents i SET
    title_params = jsonb_strip_nulls(jsonb_build_object(
        'venue', coalesce(nullif(v.name, ''), i.venue_id), 'venue_id', i.venue_id,
        'device', coalesce(nullif(d.name, ''), i.device_id), 'device_id', i.device_id,
        'node_id', i.node_id)),
    title_code = CASE
        WHEN i.rule IN (SELECT rule FROM titled_rules) THEN i.rule
        WHEN i.rule = 'platform_broker' AND i.title LIKE '%(ingest group %' THEN
            'platform_broker_group'
        WHEN i.rule = 'platform_broker' THEN 'platform_broker'
        ELSE 'text' END
FROM incidents x LEFT JOIN venues v ON v.id = x.venue_id LEFT JOIN devices d ON d.id = x.device_id
WHERE x.id = i.id;
UPDATE incidents SET title_params = title_params || jsonb_build_object(
        'group', coalesce(detail->>'ingest_group', substring(title FROM '\(ingest group (.*)\)$')))
WHERE title_code = 'platform_broker_group';
-- An emergency a rule proposed names the area it is for.
UPDATE incidents i SET title_params = i.title_params || jsonb_build_object(
        'area_id', i.detail->>'area', 'area', coalesce(t.name, i.detail->>'area'))
FROM territory t WHERE i.title_code = 'emergency_proposed' AND t.id = i.detail->>'area';
-- A title no code says (an incident some other writer made): kept word for word.
UPDATE incidents SET title_params = title_params || jsonb_build_object('text', title)
WHERE title_code = 'text';

-- A task was "<its incident's title> at <venue>": its incident's code as a task's, with the
-- incident's parameters.
UPDATE tasks t SET
    title_code = CASE WHEN i.rule IN (SELECT rule FROM titled_rules) THEN 'task.' || i.rule
                      ELSE 'text' END,
    title_params = CASE WHEN i.rule IN (SELECT rule FROM titled_rules) THEN i.title_params
                        ELSE i.title_params || jsonb_build_object('text', t.title) END
FROM incidents i WHERE i.id = t.incident_id;

ALTER TABLE incidents ALTER COLUMN title_code SET NOT NULL,
    ALTER COLUMN title_params SET NOT NULL, ALTER COLUMN title_params SET DEFAULT '{}';
ALTER TABLE tasks ALTER COLUMN title_code SET NOT NULL,
    ALTER COLUMN title_params SET NOT NULL, ALTER COLUMN title_params SET DEFAULT '{}';

-- The live feed's payloads (017) carry the code and its parameters: each console renders them
-- in its own language.
CREATE OR REPLACE FUNCTION incident_change(n incidents) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', n.id, 'rule', n.rule, 'severity', n.severity,
        'status', n.status, 'title', n.title, 'title_code', n.title_code,
        'title_params', n.title_params, 'venue_id', n.venue_id, 'device_id', n.device_id,
        'occurrences', n.occurrences, 'opened_at', n.opened_at,
        'silenced_until', n.silenced_until)
$$;

CREATE OR REPLACE FUNCTION task_change(n tasks) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', n.id, 'incident_id', n.incident_id, 'state', n.state,
        'severity', n.severity, 'title', n.title, 'title_code', n.title_code,
        'title_params', n.title_params, 'assignee', n.assignee,
        'level_id', n.level_id, 'flagged', n.flagged, 'deadline_at', n.deadline_at)
$$;

-- Notification events (015, 017) likewise: the router renders the title in each recipient's
-- language (notify/texts.py); and they name the level, the assignee, the venue and the node
-- (their ids stay too), for texts a person reads.
CREATE OR REPLACE FUNCTION notify_incidents_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_events (kind, severity, territory_id, path, task_id, incident_id,
                               person_id, params)
    SELECT CASE WHEN n.rule = 'node_offline' THEN 'node.offline' ELSE 'incident.red' END,
           n.severity, n.grid_id, g.path, NULL, n.id, NULL,
           jsonb_build_object('incident_id', n.id, 'title', n.title, 'rule', n.rule,
               'title_code', n.title_code, 'title_params', n.title_params,
               'venue_id', n.venue_id, 'device_id', n.device_id, 'node_id', n.node_id,
               'venue', coalesce(nullif(v.name, ''), n.venue_id),
               'node', coalesce(nullif(en.name, ''), n.node_id))
    FROM new_rows n LEFT JOIN venues v ON v.id = n.venue_id
    LEFT JOIN edge_nodes en ON en.id = n.node_id
    LEFT JOIN territory g ON g.id = n.grid_id
    WHERE n.rule = 'node_offline' OR n.severity = 'red'
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION notify_tasks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_events (kind, severity, territory_id, path, task_id, incident_id,
                               person_id, params)
    SELECT 'task.dispatched', n.severity, n.level_id, l.path, n.id, n.incident_id, n.assignee,
           jsonb_build_object('task_id', n.id, 'title', n.title, 'title_code', n.title_code,
               'title_params', n.title_params, 'level_id', n.level_id,
               'level', coalesce(l.name, n.level_id), 'grid_id', n.grid_id,
               'assignee', n.assignee, 'assignee_name', coalesce(a.name, n.assignee),
               'state', n.state, 'deadline_at', n.deadline_at)
    FROM new_rows n LEFT JOIN territory l ON l.id = n.level_id
    LEFT JOIN people a ON a.id = n.assignee
    WHERE n.assignee IS NOT NULL AND n.state = 'dispatched'
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    params jsonb := jsonb_build_object('task_id', NEW.id, 'title', NEW.title,
        'title_code', NEW.title_code, 'title_params', NEW.title_params,
        'level_id', NEW.level_id, 'grid_id', NEW.grid_id, 'assignee', NEW.assignee,
        'state', NEW.state, 'deadline_at', NEW.deadline_at,
        'level', coalesce((SELECT name FROM territory WHERE id = NEW.level_id), NEW.level_id),
        'assignee_name', coalesce((SELECT name FROM people WHERE id = NEW.assignee),
                                  NEW.assignee));
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
                                 params || jsonb_build_object('from', OLD.level_id,
                                     'from_level', coalesce((SELECT name FROM territory
                                                             WHERE id = OLD.level_id),
                                                            OLD.level_id)));
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

-- Commands and nodes name their device, node and venue too (015's functions, with names added).
CREATE OR REPLACE FUNCTION notify_command() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grid text;
    device_name text;
    venue_name text;
BEGIN
    IF NEW.state IN ('failed', 'rejected', 'expired') AND OLD.state IS DISTINCT FROM NEW.state
       AND NEW.superseded_by IS NULL THEN
        SELECT v.grid_id, nullif(d.name, ''), v.name INTO grid, device_name, venue_name
            FROM devices d JOIN edge_nodes n ON n.id = d.node_id
            JOIN venues v ON v.id = n.venue_id WHERE d.id = NEW.device_id;
        PERFORM notify_event('command.failed', 'yellow', grid, NULL, NULL,
            CASE WHEN EXISTS (SELECT 1 FROM people WHERE id = NEW.issued_by)
                 THEN NEW.issued_by END,
            jsonb_build_object('command_id', NEW.id, 'device_id', NEW.device_id,
                'device', coalesce(device_name, NEW.device_id), 'venue', venue_name,
                'action', NEW.action->>'action', 'state', NEW.state, 'detail', NEW.detail,
                'issued_by', NEW.issued_by));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION notify_node_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grid text;
    node_name text;
    venue_name text;
BEGIN
    IF NEW.action = 'node.enrol' THEN
        SELECT v.grid_id, nullif(n.name, ''), v.name INTO grid, node_name, venue_name
            FROM edge_nodes n JOIN venues v ON v.id = n.venue_id WHERE n.id = NEW.target;
        PERFORM notify_event('node.enrolled', 'green', grid, NULL, NULL, NULL,
            jsonb_build_object('node_id', NEW.target, 'client', NEW.client,
                'node', coalesce(node_name, NEW.target), 'venue', venue_name));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION notify_refusal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grid text;
    off boolean;
    node_name text;
    venue_name text;
BEGIN
    IF NEW.node_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT v.grid_id, n.disabled OR v.disabled, nullif(n.name, ''), v.name
        INTO grid, off, node_name, venue_name
        FROM edge_nodes n JOIN venues v ON v.id = n.venue_id WHERE n.id = NEW.node_id;
    IF off AND NOT EXISTS (SELECT 1 FROM notify_events WHERE kind = 'node.refused'
                           AND params->>'node_id' = NEW.node_id
                           AND at > now() - interval '1 hour') THEN
        PERFORM notify_event('node.refused', 'yellow', grid, NULL, NULL, NULL,
            jsonb_build_object('node_id', NEW.node_id, 'client', NEW.client, 'count', NEW.count,
                'node', coalesce(node_name, NEW.node_id), 'venue', venue_name));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION notify_emergency() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    params jsonb := jsonb_build_object('emergency_id', NEW.id, 'reason', NEW.reason,
        'message', NEW.message, 'area', (SELECT name FROM territory WHERE id = NEW.territory_id));
    who text := CASE WHEN TG_OP = 'INSERT' THEN NEW.started_by ELSE NEW.ended_by END;
BEGIN
    params := params || jsonb_build_object('by', who,
        'by_name', coalesce((SELECT name FROM people WHERE id = who), who));
    IF TG_OP = 'INSERT' THEN
        PERFORM notify_event('emergency.started', 'red', NEW.territory_id, NULL, NULL, NULL,
                             params);
    ELSIF OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL THEN
        PERFORM notify_event('emergency.ended', 'green', NEW.territory_id, NULL, NULL, NULL,
                             params);
    END IF;
    RETURN NULL;
END $$;
