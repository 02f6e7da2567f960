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

-- A hash chain through the audit log, so that an edited, removed or inserted row is found by
-- `gridwatch audit verify` even if whoever did it got past the append-only trigger below. Each row
-- has its place (`seq`, gap-free), the hash of the row before it and its own hash: sha256 of
-- the previous hash and the row's fields (audit_log_fields), each written as "LENGTH:BYTES".
-- ingest/audit.py recomputes the chain independently.
ALTER TABLE audit_log ADD COLUMN seq bigint UNIQUE, ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;

-- The row as JSON without its hashes, rendered in UTC and without NULLs: a column added later
-- is covered by the chain at once, and older rows (NULL there) keep their hashes. A column
-- added with a non-NULL default would change every older row: add it nullable.
CREATE FUNCTION audit_log_fields(a audit_log) RETURNS text[] LANGUAGE sql STABLE
SET TimeZone = 'UTC' AS $$
    SELECT ARRAY[jsonb_strip_nulls(to_jsonb(a) - 'prev_hash' - 'hash')::text]
$$;

CREATE FUNCTION audit_log_hash(prev bytea, fields text[]) RETURNS bytea LANGUAGE plpgsql
STABLE AS $$
DECLARE
    body bytea := prev;
    field text;
BEGIN
    FOREACH field IN ARRAY fields LOOP
        body := body || convert_to(octet_length(convert_to(field, 'UTF8'))::text || ':', 'UTF8')
                     || convert_to(field, 'UTF8');
    END LOOP;
    RETURN sha256(body);
END;
$$;

-- Rows written before this migration are chained in the order they were written.
DO $$
DECLARE
    r audit_log;
    n bigint := 0;
    prev bytea := decode(repeat('00', 32), 'hex');
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        n := n + 1;
        r.seq := n;
        UPDATE audit_log SET seq = n, prev_hash = prev,
                             hash = audit_log_hash(prev, audit_log_fields(r))
            WHERE id = r.id RETURNING hash INTO prev;
    END LOOP;
END;
$$;
ALTER TABLE audit_log ALTER COLUMN seq SET NOT NULL, ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;

-- Writers take turns (a transaction-long lock), so each row follows the one committed before
-- it. Runs as the owner: the services may insert into the audit log but not read it.
CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    last audit_log;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('gridwatch.audit_log'));
    SELECT * INTO last FROM audit_log ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last.seq, 0) + 1;
    NEW.prev_hash := coalesce(last.hash, decode(repeat('00', 32), 'hex'));
    NEW.hash := audit_log_hash(NEW.prev_hash, audit_log_fields(NEW));
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

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
