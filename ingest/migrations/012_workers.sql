-- Ingest workers' heartbeats. Each worker slot has a persistent session on the broker, which
-- queues that slot's share of the shared subscription (alarms included) while nobody consumes it.
-- Every running worker refreshes its row; the leader reports slots whose session outlives their
-- heartbeat (a crashed worker nobody restarted). A drained (retired) slot deletes its row.
CREATE TABLE ingest_workers (
    client_id       text PRIMARY KEY,
    slot            integer NOT NULL,
    host            text NOT NULL,
    pid             integer NOT NULL,
    started_at      timestamptz NOT NULL,
    heartbeat_at    timestamptz NOT NULL,
    last_receive_at timestamptz,
    last_commit_at  timestamptz
);
