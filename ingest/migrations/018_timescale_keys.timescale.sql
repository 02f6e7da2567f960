-- Keys that name the device. A late row into a compressed chunk is checked against the unique
-- index: with (id, ts) TimescaleDB must decompress a batch of every device in the chunk to look
-- for the id, with the segmenting column in the key only that device's batch. The id still leads,
-- so looking a message up by id stays one index probe per chunk.
ALTER TABLE door_events     DROP CONSTRAINT door_events_pkey;
ALTER TABLE door_events     ADD PRIMARY KEY (id, device_id, ts);
ALTER TABLE occupancy       DROP CONSTRAINT occupancy_pkey;
ALTER TABLE occupancy       ADD PRIMARY KEY (id, device_id, ts);
ALTER TABLE speaker_status  DROP CONSTRAINT speaker_status_pkey;
ALTER TABLE speaker_status  ADD PRIMARY KEY (id, device_id, ts);
ALTER TABLE camera_alerts   DROP CONSTRAINT camera_alerts_pkey;
ALTER TABLE camera_alerts   ADD PRIMARY KEY (id, device_id, ts);
ALTER TABLE command_results DROP CONSTRAINT command_results_pkey;
ALTER TABLE command_results ADD PRIMARY KEY (id, device_id, ts);
ALTER TABLE camera_status   DROP CONSTRAINT camera_status_pkey;
ALTER TABLE camera_status   ADD PRIMARY KEY (id, device_id, ts);
ALTER TABLE presence_events DROP CONSTRAINT presence_events_pkey;
ALTER TABLE presence_events ADD PRIMARY KEY (id, node_id, ts);

-- Compressed rows in time order within each device's segment (without it TimescaleDB ordered
-- them by the random message id: a third larger, and a time range read every whole segment).
-- Chunks compressed before this keep their old order until they are compressed again.
ALTER TABLE door_events     SET (timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE occupancy       SET (timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE speaker_status  SET (timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE camera_alerts   SET (timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE command_results SET (timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE camera_status   SET (timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE presence_events SET (timescaledb.compress_segmentby = 'node_id',   timescaledb.compress_orderby = 'ts DESC');

-- Late readings reach the hourly series. The policy refreshed only the last 3 days, so readings
-- an outbox replayed after a longer outage never reached `occupancy_hourly` (while plain
-- PostgreSQL, computing it on read, showed them). A refresh recomputes only the hours that
-- writes invalidated, so a window as long as the raw rows are kept costs nothing when nothing
-- came late. It stops 10 days short of the raw retention (400 days): refreshing an hour whose raw
-- rows were dropped would empty it.
SELECT remove_continuous_aggregate_policy('occupancy_hourly');
SELECT add_continuous_aggregate_policy('occupancy_hourly',
    start_offset => INTERVAL '390 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');
