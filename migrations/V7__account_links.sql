-- Email verification and password reset.

-- When the account's address was shown to be its owner's (a verification or
-- reset link opened). Accounts from before verification existed have been
-- receiving email all along: they count as verified.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
UPDATE users SET email_verified_at = created_at;

-- Raised by a password reset: session tokens carry the epoch they were made
-- in, and a token of an older epoch is refused on every node.
ALTER TABLE users ADD COLUMN session_epoch bigint NOT NULL DEFAULT 0;

DROP TRIGGER users_disabled ON users;
CREATE TRIGGER users_disabled AFTER UPDATE OF disabled_at, session_epoch OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION vp_notify_auth();

-- Single-use links sent by email. Only a digest of the secret is kept: the
-- table alone opens nothing.
CREATE TABLE account_links (
    digest     bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_links_by_user ON account_links (user_id, purpose);

-- Account emails travel through the outbox too; they belong to no video.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('job_failed', 'job_done', 'verify_email', 'password_reset'));
-- Emails a user received lately, for the daily caps.
CREATE INDEX notifications_by_user ON notifications (user_id, created_at) WHERE channel = 'email';
