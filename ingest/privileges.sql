-- What each service's database role may do, and nothing more. Applied by `ingest/migrate.py`
-- after every migration run (it is idempotent): everything is revoked, then granted again from
-- this file, so this file is the whole truth.
--
-- Every table, view and sequence of the schema must appear below in a GRANT, or in a
-- "-- not granted: NAME: why" line; tests/test_privileges.py fails on one that does neither.
-- A migration that adds a table adds its lines here.
--
-- gridwatch_ingest  the ingest workers: store messages, presence, rules, incidents, tasks,
--                   timers, the leader's commands and clean-up
-- gridwatch_api     the operator API: reads, and the actions people take (tasks, incidents,
--                   commands, emergency mode); the audit log, insert only
-- gridwatch_cli     the operator's command line: the same actions, plus rules, maintenance
--                   windows and people
-- Nobody but the owner may update, delete or truncate the audit log, create or alter anything.
--
-- not granted: schema_migrations: only the owner, who migrates, reads or writes it
-- not granted: changes_id_seq: only the trigger that records changes (as the owner) uses it

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM gridwatch_ingest, gridwatch_api, gridwatch_cli;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM gridwatch_ingest, gridwatch_api, gridwatch_cli;

-- The live feed's rows are written by triggers on incidents, tasks (per statement, 017) and
-- node_presence. They run as the owner, so no service may write `changes` itself (what consoles are sent is only what
-- those tables say). Set here, not in a migration, so that a migration replacing the function
-- cannot silently drop it.
ALTER FUNCTION record_change() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION record_incident_changes() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION record_task_changes() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION record_emergency_change() SECURITY DEFINER SET search_path = public, pg_temp;
-- Likewise a node's configuration version moves with its devices (013): whoever edits devices
-- (the API, the command line) needs no right to edit the node's bookkeeping itself.
ALTER FUNCTION bump_node_config() SECURITY DEFINER SET search_path = public, pg_temp;

-- Registry and territory: read by everyone. Only the columns without secrets of edge_nodes;
-- people's password hashes only by the API, which checks sign-ins.
GRANT SELECT ON territory, venues, devices TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT (id, venue_id, disabled, created_at) ON edge_nodes
    TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT (id, name, role, scope_id, phone, active, created_at) ON people TO gridwatch_ingest;
GRANT SELECT (id, name, role, scope_id, phone, active, created_at, valid_after) ON people
    TO gridwatch_cli;
GRANT SELECT ON people TO gridwatch_api;
GRANT INSERT (id, name, role, scope_id, phone),
    UPDATE (name, role, scope_id, phone, password_hash, active, valid_after)
    ON people TO gridwatch_cli;
-- The API switches people off and on, and changes passwords (both end their tokens).
GRANT UPDATE (password_hash, active, valid_after) ON people TO gridwatch_api;
-- People choose their own language in the console (026).
GRANT UPDATE (language_chosen) ON people TO gridwatch_api;
GRANT SELECT ON duty_roster TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT INSERT ON duty_roster TO gridwatch_cli;
GRANT USAGE ON SEQUENCE duty_roster_id_seq TO gridwatch_cli;
GRANT SELECT ON rule_overrides, maintenance_windows TO gridwatch_ingest, gridwatch_cli;
GRANT INSERT, UPDATE ON rule_overrides TO gridwatch_cli;
GRANT INSERT ON maintenance_windows TO gridwatch_cli;
GRANT USAGE ON SEQUENCE rule_overrides_id_seq, maintenance_windows_id_seq TO gridwatch_cli;

-- Time series: written only by the ingest (a stale death is marked, old snapshots pruned).
GRANT SELECT, INSERT ON presence_events, door_events, occupancy, camera_alerts, speaker_status,
    command_results, camera_snapshots, camera_status, device_health TO gridwatch_ingest;
GRANT UPDATE (stale) ON presence_events TO gridwatch_ingest;
GRANT DELETE ON camera_snapshots TO gridwatch_ingest;
GRANT SELECT ON door_events, camera_snapshots, occupancy_hourly, device_health TO gridwatch_api;
-- Event clips (029): parts are stored, joined into a clip and deleted by the ingest (which
-- prunes old clips and incomplete parts too); the API only plays whole clips.
GRANT SELECT, INSERT, DELETE ON camera_clip_parts, camera_clips TO gridwatch_ingest;
GRANT SELECT ON camera_clips TO gridwatch_api;

-- Presence and latest state: kept by the ingest, read by the API.
GRANT SELECT, INSERT, UPDATE ON node_presence, device_status, device_latest TO gridwatch_ingest;
GRANT SELECT ON node_presence, device_status, device_latest TO gridwatch_api;

