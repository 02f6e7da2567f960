-- Event clips (issue 16): each camera alert's start comes with a short WebM video, sent by the
-- edge in parts (`camera.clip`) through its outbox. Parts wait in camera_clip_parts, one row per
-- (clip, part) whatever message brought it, until all of a clip's parts are there; the ingest
-- then joins them into camera_clips, in the transaction that stored the last one, and deletes
-- them. Parts of a clip that never completes (the outbox dropped some when it was full) are
-- deleted by the ingest leader after a day.
CREATE TABLE camera_clip_parts (
    ts          timestamptz NOT NULL,
    id          uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    clip_id     uuid NOT NULL,
    alert_id    uuid NOT NULL,
    part        integer NOT NULL CHECK (part >= 0 AND part < parts),
    parts       integer NOT NULL CHECK (parts >= 1),
    mime        text NOT NULL,
    width       integer NOT NULL,
    height      integer NOT NULL,
    fps         double precision NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    size        integer NOT NULL,
    sha256      text NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (id, ts),
    UNIQUE (clip_id, part)
);
CREATE INDEX camera_clip_parts_received ON camera_clip_parts (received_at);

-- A whole clip, by the time of its first frame. Kept 30 days (videos of people: as long as the
-- follow-up of an alert needs them, and shorter than the snapshots' 90).
CREATE TABLE camera_clips (
    ts          timestamptz NOT NULL,
    clip_id     uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    node_id     text NOT NULL,
    device_id   text NOT NULL,
    alert_id    uuid NOT NULL,
    mime        text NOT NULL,
    width       integer NOT NULL,
    height      integer NOT NULL,
    fps         double precision NOT NULL,
    ended_at    timestamptz NOT NULL,
    size        integer NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (clip_id, ts)
);
CREATE INDEX camera_clips_alert ON camera_clips (alert_id);
