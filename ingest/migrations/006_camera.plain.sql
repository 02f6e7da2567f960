-- Without TimescaleDB the ingest leader deletes snapshots older than 90 days (see leader.py).
CREATE INDEX camera_snapshots_ts ON camera_snapshots (ts);
