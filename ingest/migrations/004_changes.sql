-- A durable feed of what changed (incidents, tasks, node presence) for live views. Every API
-- replica LISTENs on 'gridwatch_changes'; a client that reconnects asks for what came after the
-- last id it saw. Rows older than a day are pruned by the ingest leader.
CREATE TABLE changes (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    kind    text NOT NULL,          -- incident, task, presence
    path    ltree NOT NULL,         -- for scoping: the grid's path
    payload jsonb NOT NULL
);
CREATE INDEX changes_at ON changes (at);

CREATE FUNCTION record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change_path ltree;
    body jsonb;
    new_id bigint;
BEGIN
    IF TG_TABLE_NAME = 'incidents' THEN
        change_path := NEW.path;
        body := jsonb_build_object('id', NEW.id, 'rule', NEW.rule, 'severity', NEW.severity,
            'status', NEW.status, 'title', NEW.title, 'venue_id', NEW.venue_id,
            'device_id', NEW.device_id, 'occurrences', NEW.occurrences, 'opened_at', NEW.opened_at);
    ELSIF TG_TABLE_NAME = 'tasks' THEN
        change_path := NEW.path;
        body := jsonb_build_object('id', NEW.id, 'incident_id', NEW.incident_id, 'state', NEW.state,
            'severity', NEW.severity, 'title', NEW.title, 'assignee', NEW.assignee,
            'level_id', NEW.level_id, 'flagged', NEW.flagged, 'deadline_at', NEW.deadline_at);
    ELSE  -- node_presence
        IF TG_OP = 'UPDATE' AND OLD.online = NEW.online THEN
            RETURN NEW;  -- last_seen moved: not a change anyone watches
        END IF;
        SELECT t.path INTO change_path FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
            JOIN territory t ON t.id = v.grid_id WHERE n.id = NEW.node_id;
        body := jsonb_build_object('node_id', NEW.node_id, 'online', NEW.online, 'bdseq', NEW.bdseq);
    END IF;
    INSERT INTO changes (kind, path, payload)
    VALUES (CASE TG_TABLE_NAME WHEN 'incidents' THEN 'incident' WHEN 'tasks' THEN 'task'
                               ELSE 'presence' END, change_path, body)
    RETURNING id INTO new_id;
    PERFORM pg_notify('gridwatch_changes', new_id::text);
    RETURN NEW;
END;
$$;

-- Only what live views show: a repeat (occurrences, last_seen) or a moved last_seen is not sent.
CREATE TRIGGER incidents_changes AFTER INSERT OR UPDATE OF status, severity ON incidents
    FOR EACH ROW EXECUTE FUNCTION record_change();
CREATE TRIGGER tasks_changes
    AFTER INSERT OR UPDATE OF state, assignee, level_id, flagged, deadline_at ON tasks
    FOR EACH ROW EXECUTE FUNCTION record_change();
CREATE TRIGGER node_presence_changes AFTER INSERT OR UPDATE OF online ON node_presence
    FOR EACH ROW EXECUTE FUNCTION record_change();
