SELECT create_hypertable('camera_clips', by_range('ts', INTERVAL '7 days'));
-- Videos of people are kept as long as the alerts need them for follow-up, not longer.
SELECT add_retention_policy('camera_clips', INTERVAL '30 days');
