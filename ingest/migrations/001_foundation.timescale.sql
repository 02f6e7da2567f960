-- TimescaleDB: hypertables, compression and retention policies, and a continuous aggregate
-- for hourly occupancy. Selected automatically when the extension is available.
CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('presence_events', by_range('ts', INTERVAL '7 days'));
SELECT create_hypertable('door_events',     by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('occupancy',       by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('camera_alerts',   by_range('ts', INTERVAL '7 days'));
SELECT create_hypertable('speaker_status',  by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('command_results', by_range('ts', INTERVAL '7 days'));

-- Compress chunks once late data has stopped arriving (an edge outbox can hold days).
-- Segmenting by device keeps per-device range scans cheap on compressed chunks.
ALTER TABLE door_events     SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
ALTER TABLE occupancy       SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
ALTER TABLE speaker_status  SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
ALTER TABLE camera_alerts   SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
ALTER TABLE presence_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'node_id');
ALTER TABLE command_results SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
SELECT add_compression_policy('door_events',     INTERVAL '7 days');
SELECT add_compression_policy('occupancy',       INTERVAL '7 days');
SELECT add_compression_policy('speaker_status',  INTERVAL '7 days');
SELECT add_compression_policy('camera_alerts',   INTERVAL '30 days');
SELECT add_compression_policy('presence_events', INTERVAL '30 days');
SELECT add_compression_policy('command_results', INTERVAL '30 days');

-- Retention: raw telemetry for 13 months (a year-on-year comparison), alerts and audit-like
-- series for three years.
SELECT add_retention_policy('door_events',     INTERVAL '400 days');
SELECT add_retention_policy('occupancy',       INTERVAL '400 days');
SELECT add_retention_policy('speaker_status',  INTERVAL '400 days');
SELECT add_retention_policy('camera_alerts',   INTERVAL '3 years');
SELECT add_retention_policy('presence_events', INTERVAL '3 years');
SELECT add_retention_policy('command_results', INTERVAL '3 years');

CREATE MATERIALIZED VIEW occupancy_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       device_id,
       zone,
       avg(count)::double precision AS avg_count,
       max(count)                   AS max_count,
       min(count)                   AS min_count,
       sum(entered)::bigint         AS entered,
       sum(exited)::bigint          AS exited,
       count(*)::bigint             AS samples
FROM occupancy
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('occupancy_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
-- Occupancy is kept as hourly figures for five years, long after the raw rows are gone.
SELECT add_retention_policy('occupancy_hourly', INTERVAL '5 years');
