-- The page's live stream (`GET /api/v1/events`) asks for a user's videos
-- changed since its last look, several times a second per open page.
CREATE INDEX jobs_by_owner_change ON jobs (user_id, updated_at);
