-- Silencing an incident (shelving, in alarm-management terms): it stays open and keeps counting
-- repeats, but consoles neither sound nor flash for it until `silenced_until`. Unlike a maintenance
-- window, which stops a venue or device from raising anything, it concerns one incident only.
-- Presence changes now also name the node's venue, so a console can update that venue's row.
ALTER TABLE incidents ADD COLUMN silenced_until timestamptz;

CREATE OR REPLACE FUNCTION record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change_path ltree;
    body jsonb;
    new_id bigint;
    node_venue text;
BEGIN
    IF TG_TABLE_NAME = 'incidents' THEN
        change_path := NEW.path;
        body := jsonb_build_object('id', NEW.id, 'rule', NEW.rule, 'severity', NEW.severity,
            'status', NEW.status, 'title', NEW.title, 'venue_id', NEW.venue_id,
            'device_id', NEW.device_id, 'occurrences', NEW.occurrences, 'opened_at', NEW.opened_at,
            'silenced_until', NEW.silenced_until);
    ELSIF TG_TABLE_NAME = 'tasks' THEN
        change_path := NEW.path;
        body := jsonb_build_object('id', NEW.id, 'incident_id', NEW.incident_id, 'state', NEW.state,
            'severity', NEW.severity, 'title', NEW.title, 'assignee', NEW.assignee,
            'level_id', NEW.level_id, 'flagged', NEW.flagged, 'deadline_at', NEW.deadline_at);
    ELSE  -- node_presence
        IF TG_OP = 'UPDATE' AND OLD.online = NEW.online THEN
            RETURN NEW;  -- last_seen moved: not a change anyone watches
        END IF;
        SELECT t.path, v.id INTO change_path, node_venue FROM edge_nodes n
            JOIN venues v ON v.id = n.venue_id JOIN territory t ON t.id = v.grid_id
            WHERE n.id = NEW.node_id;
        body := jsonb_build_object('node_id', NEW.node_id, 'venue_id', node_venue,
            'online', NEW.online, 'bdseq', NEW.bdseq);
    END IF;
    INSERT INTO changes (kind, path, payload)
    VALUES (CASE TG_TABLE_NAME WHEN 'incidents' THEN 'incident' WHEN 'tasks' THEN 'task'
                               ELSE 'presence' END, change_path, body)
    RETURNING id INTO new_id;
    PERFORM pg_notify('gridwatch_changes', new_id::text);
    RETURN NEW;
END;
$$;

DROP TRIGGER incidents_changes ON incidents;
CREATE TRIGGER incidents_changes AFTER INSERT OR UPDATE OF status, severity, silenced_until ON incidents
    FOR EACH ROW EXECUTE FUNCTION record_change();
