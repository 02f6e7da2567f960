-- Event clips held to the platform's time and scoped by node (review of issue 16).
-- A clip's `ts` (what retention goes by) is now the earlier of its first frame's time, as the
-- node says, and the time the platform stored it: a node whose clock runs ahead cannot keep a
-- video of people past the 30 days. The node's own time of the first frame is `started_at`.
ALTER TABLE camera_clips ADD COLUMN started_at timestamptz;
UPDATE camera_clips SET started_at = ts;
ALTER TABLE camera_clips ALTER COLUMN started_at SET NOT NULL;

-- Parts of one clip are one node's: another node that learned a clip id cannot add a part to it
-- (and so get it refused as a conflict). The index also counts a node's incomplete clips, which
-- the ingest caps (GRIDWATCH_CLIP_MAX_INCOMPLETE).
ALTER TABLE camera_clip_parts DROP CONSTRAINT camera_clip_parts_clip_id_part_key;
ALTER TABLE camera_clip_parts ADD UNIQUE (node_id, clip_id, part);
