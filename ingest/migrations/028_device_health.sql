-- What each real-hardware driver finds of its device (`device.health`): reachable, accepting the
-- account, answering in time, sending what can be read, keeping time. Sent on change, so small.
CREATE TABLE device_health (
    ts             timestamptz NOT NULL,
    id             uuid NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    node_id        text NOT NULL,
    device_id      text NOT NULL,
    seq            bigint NOT NULL,
    online         boolean NOT NULL,
    condition      text NOT NULL
        CHECK (condition IN ('ok', 'unreachable', 'auth_failed', 'slow', 'bad_input', 'clock_skew')),
    detail         text,
    faults         jsonb NOT NULL DEFAULT '{}'::jsonb,
    clock_offset_s double precision,
    PRIMARY KEY (id, device_id, ts)
);
CREATE INDEX device_health_device_ts ON device_health (device_id, ts DESC);
