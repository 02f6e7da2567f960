-- The live feed's change rows are written per statement, not per row. The ingest opens, repeats
-- and resolves incidents and tasks a batch at a time; a batch that opens a hundred incidents now
-- writes their hundred change rows with one INSERT and wakes the API replicas with one NOTIFY
-- (its payload the newest change id), instead of a trigger call, an INSERT and a NOTIFY per row.
-- A transition table cannot go with a column list, so the UPDATE triggers compare the old and
-- new rows themselves: only what live views show counts (a repeat's occurrences do not), and an
-- update that changes none of it writes nothing.
DROP TRIGGER incidents_changes ON incidents;
DROP TRIGGER tasks_changes ON tasks;

-- What a live view is sent of an incident or a task (the payloads of 004/005's record_change).
CREATE FUNCTION incident_change(n incidents) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', n.id, 'rule', n.rule, 'severity', n.severity,
        'status', n.status, 'title', n.title, 'venue_id', n.venue_id, 'device_id', n.device_id,
        'occurrences', n.occurrences, 'opened_at', n.opened_at,
        'silenced_until', n.silenced_until)
$$;

CREATE FUNCTION task_change(n tasks) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', n.id, 'incident_id', n.incident_id, 'state', n.state,
        'severity', n.severity, 'title', n.title, 'assignee', n.assignee,
        'level_id', n.level_id, 'flagged', n.flagged, 'deadline_at', n.deadline_at)
$$;

CREATE FUNCTION record_incident_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH written AS (
            INSERT INTO changes (kind, path, payload)
            SELECT 'incident', n.path, incident_change(n)
            FROM new_rows n ORDER BY n.id
            RETURNING id)
        SELECT max(id) INTO newest FROM written;
    ELSE
        WITH written AS (
            INSERT INTO changes (kind, path, payload)
            SELECT 'incident', n.path, incident_change(n)
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.status, n.severity, n.silenced_until)
                  IS DISTINCT FROM (o.status, o.severity, o.silenced_until)
            ORDER BY n.id
            RETURNING id)
        SELECT max(id) INTO newest FROM written;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('gridwatch_changes', newest::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION record_task_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH written AS (
            INSERT INTO changes (kind, path, payload)
            SELECT 'task', n.path, task_change(n)
            FROM new_rows n ORDER BY n.id
            RETURNING id)
        SELECT max(id) INTO newest FROM written;
    ELSE
        WITH written AS (
            INSERT INTO changes (kind, path, payload)
            SELECT 'task', n.path, task_change(n)
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.state, n.assignee, n.level_id, n.flagged, n.deadline_at)
                  IS DISTINCT FROM (o.state, o.assignee, o.level_id, o.flagged, o.deadline_at)
            ORDER BY n.id
            RETURNING id)
        SELECT max(id) INTO newest FROM written;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('gridwatch_changes', newest::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER incidents_changes_inserted AFTER INSERT ON incidents
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_incident_changes();
CREATE TRIGGER incidents_changes_updated AFTER UPDATE ON incidents
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_incident_changes();
CREATE TRIGGER tasks_changes_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_task_changes();
CREATE TRIGGER tasks_changes_updated AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_task_changes();

-- Likewise the notification events (015) that new incidents and tasks raise: a red incident, a
-- node offline, a task dispatched to someone. Updates of tasks stay per row (their rules read
-- each row's before and after).
DROP TRIGGER incidents_notify ON incidents;
DROP TRIGGER tasks_notify ON tasks;

CREATE FUNCTION notify_incidents_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_events (kind, severity, territory_id, path, task_id, incident_id,
                               person_id, params)
    SELECT CASE WHEN n.rule = 'node_offline' THEN 'node.offline' ELSE 'incident.red' END,
           n.severity, n.grid_id, g.path, NULL, n.id, NULL,
           jsonb_build_object('incident_id', n.id, 'title', n.title, 'rule', n.rule,
               'venue_id', n.venue_id, 'device_id', n.device_id, 'node_id', n.node_id,
               'venue', v.name)
    FROM new_rows n LEFT JOIN venues v ON v.id = n.venue_id
    LEFT JOIN territory g ON g.id = n.grid_id
    WHERE n.rule = 'node_offline' OR n.severity = 'red'
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION notify_tasks_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_events (kind, severity, territory_id, path, task_id, incident_id,
                               person_id, params)
    SELECT 'task.dispatched', n.severity, n.level_id, l.path, n.id, n.incident_id, n.assignee,
           jsonb_build_object('task_id', n.id, 'title', n.title, 'level_id', n.level_id,
               'grid_id', n.grid_id, 'assignee', n.assignee, 'state', n.state,
               'deadline_at', n.deadline_at)
    FROM new_rows n LEFT JOIN territory l ON l.id = n.level_id
    WHERE n.assignee IS NOT NULL AND n.state = 'dispatched'
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE TRIGGER incidents_notify AFTER INSERT ON incidents
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_incidents_inserted();
CREATE TRIGGER tasks_notify_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_tasks_inserted();
CREATE TRIGGER tasks_notify AFTER UPDATE OF assignee, state, flagged, escalations ON tasks
    FOR EACH ROW EXECUTE FUNCTION notify_task();
