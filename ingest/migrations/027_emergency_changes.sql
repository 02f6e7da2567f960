-- Emergencies on the live stream (issue 14): every page of the console carries a banner while an
-- area in the person's scope is in emergency, so a start or an end must reach at once everyone
-- whose area it covers or who looks after it. A change is seen by the people whose scope holds
-- its path, so the change at the emergency's area reaches the people at it and above it; the
-- people scoped below it get one each, addressed to them (person_id) at their own scope's path.
-- Emergencies are rare; a city-wide one writes a row per active person below the city.
CREATE FUNCTION record_emergency_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.ended_at IS NOT DISTINCT FROM OLD.ended_at THEN
        RETURN NULL;
    END IF;
    WITH body AS (
        SELECT jsonb_build_object('territory_id', NEW.territory_id, 'active', NEW.ended_at IS NULL,
                                  'started_at', NEW.started_at, 'ended_at', NEW.ended_at) AS payload
    ), written AS (
        INSERT INTO changes (kind, path, person_id, payload)
        SELECT 'emergency', w.path, w.person_id, body.payload
        FROM (SELECT NEW.path AS path, NULL::text AS person_id
              UNION ALL
              SELECT t.path, pe.id FROM people pe JOIN territory t ON t.id = pe.scope_id
              WHERE pe.active AND t.path <@ NEW.path AND t.path <> NEW.path) w, body
        ORDER BY w.path, w.person_id NULLS FIRST
        RETURNING id)
    SELECT max(id) INTO newest FROM written;
    PERFORM pg_notify('gridwatch_changes', newest::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER emergencies_changed AFTER INSERT OR UPDATE OF ended_at ON emergencies
    FOR EACH ROW EXECUTE FUNCTION record_emergency_change();
