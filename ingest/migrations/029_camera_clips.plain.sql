-- Without TimescaleDB the ingest leader deletes clips older than 30 days (see leader.py).
CREATE INDEX camera_clips_ts ON camera_clips (ts);
