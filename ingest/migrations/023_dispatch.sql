-- Dispatch beyond one grid: a task can go to a worker of the community's other grids or to a
-- department it calls in, whose area need not hold the task's grid. The live stream shows a
-- person what lies in their area; so that such an assignee's inbox still follows the task, a
-- task's change is written once more for each assignee (the new one and, when it was taken from
-- them, the old one) whose area does not hold it: in their area's path and addressed to them
-- alone, as console notifications are (015).
CREATE OR REPLACE FUNCTION record_task_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH written AS (
            INSERT INTO changes (kind, path, person_id, payload)
            SELECT 'task', c.path, c.person_id, c.payload FROM (
                SELECT n.id, 0 AS copy, n.path, NULL::text AS person_id, task_change(n) AS payload
                FROM new_rows n
                UNION ALL
                SELECT n.id, 1, a.path, n.assignee, task_change(n)
                FROM new_rows n JOIN people p ON p.id = n.assignee
                JOIN territory a ON a.id = p.scope_id
                WHERE NOT n.path <@ a.path) c
            ORDER BY c.id, c.copy
            RETURNING id)
        SELECT max(id) INTO newest FROM written;
    ELSE
        WITH moved AS (
            SELECT n.id, o.assignee AS old_assignee FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.state, n.assignee, n.level_id, n.flagged, n.deadline_at)
                  IS DISTINCT FROM (o.state, o.assignee, o.level_id, o.flagged, o.deadline_at)),
        written AS (
            INSERT INTO changes (kind, path, person_id, payload)
            SELECT 'task', c.path, c.person_id, c.payload FROM (
                SELECT n.id, 0 AS copy, n.path, NULL::text AS person_id, task_change(n) AS payload
                FROM new_rows n JOIN moved m ON m.id = n.id
                UNION ALL
                SELECT n.id, 1, a.path, p.id, task_change(n)
                FROM new_rows n JOIN moved m ON m.id = n.id
                JOIN people p ON p.id = n.assignee OR p.id = m.old_assignee
                JOIN territory a ON a.id = p.scope_id
                WHERE NOT n.path <@ a.path) c
            ORDER BY c.id, c.copy
            RETURNING id)
        SELECT max(id) INTO newest FROM written;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('gridwatch_changes', newest::text);
    END IF;
    RETURN NULL;
END $$;

-- A task taken from its assignee (reassigned) stops paging them, in the same transaction.
CREATE FUNCTION cancel_paging_of_old_assignee() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deliveries SET state = 'cancelled', last_error = 'task reassigned'
    WHERE task_id = NEW.id AND person_id = OLD.assignee AND state = 'pending';
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_reassigned AFTER UPDATE OF assignee ON tasks
    FOR EACH ROW WHEN (OLD.assignee IS NOT NULL AND OLD.assignee IS DISTINCT FROM NEW.assignee)
    EXECUTE FUNCTION cancel_paging_of_old_assignee();
