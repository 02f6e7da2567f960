SELECT create_hypertable('camera_snapshots', by_range('ts', INTERVAL '7 days'));
SELECT create_hypertable('camera_status',    by_range('ts', INTERVAL '7 days'));
ALTER TABLE camera_status SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
SELECT add_compression_policy('camera_status', INTERVAL '7 days');
-- Pictures of people are kept as long as the alerts need them for follow-up, not longer.
SELECT add_retention_policy('camera_snapshots', INTERVAL '90 days');
SELECT add_retention_policy('camera_status',    INTERVAL '400 days');
