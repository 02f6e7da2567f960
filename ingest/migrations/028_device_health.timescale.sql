SELECT create_hypertable('device_health', by_range('ts', INTERVAL '30 days'));
ALTER TABLE device_health SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                               timescaledb.compress_orderby = 'ts DESC');
SELECT add_compression_policy('device_health', INTERVAL '30 days');
SELECT add_retention_policy('device_health', INTERVAL '400 days');
