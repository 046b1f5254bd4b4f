-- Acting on videos without uploading them again: a display name, the video
-- one was processed again from, a typed reason for a failure, lists
-- filtered by state, and "sign out everywhere but here". Only additions:
-- nodes of the previous version read and write the table as before.

-- The name shown for a video; NULL shows the uploaded file's name.
ALTER TABLE jobs ADD COLUMN name text CHECK (char_length(name) BETWEEN 1 AND 255);

-- The video this one was processed again from (its upload copied). A
-- deleted source leaves nothing to point at.
ALTER TABLE jobs ADD COLUMN source_id uuid REFERENCES jobs (id) ON DELETE SET NULL;
CREATE INDEX jobs_by_source ON jobs (source_id) WHERE source_id IS NOT NULL;

-- Why a failed job failed, as a code a program (and a translation) can
-- branch on; `error` keeps the words. NULL for failures recorded before.
CREATE TYPE failure_code AS ENUM (
    'not_a_video', 'corrupt', 'no_frames', 'over_budget', 'timed_out',
    'storage', 'interrupted', 'internal'
);
ALTER TABLE jobs ADD COLUMN error_code failure_code;

-- A list filtered by state, newest or oldest first.
CREATE INDEX jobs_by_owner_state ON jobs (user_id, state, created_at DESC, id DESC);

-- A password change ends every session but the one that made it: tokens of
-- the epoch before the current one are still good when their first
-- revocation id is this one.
ALTER TABLE users ADD COLUMN epoch_survivor bytea;
