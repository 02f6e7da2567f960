-- Least privilege: one group role per service, none of which can log in. Login roles (with
-- passwords) are made members of these: `gridwatch up` creates its own, production creates them
-- as docs/operations.md says. What each group may do is kept in ingest/privileges.sql, applied
-- after every migration run, so a table added by a later migration gets its grants there.
--
-- Roles belong to the whole server, not to one database: an existing role is kept as it is, so
-- a database administrator may create them beforehand and the migrating owner then needs no
-- CREATEROLE.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['gridwatch_ingest', 'gridwatch_api', 'gridwatch_cli'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role % does not exist and % may not create it', name, current_user
                    USING HINT = 'create the roles gridwatch_ingest, gridwatch_api and gridwatch_cli '
                                 'as docs/operations.md shows, then migrate again';
            END;
        END IF;
    END LOOP;
END;
$$;

-- The audit log is append-only: nobody but its owner may change or remove a row, and even the
-- owner is stopped by this trigger unless it first sets gridwatch.audit_maintenance = 'on'
-- for the session (for a deliberate, documented clean-up).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('gridwatch.audit_maintenance', true), '') <> 'on' THEN
        RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
