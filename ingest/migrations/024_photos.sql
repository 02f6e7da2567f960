-- Photo evidence (issue 14): pictures a grid worker takes while handling a task, attached to
-- the feedback. Kept in the database with the task (they are evidence, audited, and as private
-- as the task), each with a small JPEG thumbnail made at upload for slow phone networks.
-- `location_kept` says the uploader chose to keep the picture's GPS position (EXIF); otherwise
-- it was stripped before the picture was stored.
CREATE TABLE task_photos (
    id            bigserial PRIMARY KEY,
    task_id       bigint NOT NULL REFERENCES tasks (id),
    uploaded_by   text NOT NULL REFERENCES people (id),
    content_type  text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png')),
    image         bytea NOT NULL,
    thumbnail     bytea NOT NULL,
    width         integer NOT NULL CHECK (width > 0),
    height        integer NOT NULL CHECK (height > 0),
    size          integer NOT NULL CHECK (size > 0),
    sha256        text NOT NULL,
    location_kept boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_photos_task ON task_photos (task_id, id);