-- What could not be stored: kept by the ingest, shown by the API.
GRANT SELECT, INSERT, UPDATE, DELETE ON rejected_messages TO gridwatch_ingest;
GRANT USAGE ON SEQUENCE rejected_messages_id_seq TO gridwatch_ingest;
GRANT SELECT ON rejected_messages TO gridwatch_api;

-- Incidents, tasks and their timelines: raised by the ingest, worked by people.
GRANT SELECT, INSERT, UPDATE ON incidents, tasks TO gridwatch_ingest;
GRANT SELECT, UPDATE ON incidents, tasks TO gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT ON incident_events, task_events
    TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT USAGE ON SEQUENCE incidents_id_seq, tasks_id_seq TO gridwatch_ingest;
GRANT USAGE ON SEQUENCE incident_events_id_seq, task_events_id_seq
    TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT, UPDATE, DELETE ON timers TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT ON notifications TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT USAGE ON SEQUENCE notifications_id_seq TO gridwatch_ingest, gridwatch_api, gridwatch_cli;

-- Emergency mode and device commands: started by people or a rule, sent by the ingest leader.
GRANT SELECT, INSERT, UPDATE ON emergencies TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT ON commands TO gridwatch_api, gridwatch_cli;
-- A newer door command supersedes older unanswered ones for the same door (009).
GRANT UPDATE (superseded_by, state, detail, result_at) ON commands TO gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT, UPDATE ON commands TO gridwatch_ingest;
GRANT USAGE ON SEQUENCE emergencies_id_seq TO gridwatch_ingest, gridwatch_api, gridwatch_cli;

-- The live feed: read by the API, pruned by the ingest leader.
GRANT SELECT ON changes TO gridwatch_api;
GRANT SELECT, DELETE ON changes TO gridwatch_ingest;

-- The audit log: append-only for everyone (the ingest records what rules start and what doors
-- answered). The API reads only what its sign-in throttle counts: who tried, from where, when.
GRANT INSERT ON audit_log TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT (action, person_id, client, at) ON audit_log TO gridwatch_api;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO gridwatch_ingest, gridwatch_api, gridwatch_cli;

-- Sessions (007): the API's token signing key, made once; revoked tokens and used live tickets.
GRANT SELECT, INSERT ON api_signing_key TO gridwatch_api;
GRANT SELECT, INSERT, DELETE ON revoked_tokens TO gridwatch_api;

-- Ingest workers' heartbeats (012): each worker keeps its row; the leader reads them all.
GRANT SELECT, INSERT, UPDATE, DELETE ON ingest_workers TO gridwatch_ingest;
-- Ingest groups (020): each group's workers claim their areas and keep their row fresh.
GRANT SELECT, INSERT, UPDATE ON ingest_groups TO gridwatch_ingest;
GRANT SELECT ON ingest_groups TO gridwatch_api, gridwatch_cli;

-- Emergencies proposed by rules (009): raised by the ingest, confirmed or dismissed by people.
GRANT SELECT, INSERT ON emergency_proposals TO gridwatch_ingest;
GRANT USAGE ON SEQUENCE emergency_proposals_id_seq TO gridwatch_ingest;
GRANT SELECT, UPDATE (decided_at, decided_by, confirmed, emergency_id) ON emergency_proposals
    TO gridwatch_api, gridwatch_cli;

-- The registry (013). Admins edit it through the API and the command line, within their area
-- (the API checks the area); a node's secret is set only as a hash and sealed to the broker
-- reconcile's key. The ingest leader reads the sealed secrets to give them to the broker, and
-- marks which configuration each node was sent.
GRANT INSERT, UPDATE ON territory, venues, devices, duty_shifts TO gridwatch_api, gridwatch_cli;
GRANT SELECT ON duty_shifts TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT INSERT, DELETE ON duty_roster TO gridwatch_api;
GRANT DELETE ON duty_roster TO gridwatch_cli;
GRANT USAGE ON SEQUENCE duty_roster_id_seq TO gridwatch_api;
GRANT SELECT (name, config_version, config_published, version, updated_at, secret_issued_at)
    ON edge_nodes TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT SELECT (secret_sealed) ON edge_nodes TO gridwatch_ingest;
-- The broker reconcile needs to know whether a node without a sealed secret has a hash (then
-- the broker keeps the account it has); a PBKDF2 hash of a 256-bit random secret reveals nothing.
GRANT SELECT (password_hash) ON edge_nodes TO gridwatch_ingest;
GRANT UPDATE (config_published) ON edge_nodes TO gridwatch_ingest;
GRANT INSERT (id, venue_id, name, disabled, password_hash, secret_sealed, secret_issued_at),
    UPDATE (venue_id, name, disabled, password_hash, secret_sealed, secret_issued_at)
    ON edge_nodes TO gridwatch_api, gridwatch_cli;
