-- A node's version guards what people edit (its venue, name, switched off or on), as with every
-- other registry record: a new secret is not an edit, so a rotation (or the first secret, given
-- as the node is registered) no longer makes someone's open edit of the node stale.
CREATE OR REPLACE FUNCTION bump_node_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.venue_id, NEW.name, NEW.disabled) IS DISTINCT FROM (OLD.venue_id, OLD.name, OLD.disabled)
    THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
