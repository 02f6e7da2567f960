-- Camera analytics at the edge: the pictures of camera alerts, and whether each camera's stream
-- is being read. A snapshot is stored once per message id like every series; the alert that
-- shows it names it in camera_alerts.snapshot.
CREATE TABLE camera_snapshots (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    alert_id    uuid NOT NULL,
    width       integer NOT NULL,
    height      integer NOT NULL,
    jpeg        bytea NOT NULL,
    PRIMARY KEY (id, ts)
);
CREATE INDEX camera_snapshots_id ON camera_snapshots (id);
CREATE INDEX camera_snapshots_alert ON camera_snapshots (alert_id);

CREATE TABLE camera_status (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    online      boolean NOT NULL,
    fps         double precision NOT NULL,
    detail      text,
    PRIMARY KEY (id, ts)
);
CREATE INDEX camera_status_device_ts ON camera_status (device_id, ts DESC);