GRANT SELECT (email, wecom_id, dingtalk_id, language, version, updated_at) ON people
    TO gridwatch_ingest, gridwatch_cli;
GRANT INSERT (email, wecom_id, dingtalk_id, language, active),
    UPDATE (email, wecom_id, dingtalk_id, language) ON people TO gridwatch_cli;
GRANT INSERT (id, name, role, scope_id, phone, email, wecom_id, dingtalk_id, language, active),
    UPDATE (name, role, scope_id, phone, email, wecom_id, dingtalk_id, language)
    ON people TO gridwatch_api;
GRANT SELECT, INSERT, UPDATE ON enrolment_codes TO gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT, UPDATE, DELETE ON broker_refusals TO gridwatch_ingest;
GRANT SELECT ON broker_refusals TO gridwatch_api, gridwatch_cli;
GRANT SELECT, INSERT, DELETE ON broker_reconciles TO gridwatch_ingest;
GRANT USAGE ON SEQUENCE broker_reconciles_id_seq TO gridwatch_ingest;
GRANT SELECT ON broker_reconciles TO gridwatch_api, gridwatch_cli;
GRANT SELECT ON platform_keys TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
-- `gridwatch node show`: whether a node is online and which configuration it runs.
GRANT SELECT ON node_presence TO gridwatch_cli;
GRANT INSERT ON platform_keys TO gridwatch_ingest, gridwatch_cli;

-- Notifications (015). Events are written only by triggers (as the owner), in the transaction of
-- what causes them; the ingest leader routes them into deliveries, sends those and prunes old
-- ones; the API shows a person their own, marks them read, and keeps each person's preferences.
ALTER FUNCTION notify_event(text, severity, text, bigint, bigint, text, jsonb)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_task() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_incident() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_incidents_inserted() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_tasks_inserted() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_emergency() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_command() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_node_audit() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_refusal() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION notify_console() SECURITY DEFINER SET search_path = public, pg_temp;
-- A reassigned task stops paging its old assignee (023): the services need no right to it.
ALTER FUNCTION cancel_paging_of_old_assignee() SECURITY DEFINER SET search_path = public, pg_temp;
-- not granted: notify_events_id_seq: only the triggers that record events (as the owner) use it
GRANT SELECT, UPDATE (routed_at), DELETE ON notify_events TO gridwatch_ingest;
GRANT SELECT ON notify_events TO gridwatch_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON deliveries TO gridwatch_ingest;
GRANT USAGE ON SEQUENCE deliveries_id_seq TO gridwatch_ingest;
GRANT SELECT, UPDATE (read_at) ON deliveries TO gridwatch_api;
-- Each request to a provider, for its per-minute limit (031): only the sender counts them.
GRANT SELECT, INSERT, DELETE ON channel_requests TO gridwatch_ingest;
GRANT SELECT ON notify_prefs, notify_policies TO gridwatch_ingest, gridwatch_api, gridwatch_cli;
GRANT INSERT, UPDATE ON notify_prefs TO gridwatch_api, gridwatch_cli;
GRANT INSERT, UPDATE, DELETE ON notify_policies TO gridwatch_cli;
-- The leader makes a task's short link when it renders a message and prunes expired ones; the
-- API opens them.
GRANT SELECT, INSERT, DELETE ON notify_links TO gridwatch_ingest;
GRANT SELECT ON notify_links TO gridwatch_api;

-- The wall (022): admins make and revoke view-only wall tokens (API and command line); the API
-- checks them and marks when each was last used (the command line never does).
GRANT SELECT, INSERT, UPDATE (revoked_at, revoked_by, last_used_at) ON wall_tokens TO gridwatch_api;
GRANT SELECT, INSERT, UPDATE (revoked_at, revoked_by) ON wall_tokens TO gridwatch_cli;
GRANT USAGE ON SEQUENCE wall_tokens_id_seq TO gridwatch_api, gridwatch_cli;

-- Photo evidence (024): uploaded and read through the API only (who may is the API's check:
-- the assignee uploads while handling, supervisors and the assignee read, the uploader removes
-- one taken by mistake while no feedback carries it, audited). Nobody changes a stored photo;
-- neither the ingest nor the command line (whose task actions attach no photos) can read them.
GRANT SELECT, INSERT, DELETE ON task_photos TO gridwatch_api;
GRANT USAGE ON SEQUENCE task_photos_id_seq TO gridwatch_api;
