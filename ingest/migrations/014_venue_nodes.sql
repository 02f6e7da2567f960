-- A disabled venue's nodes count as disabled (the broker cuts them, the ingest refuses them,
-- they cannot enrol); enabling the venue brings back those not disabled themselves. The broker
-- reconcile hears of the venue's nodes at once, as of a node switched off or on.
CREATE FUNCTION notify_venue_nodes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gridwatch_registry', 'broker:' || n.id)
    FROM edge_nodes n WHERE n.venue_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER venues_broker AFTER UPDATE OF disabled ON venues
    FOR EACH ROW WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled)
    EXECUTE FUNCTION notify_venue_nodes();
